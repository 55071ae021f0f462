//! The serial console's host side: the output writer (which timestamps the guest's
//! first byte), stdin as guest input through the event loop, and raw terminal mode.

use crate::config::ConsoleOutput;
use crate::error::VmmError;
use crate::timeline::{BootEvent, Timeline};
use devices::serial::{ConsoleWriter, SerialDevice};
use event_manager::{EventOps, Events, MutEventSubscriber};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::terminal::Terminal;

/// Most guest output held back before it is written out without a newline.
const LINE_BUFFER: usize = 4096;

/// Writes guest output a line at a time and records the first byte's time. The UART
/// hands over one byte per guest port write; passing each on (a host syscall on the
/// vCPU thread per byte) made console output cost the guest about ten times what it
/// costs under Firecracker. Bytes are held until a newline, until LINE_BUFFER of
/// them wait, or until [`Write::flush`], which the event loop calls on every tick
/// (at most 50 ms) and at exit, so a prompt or the last bytes before a crash appear.
struct TimedWriter {
    inner: Box<dyn Write + Send>,
    timeline: Timeline,
    seen_first: bool,
    pending: Vec<u8>,
    /// Bytes went to `inner` since its last flush.
    dirty: bool,
}

impl TimedWriter {
    fn write_pending(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            let result = self.inner.write_all(&self.pending);
            self.pending.clear();
            self.dirty = true;
            result?;
        }
        if self.dirty {
            self.dirty = false;
            self.inner.flush()?;
        }
        Ok(())
    }
}

impl Write for TimedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.seen_first && !buf.is_empty() {
            self.seen_first = true;
            self.timeline.record(BootEvent::FirstSerialByte);
        }
        self.pending.extend_from_slice(buf);
        if buf.contains(&b'\n') || self.pending.len() >= LINE_BUFFER {
            self.write_pending()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_pending()
    }
}

impl Drop for TimedWriter {
    fn drop(&mut self) {
        let _ = self.write_pending();
    }
}

/// Opens the configured console output as a writer.
pub fn console_writer(
    output: ConsoleOutput,
    timeline: Timeline,
) -> Result<ConsoleWriter, VmmError> {
    let inner: Box<dyn Write + Send> = match output {
        ConsoleOutput::Stdout => Box::new(io::stdout()),
        ConsoleOutput::File(path) => {
            Box::new(File::create(&path).map_err(|e| VmmError::ConsoleFile(path, e))?)
        }
        ConsoleOutput::Writer(w) => w,
        ConsoleOutput::Null => Box::new(io::sink()),
    };
    Ok(Box::new(TimedWriter {
        inner,
        timeline,
        seen_first: false,
        pending: Vec::with_capacity(LINE_BUFFER),
        dirty: false,
    }))
}

/// Puts stdin in raw mode (no line editing, echo or signal keys) while alive, if it
/// is a terminal; restores canonical mode when dropped, on every exit path.
pub struct RawModeGuard {
    active: bool,
}

/// The terminal settings before raw mode, for restoring them from a signal handler.
static SAVED_TERMIOS: OnceLock<libc::termios> = OnceLock::new();
/// True while raw mode is on.
static RAW_ACTIVE: AtomicBool = AtomicBool::new(false);

impl RawModeGuard {
    /// Enters raw mode if stdin is a terminal.
    pub fn new() -> Self {
        let stdin = io::stdin().lock();
        // SAFETY: isatty only inspects the descriptor.
        let is_tty = unsafe { libc::isatty(stdin.as_raw_fd()) } == 1;
        if is_tty {
            let mut saved = std::mem::MaybeUninit::<libc::termios>::zeroed();
            // SAFETY: tcgetattr fills the termios we own; on success it is complete.
            if unsafe { libc::tcgetattr(stdin.as_raw_fd(), saved.as_mut_ptr()) } == 0 {
                // SAFETY: tcgetattr succeeded, so every field is set.
                let _ = SAVED_TERMIOS.set(unsafe { saved.assume_init() });
            }
        }
        let active = is_tty && stdin.set_raw_mode().is_ok();
        RAW_ACTIVE.store(active, Ordering::SeqCst);
        Self { active }
    }
}

/// Puts the terminal back as it was before raw mode. Called from the SIGSYS handler
/// when a filtered thread is stopped: async-signal-safe (an atomic load, tcsetattr).
pub extern "C" fn restore_terminal_after_fault() {
    if !RAW_ACTIVE.load(Ordering::SeqCst) {
        return;
    }
    if let Some(saved) = SAVED_TERMIOS.get() {
        // SAFETY: tcsetattr reads the saved settings; fd 0 is stdin.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved) };
    }
}

