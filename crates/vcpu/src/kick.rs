//! Kicking a vCPU thread out of KVM_RUN, race-free, as KVM documents it: the kick is a
//! real-time signal whose handler sets `immediate_exit` in the thread's own `kvm_run`.
//! A signal that lands while the thread is in KVM_RUN makes the ioctl return EINTR; one
//! that lands just before it (after the thread last looked at its stop and pause flags)
//! leaves `immediate_exit` set, so that KVM_RUN returns at once instead of running the
//! guest. Either way the thread sees the flags again: one kick is enough.

use std::cell::Cell;
use vmm_sys_util::signal::{register_signal_handler, SIGRTMIN};

thread_local! {
    /// The `immediate_exit` byte of the `kvm_run` of the vCPU this thread runs, while
    /// it runs one (null otherwise).
    static IMMEDIATE_EXIT: Cell<*mut u8> = const { Cell::new(std::ptr::null_mut()) };
}

/// The signal used to kick vCPU threads.
pub fn kick_signal() -> libc::c_int {
    SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // A const-initialised thread-local Cell has no lazy initialisation or destructor:
    // reading it is a plain TLS load, safe in a signal handler.
    let flag = IMMEDIATE_EXIT.with(Cell::get);
    if !flag.is_null() {
        // SAFETY: the pointer was set by this very thread from its vCPU's kvm_run
        // mapping, which outlives the registration (`ImmediateExitGuard` clears it
        // before the vCPU is dropped); a volatile byte store cannot tear.
        unsafe { std::ptr::write_volatile(flag, 1) };
    }
}

/// Installs the kick handler once per process.
pub fn install_kick_handler() -> Result<(), vmm_sys_util::errno::Error> {
    static INSTALLED: std::sync::OnceLock<Result<(), i32>> = std::sync::OnceLock::new();
    let result = *INSTALLED
        .get_or_init(|| register_signal_handler(kick_signal(), on_kick).map_err(|e| e.errno()));
    result.map_err(vmm_sys_util::errno::Error::new)
}

/// While alive, kicks of this thread set the `immediate_exit` byte it was made with.
pub(crate) struct ImmediateExitGuard(());

impl ImmediateExitGuard {
    /// Registers `flag` (the `immediate_exit` byte of this thread's vCPU) for kicks.
    /// The caller keeps the vCPU, and so the byte, alive as long as the guard.
    pub(crate) fn register(flag: *mut u8) -> Self {
        IMMEDIATE_EXIT.with(|cell| cell.set(flag));
        Self(())
    }
}

impl Drop for ImmediateExitGuard {
    fn drop(&mut self) {
        IMMEDIATE_EXIT.with(|cell| cell.set(std::ptr::null_mut()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kick_sets_the_registered_byte_and_nothing_once_unregistered() {
        install_kick_handler().unwrap();
        let mut byte = 0u8;
        let guard = ImmediateExitGuard::register(&mut byte);
        // SAFETY: raise() delivers the signal to this thread before it returns.
        assert_eq!(unsafe { libc::raise(kick_signal()) }, 0);
        // SAFETY: reads our own byte, written by the handler on this thread.
        assert_eq!(unsafe { std::ptr::read_volatile(&byte) }, 1);
        drop(guard);
        byte = 0;
        // SAFETY: as above.
        assert_eq!(unsafe { libc::raise(kick_signal()) }, 0);
        assert_eq!(byte, 0);
    }
}
