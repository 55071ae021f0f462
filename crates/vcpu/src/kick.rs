//! Kicking a vCPU thread out of KVM_RUN: a real-time signal with an empty handler makes
//! the ioctl return EINTR, after which the loop sees the stop flag.

use vmm_sys_util::signal::{register_signal_handler, SIGRTMIN};

/// The signal used to kick vCPU threads.
pub fn kick_signal() -> libc::c_int {
    SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Installs the (empty) kick handler once per process.
pub fn install_kick_handler() -> Result<(), vmm_sys_util::errno::Error> {
    static INSTALLED: std::sync::OnceLock<Result<(), i32>> = std::sync::OnceLock::new();
    let result = *INSTALLED
        .get_or_init(|| register_signal_handler(kick_signal(), on_kick).map_err(|e| e.errno()));
    result.map_err(vmm_sys_util::errno::Error::new)
}
