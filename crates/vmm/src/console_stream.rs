//! Guest console output as a stream the embedding program reads: a [`ConsoleSink`]
//! (the writer the serial device gets) feeds a [`ConsoleStream`] through a shared,
//! bounded buffer. The guest decides how much it prints, so every buffer here has a
//! limit ([`CONSOLE_STREAM_LIMIT`]): past it the oldest bytes go, and are counted.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Most bytes held for the reader, and most bytes of history kept for
/// [`ConsoleStream::text`] and [`ConsoleStream::wait_for`]: 4 MiB each.
pub const CONSOLE_STREAM_LIMIT: usize = 4 << 20;

#[derive(Default)]
struct Pending {
    bytes: VecDeque<u8>,
    dropped: u64,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Drops the oldest bytes of `buf` beyond `limit`; returns how many.
fn trim_front(buf: &mut VecDeque<u8>, limit: usize) -> usize {
    let excess = buf.len().saturating_sub(limit);
    buf.drain(..excess);
    excess
}

/// The writing end: give it to the VM as its console output.
pub struct ConsoleSink(Arc<Shared>);

impl Write for ConsoleSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // A reader that went away or fell behind just misses output; the guest must
        // not notice, and host memory must not grow with what it prints.
        let mut p = self.0.lock();
        p.bytes.extend(buf);
        let dropped = trim_front(&mut p.bytes, CONSOLE_STREAM_LIMIT);
        p.dropped += dropped as u64;
        drop(p);
        self.0.ready.notify_all();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ConsoleSink {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.ready.notify_all();
    }
}

/// The reading end: what the guest printed, in order, as it arrives. It ends (reads
/// return 0) when the VM is gone. A reader that falls more than
/// [`CONSOLE_STREAM_LIMIT`] behind loses the oldest output ([`ConsoleStream::dropped`]).
pub struct ConsoleStream {
    shared: Arc<Shared>,
    /// Bytes received and not yet handed out by [`Read`].
    unread: VecDeque<u8>,
    /// The most recent output, for [`ConsoleStream::text`].
    seen: VecDeque<u8>,
    /// Where [`ConsoleStream::wait_for`] searches next (an index into `seen`).
    cursor: usize,
    /// Bytes lost to the limits.
    dropped: u64,
    closed: bool,
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
    let shared = Arc::new(Shared::default());
    (
        ConsoleSink(shared.clone()),
        ConsoleStream {
            shared,
            unread: VecDeque::new(),
            seen: VecDeque::new(),
            cursor: 0,
            dropped: 0,
            closed: false,
        },
    )
}

impl ConsoleStream {
    /// Takes what the sink has, waiting up to `timeout` for something if there is
    /// nothing yet (`None`: wait until output arrives or the VM ends). Returns false
    /// if nothing new came.
    fn fetch(&mut self, timeout: Option<Duration>) -> bool {
        let mut p = self.shared.lock();
        let deadline = timeout.map(|t| Instant::now() + t);
        while p.bytes.is_empty() && !p.closed {
            match deadline {
                None => p = self.shared.ready.wait(p).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let Some(left) = d.checked_duration_since(Instant::now()) else {
                        break;
                    };
                    p = self
                        .shared
                        .ready
                        .wait_timeout(p, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
        self.closed = p.closed;
        self.dropped += std::mem::take(&mut p.dropped);
        let chunk = std::mem::take(&mut p.bytes);
        drop(p);
        if chunk.is_empty() {
            return false;
        }
        self.seen.extend(chunk.iter());
        self.unread.extend(chunk);
        self.dropped += trim_front(&mut self.unread, CONSOLE_STREAM_LIMIT) as u64;
        let gone = trim_front(&mut self.seen, CONSOLE_STREAM_LIMIT);
        self.cursor = self.cursor.saturating_sub(gone);
        true
    }

    /// The most recent output (up to [`CONSOLE_STREAM_LIMIT`] bytes, lossy UTF-8),
    /// without waiting.
    pub fn text(&mut self) -> String {
        self.fetch(Some(Duration::ZERO));
        let (a, b) = self.seen.as_slices();
        let mut all = a.to_vec();
        all.extend_from_slice(b);
        String::from_utf8_lossy(&all).into_owned()
    }

    /// Bytes of output lost because the reader fell more than the limit behind.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Waits up to `timeout` until a whole line containing `marker` has been printed
    /// after the line the previous call returned; returns that line, or `None` on
    /// timeout or when the VM ended first.
    pub fn wait_for(&mut self, marker: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            self.seen.make_contiguous();
            let seen = self.seen.as_slices().0;
            // Complete lines only, from the cursor on.
            let complete = seen.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            let mut at = self.cursor;
            for line in seen[self.cursor.min(complete)..complete].split_inclusive(|b| *b == b'\n') {
                at += line.len();
                let text = String::from_utf8_lossy(line);
                if text.contains(marker) {
                    self.cursor = at;
                    return Some(text.trim_end_matches(['\n', '\r']).to_string());
                }
            }
            self.cursor = self.cursor.max(complete);
            let left = deadline.checked_duration_since(Instant::now())?;
            if !self.fetch(Some(left)) && (self.closed || Instant::now() >= deadline) {
                return None;
            }
        }
    }
}

impl Read for ConsoleStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.unread.is_empty() && !self.fetch(None) {
            return Ok(0);
        }
        let n = buf.len().min(self.unread.len());
        for (dst, src) in buf.iter_mut().zip(self.unread.drain(..n)) {
            *dst = src;
        }
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

    #[test]
    fn a_guest_that_prints_without_end_cannot_grow_host_memory() {
        let (mut sink, mut stream) = console_stream();
        let line = [b'x'; 1023];
        for i in 0..(3 * CONSOLE_STREAM_LIMIT / 1024) {
            sink.write_all(&line).unwrap();
            sink.write_all(if i % 2 == 0 { b"\n" } else { b"!" })
                .unwrap();
        }
        assert!(sink.0.lock().bytes.len() <= CONSOLE_STREAM_LIMIT);
        sink.write_all(b"\nlast line\n").unwrap();
        assert_eq!(
            stream.wait_for("last", Duration::from_secs(1)).as_deref(),
            Some("last line")
        );
        assert!(stream.seen.len() <= CONSOLE_STREAM_LIMIT);
        assert!(stream.unread.len() <= CONSOLE_STREAM_LIMIT);
        assert_eq!(stream.dropped(), (2 * CONSOLE_STREAM_LIMIT + 11) as u64);
        assert!(stream.text().ends_with("last line\n"));
    }
}
