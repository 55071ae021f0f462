//! aarch64 additions: the KVM requests a vCPU thread makes (the generic syscall
//! table has no legacy calls to add).

use super::Entry;
use kvm_bindings::{kvm_one_reg, KVMIO};
use vmm_sys_util::{ioctl_io_nr, ioctl_iow_nr};

/// seccompiler's name for this architecture.
pub(crate) const ARCH: seccompiler::TargetArch = seccompiler::TargetArch::aarch64;

ioctl_io_nr!(KVM_RUN, KVMIO, 0x80);
ioctl_iow_nr!(KVM_GET_ONE_REG, KVMIO, 0xab, kvm_one_reg);

/// Syscalls every thread may make on aarch64 only.
pub(crate) fn common() -> Vec<Entry> {
    Vec::new()
}

/// KVM_RUN; KVM_GET_ONE_REG reads the program counter of a failed guest.
pub(crate) fn vcpu_ioctls() -> Vec<u64> {
    vec![KVM_RUN(), KVM_GET_ONE_REG()]
}

/// An I/O thread's extra syscalls on aarch64: none (`ppoll` is common).
pub(crate) fn io() -> Vec<Entry> {
    Vec::new()
}

/// The event loop's extra syscalls on aarch64: none.
pub(crate) fn events() -> Vec<Entry> {
    Vec::new()
}

/// The event loop's KVM requests on the VM fd: none (snapshots are not supported on
/// aarch64 yet).
pub(crate) fn events_ioctls() -> Vec<u64> {
    Vec::new()
}

/// The API's extra syscalls: none (aarch64 has only the `*at` forms).
pub(crate) fn api() -> Vec<Entry> {
    Vec::new()
}

/// The main thread's extra syscalls: none.
pub(crate) fn main_thread() -> Vec<Entry> {
    Vec::new()
}

/// A file server's extra syscalls: none on aarch64 (no older path calls).
pub(crate) fn fs() -> Vec<Entry> {
    Vec::new()
}
