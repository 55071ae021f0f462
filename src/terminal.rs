//! The local terminal for `minivmm exec -t`: its size, raw mode (restored when the
//! guard drops), and forwarding size changes to the guest's terminal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use vmm::sandbox::SessionControl;

/// How often the window size is checked for changes.
const RESIZE_POLL: Duration = Duration::from_millis(200);

/// Rows and columns of the terminal on stdin, if it is one.
pub fn size() -> Option<(u16, u16)> {
    // SAFETY: winsize is plain old data; all zeroes is a valid value.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize into the valid pointer given.
    let rc = unsafe { libc::ioctl(libc::STDIN_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
}

/// Stdin in raw mode while this lives.
pub struct RawMode(libc::termios);

impl RawMode {
    /// Puts stdin in raw mode; `None` if it is not a terminal.
    pub fn enter() -> Option<Self> {
        // SAFETY: termios is plain old data; all zeroes is a valid value.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: tcgetattr writes into the valid pointer given.
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut saved) } != 0 {
            return None;
        }
        let mut raw = saved;
        // SAFETY: cfmakeraw edits the valid termios given.
        unsafe { libc::cfmakeraw(&mut raw) };
        // SAFETY: tcsetattr reads the valid termios given.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw) } != 0 {
            return None;
        }
        Some(Self(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: tcsetattr reads the valid termios saved on entry.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.0) };
    }
}

/// Sends the guest's terminal the local window size whenever it changes, until
/// `done` is set (a thread that polls: no signal handler needed).
pub fn forward_resizes(control: SessionControl, done: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let mut last = size();
        while !done.load(Ordering::Relaxed) {
            std::thread::sleep(RESIZE_POLL);
            let now = size();
            if now != last {
                if let Some((rows, cols)) = now {
                    let _ = control.resize(rows, cols);
                }
                last = now;
            }
        }
    });
}
