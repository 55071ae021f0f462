//! x86_64 additions: the older syscalls glibc and musl still use here, and the KVM
//! requests a vCPU thread makes.

use super::{any, Entry};
use kvm_bindings::{kvm_regs, kvm_translation, KVMIO};
use vmm_sys_util::{ioctl_io_nr, ioctl_ior_nr, ioctl_iowr_nr};

/// seccompiler's name for this architecture.
pub(crate) const ARCH: seccompiler::TargetArch = seccompiler::TargetArch::x86_64;

ioctl_io_nr!(KVM_RUN, KVMIO, 0x80);
ioctl_ior_nr!(KVM_GET_REGS, KVMIO, 0x81, kvm_regs);
ioctl_iowr_nr!(KVM_TRANSLATE, KVMIO, 0x85, kvm_translation);

/// Syscalls every thread may make on x86_64 only.
pub(crate) fn common() -> Vec<Entry> {
    Vec::new()
}

/// KVM_RUN; KVM_GET_REGS and KVM_TRANSLATE read the failing instruction after a
/// triple fault or emulation failure.
pub(crate) fn vcpu_ioctls() -> Vec<u64> {
    vec![KVM_RUN(), KVM_GET_REGS(), KVM_TRANSLATE()]
}

/// An I/O thread's extra syscalls: `poll` (glibc) next to `ppoll`.
pub(crate) fn io() -> Vec<Entry> {
    vec![any(libc::SYS_poll)]
}

/// The event loop's extra syscalls: `epoll_wait` (glibc) next to `epoll_pwait`, and
/// `unlink` next to `unlinkat`.
pub(crate) fn events() -> Vec<Entry> {
    vec![any(libc::SYS_epoll_wait), any(libc::SYS_unlink)]
}
