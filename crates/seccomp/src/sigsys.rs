//! The SIGSYS reporter: a filtered syscall traps here. The handler writes one line
//! naming the thread and the syscall, runs the embedder's cleanup hook (the VMM
//! restores the terminal), and ends the process. It uses only `write` and
//! `exit_group` (and whatever the hook uses), which every allow-list permits.

use crate::SeccompError;
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Exit status after a filtered syscall: 128 + SIGSYS, as if the signal had killed
/// the process.
pub const BAD_SYSCALL_EXIT: i32 = 128 + libc::SIGSYS;

/// Longest thread label kept for the report.
const LABEL_LEN: usize = 24;

thread_local! {
    static LABEL: Cell<[u8; LABEL_LEN]> = const { Cell::new([0; LABEL_LEN]) };
}

/// The cleanup hook (an `extern "C" fn()`), 0 for none.
static CLEANUP: AtomicUsize = AtomicUsize::new(0);

/// Names the calling thread in SIGSYS reports.
pub(crate) fn set_thread_label(label: &str) {
    let mut buf = [0u8; LABEL_LEN];
    let n = label.len().min(LABEL_LEN);
    buf[..n].copy_from_slice(&label.as_bytes()[..n]);
    LABEL.with(|l| l.set(buf));
}

/// Sets a function the SIGSYS handler calls before the process exits. It runs in a
/// signal handler on a filtered thread: it must be async-signal-safe and use only
/// syscalls every list allows (the terminal ioctls, `write`).
pub fn set_cleanup_hook(hook: extern "C" fn()) {
    CLEANUP.store(hook as usize, Ordering::SeqCst);
}

/// The SIGSYS part of `siginfo_t` (64-bit Linux): after signo, errno, code and
/// padding come the faulting address, the syscall number and the audit arch.
#[repr(C)]
struct SigsysInfo {
    signo: i32,
    errno: i32,
    code: i32,
    _pad: i32,
    call_addr: usize,
    syscall: i32,
    arch: u32,
}

/// A fixed buffer the handler formats into (no allocation in a signal handler).
struct Line {
    buf: [u8; 256],
    len: usize,
}

impl Line {
    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
    }

    fn push_number(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }
}

/// Formats the report for `syscall` made by the thread labelled `label`.
fn report(label: &[u8], syscall: i64) -> Line {
    let mut line = Line {
        buf: [0; 256],
        len: 0,
    };
    let end = label.iter().position(|&b| b == 0).unwrap_or(label.len());
    line.push(b"minivmm: error: seccomp: thread '");
    line.push(if end == 0 { b"unnamed" } else { &label[..end] });
    line.push(b"' made syscall ");
    line.push_number(syscall.unsigned_abs());
    line.push(b" (");
    line.push(std::env::consts::ARCH.as_bytes());
    line.push(b"), which its allow-list does not permit; stopping the VM\n");
    line
}

extern "C" fn on_sigsys(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t for SA_SIGINFO handlers; for SIGSYS
    // from seccomp its union holds the sigsys fields laid out as `SigsysInfo`.
    let syscall = unsafe { (*info.cast::<SigsysInfo>()).syscall };
    let label = LABEL.with(Cell::get);
    let line = report(&label, i64::from(syscall));
    // SAFETY: write(2) from our own stack buffer; async-signal-safe.
    unsafe { libc::write(libc::STDERR_FILENO, line.buf.as_ptr().cast(), line.len) };
    let hook = CLEANUP.load(Ordering::SeqCst);
    if hook != 0 {
        // SAFETY: only `set_cleanup_hook` stores a non-zero value, and it stores an
        // `extern "C" fn()`.
        let hook: extern "C" fn() = unsafe { std::mem::transmute(hook) };
        hook();
    }
    // SAFETY: _exit ends the process at once, without running Rust or libc cleanup
    // that may need syscalls the thread is not allowed.
    unsafe { libc::_exit(BAD_SYSCALL_EXIT) };
}

/// Registers the SIGSYS handler once per process.
pub(crate) fn install_handler() -> Result<(), SeccompError> {
    static DONE: OnceLock<Result<(), i32>> = OnceLock::new();
    let result = *DONE.get_or_init(|| {
        vmm_sys_util::signal::register_signal_handler(libc::SIGSYS, on_sigsys)
            .map_err(|e| e.errno())
    });
    result.map_err(|e| SeccompError::Handler(vmm_sys_util::errno::Error::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_names_thread_and_syscall() {
        let mut label = [0u8; LABEL_LEN];
        label[..13].copy_from_slice(b"minivmm-vcpu0");
        let line = report(&label, 41);
        let text = std::str::from_utf8(&line.buf[..line.len]).unwrap();
        assert!(
            text.starts_with("minivmm: error: seccomp: thread 'minivmm-vcpu0' made syscall 41 (")
        );
        assert!(text.ends_with("does not permit; stopping the VM\n"));
        let line = report(&[0; LABEL_LEN], 0);
        assert!(std::str::from_utf8(&line.buf[..line.len])
            .unwrap()
            .contains("'unnamed' made syscall 0 "));
    }

    #[test]
    fn sigsys_layout_matches_the_kernel() {
        assert_eq!(std::mem::offset_of!(SigsysInfo, call_addr), 16);
        assert_eq!(std::mem::offset_of!(SigsysInfo, syscall), 24);
        assert_eq!(std::mem::offset_of!(SigsysInfo, arch), 28);
    }
}