impl Default for RawModeGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for RawModeGuard {
    fn drop(&mut self) {
        if self.active {
            RAW_ACTIVE.store(false, Ordering::SeqCst);
            if let Err(e) = io::stdin().lock().set_canon_mode() {
                log::warn!("cannot restore the terminal: {e}");
            }
        }
    }
}

/// Most bytes read from stdin at once.
const INPUT_CHUNK: usize = 64;

/// Feeds stdin to the serial device. Bytes that do not fit in the UART's FIFO wait
/// in `pending` (stdin is not polled meanwhile) and are retried on each loop tick.
pub struct StdinInput {
    serial: Arc<Mutex<SerialDevice>>,
    pending: Vec<u8>,
    polling: bool,
    closed: bool,
}

impl StdinInput {
    /// Input for `serial`.
    pub fn new(serial: Arc<Mutex<SerialDevice>>) -> Self {
        Self {
            serial,
            pending: Vec::new(),
            polling: false,
            closed: false,
        }
    }

    fn push_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let n = self
            .serial
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .enqueue_input(&self.pending);
        self.pending.drain(..n);
    }

    /// Retries pending input; resumes polling stdin once it is all delivered.
    pub fn tick(&mut self, ops: &mut EventOps) {
        self.push_pending();
        if self.pending.is_empty() && !self.polling && !self.closed {
            self.set_polling(ops, true);
        }
    }

    fn set_polling(&mut self, ops: &mut EventOps, on: bool) {
        let stdin = io::stdin();
        let res = if on {
            ops.add(Events::new(&stdin, EventSet::IN))
        } else {
            ops.remove(Events::new(&stdin, EventSet::IN))
        };
        match res {
            Ok(()) => self.polling = on,
            Err(e) => {
                // Regular files and /dev/null cannot be polled: there is no live input.
                log::debug!("console input: stdin cannot be polled ({e:?}); no guest input");
                self.closed = true;
            }
        }
    }
}

impl MutEventSubscriber for StdinInput {
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let mut buf = [0u8; INPUT_CHUNK];
        let n = if events.event_set().contains(EventSet::IN) {
            // SAFETY: reads into our own buffer from stdin's descriptor.
            unsafe { libc::read(io::stdin().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) }
        } else {
            0
        };
        if n <= 0 {
            // EOF, hang-up or error: the guest gets no more input.
            self.pending.clear();
            self.set_polling(ops, false);
            self.closed = true;
            return;
        }
        self.pending.extend_from_slice(&buf[..n as usize]);
        self.push_pending();
        if !self.pending.is_empty() {
            self.set_polling(ops, false);
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        self.set_polling(ops, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Records every write and flush it is given.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<(Vec<Vec<u8>>, usize)>>);
    impl Write for Recorder {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().0.push(b.to_vec());
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            self.0.lock().unwrap().1 += 1;
            Ok(())
        }
    }

    fn writer(rec: &Recorder) -> ConsoleWriter {
        let out = ConsoleOutput::Writer(Box::new(rec.clone()));
        console_writer(out, Timeline::new(Instant::now())).unwrap()
    }

    #[test]
    fn a_line_goes_out_in_one_write_when_it_ends() {
        let rec = Recorder::default();
        let mut w = writer(&rec);
        for b in b"hello" {
            w.write_all(&[*b]).unwrap();
        }
        assert!(rec.0.lock().unwrap().0.is_empty(), "held until the newline");
        w.write_all(b"\n").unwrap();
        assert_eq!(rec.0.lock().unwrap().0, vec![b"hello\n".to_vec()]);
        assert_eq!(rec.0.lock().unwrap().1, 1);
    }

    #[test]
    fn a_partial_line_goes_out_on_flush_and_at_drop() {
        let rec = Recorder::default();
        let mut w = writer(&rec);
        w.write_all(b"/ # ").unwrap();
        w.flush().unwrap();
        assert_eq!(rec.0.lock().unwrap().0, vec![b"/ # ".to_vec()]);
        // Nothing new: a flush writes and flushes nothing.
        w.flush().unwrap();
        assert_eq!(rec.0.lock().unwrap().1, 1);
        w.write_all(b"last words").unwrap();
        drop(w);
        assert_eq!(rec.0.lock().unwrap().0[1], b"last words".to_vec());
    }

    #[test]
    fn output_without_newlines_is_bounded() {
        let rec = Recorder::default();
        let mut w = writer(&rec);
        for _ in 0..LINE_BUFFER {
            w.write_all(b"x").unwrap();
        }
        assert_eq!(rec.0.lock().unwrap().0.len(), 1);
        assert_eq!(rec.0.lock().unwrap().0[0].len(), LINE_BUFFER);
    }
}
