//! Guest console output as a stream the embedding program reads: a [`ConsoleSink`]
//! (the writer the serial device gets) feeds a [`ConsoleStream`] over a channel.

use std::io::{self, Read, Write};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// The writing end: give it to the VM as its console output.
pub struct ConsoleSink(Sender<Vec<u8>>);

impl Write for ConsoleSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // A reader that went away just stops listening; the guest must not notice.
        let _ = self.0.send(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The reading end: everything the guest printed, in order, as it arrives. It ends
/// (reads return 0) when the VM is gone.
pub struct ConsoleStream {
    rx: Receiver<Vec<u8>>,
    /// Bytes received and not yet handed out by [`Read`].
    unread: Vec<u8>,
    /// Everything received so far, for [`ConsoleStream::text`].
    seen: Vec<u8>,
    /// Where [`ConsoleStream::wait_for`] searches next: after the last line it returned.
    cursor: usize,
}

/// A connected sink and stream.
///
/// ```
/// use std::io::Write;
/// use std::time::Duration;
/// let (mut sink, mut stream) = vmm::console_stream();
/// sink.write_all(b"booting\nMINIVMM-GUEST: user space reached\n").unwrap();
/// let line = stream.wait_for("user space", Duration::from_secs(1));
/// assert_eq!(line.as_deref(), Some("MINIVMM-GUEST: user space reached"));
/// ```
pub fn console_stream() -> (ConsoleSink, ConsoleStream) {
    let (tx, rx) = channel();
    (
        ConsoleSink(tx),
        ConsoleStream {
            rx,
            unread: Vec::new(),
            seen: Vec::new(),
            cursor: 0,
        },
    )
}

impl ConsoleStream {
    fn accept(&mut self, chunk: Vec<u8>) {
        self.seen.extend_from_slice(&chunk);
        self.unread.extend(chunk);
    }

    /// Everything the guest printed so far (lossy UTF-8), without waiting.
    pub fn text(&mut self) -> String {
        while let Ok(chunk) = self.rx.try_recv() {
            self.accept(chunk);
        }
        String::from_utf8_lossy(&self.seen).into_owned()
    }

    /// Waits up to `timeout` until a whole line containing `marker` has been printed
    /// after the line the previous call returned; returns that line, or `None` on
    /// timeout or when the VM ended first.
    pub fn wait_for(&mut self, marker: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            // Complete lines only, from the cursor on.
            let complete = self
                .seen
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1);
            let mut at = self.cursor;
            for line in
                self.seen[self.cursor.min(complete)..complete].split_inclusive(|b| *b == b'\n')
            {
                at += line.len();
                let text = String::from_utf8_lossy(line);
                if text.contains(marker) {
                    self.cursor = at;
                    return Some(text.trim_end_matches(['\n', '\r']).to_string());
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.rx.recv_timeout(left) {
                Ok(chunk) => self.accept(chunk),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }
}

impl Read for ConsoleStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.unread.is_empty() {
            match self.rx.recv() {
                Ok(chunk) => self.accept(chunk),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.unread.len());
        buf[..n].copy_from_slice(&self.unread[..n]);
        self.unread.drain(..n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_arrive_in_order_and_the_stream_ends_with_the_sink() {
        let (mut sink, mut stream) = console_stream();
        sink.write_all(b"boot\nmark").unwrap();
        assert_eq!(stream.wait_for("mark", Duration::from_millis(50)), None);
        sink.write_all(b"er 1\nrest").unwrap();
        assert_eq!(
            stream.wait_for("marker", Duration::from_secs(1)).as_deref(),
            Some("marker 1")
        );
        drop(sink);
        let mut all = String::new();
        stream.read_to_string(&mut all).unwrap();
        assert_eq!(all, "boot\nmarker 1\nrest");
        assert_eq!(stream.text(), "boot\nmarker 1\nrest");
        assert_eq!(stream.wait_for("never", Duration::from_secs(5)), None);
    }
}
