//! x86_64 additions: the older syscalls glibc and musl still use here, and the KVM
//! requests a vCPU thread makes.

use super::{any, Entry};
use kvm_bindings::{
    kvm_clock_data, kvm_cpuid2, kvm_debugregs, kvm_irqchip, kvm_lapic_state, kvm_mp_state,
    kvm_msrs, kvm_pit_state2, kvm_regs, kvm_sregs, kvm_translation, kvm_vcpu_events, kvm_xcrs,
    kvm_xsave, KVMIO,
};
use vmm_sys_util::{ioctl_io_nr, ioctl_ior_nr, ioctl_iowr_nr};

/// seccompiler's name for this architecture.
pub(crate) const ARCH: seccompiler::TargetArch = seccompiler::TargetArch::x86_64;

ioctl_io_nr!(KVM_RUN, KVMIO, 0x80);
ioctl_ior_nr!(KVM_GET_REGS, KVMIO, 0x81, kvm_regs);
ioctl_iowr_nr!(KVM_TRANSLATE, KVMIO, 0x85, kvm_translation);
// A parked vCPU saving its state for a snapshot.
ioctl_ior_nr!(KVM_GET_SREGS, KVMIO, 0x83, kvm_sregs);
ioctl_iowr_nr!(KVM_GET_MSRS, KVMIO, 0x88, kvm_msrs);
ioctl_ior_nr!(KVM_GET_LAPIC, KVMIO, 0x8e, kvm_lapic_state);
ioctl_iowr_nr!(KVM_GET_CPUID2, KVMIO, 0x91, kvm_cpuid2);
ioctl_ior_nr!(KVM_GET_MP_STATE, KVMIO, 0x98, kvm_mp_state);
ioctl_ior_nr!(KVM_GET_VCPU_EVENTS, KVMIO, 0x9f, kvm_vcpu_events);
ioctl_ior_nr!(KVM_GET_DEBUGREGS, KVMIO, 0xa1, kvm_debugregs);
ioctl_io_nr!(KVM_GET_TSC_KHZ, KVMIO, 0xa3);
ioctl_ior_nr!(KVM_GET_XSAVE, KVMIO, 0xa4, kvm_xsave);
ioctl_ior_nr!(KVM_GET_XCRS, KVMIO, 0xa6, kvm_xcrs);
// The event loop saving the VM's in-kernel devices for a snapshot.
ioctl_iowr_nr!(KVM_GET_IRQCHIP, KVMIO, 0x62, kvm_irqchip);
ioctl_ior_nr!(KVM_GET_CLOCK, KVMIO, 0x7c, kvm_clock_data);
ioctl_ior_nr!(KVM_GET_PIT2, KVMIO, 0x9f, kvm_pit_state2);

/// Syscalls every thread may make on x86_64 only.
pub(crate) fn common() -> Vec<Entry> {
    Vec::new()
}

/// KVM_RUN; KVM_GET_REGS and KVM_TRANSLATE read the failing instruction after a
/// triple fault or emulation failure; the other reads save a parked vCPU's state for
/// a snapshot (they change nothing).
pub(crate) fn vcpu_ioctls() -> Vec<u64> {
    vec![
        KVM_RUN(),
        KVM_GET_REGS(),
        KVM_TRANSLATE(),
        KVM_GET_SREGS(),
        KVM_GET_MSRS(),
        KVM_GET_LAPIC(),
        KVM_GET_CPUID2(),
        KVM_GET_MP_STATE(),
        KVM_GET_VCPU_EVENTS(),
        KVM_GET_DEBUGREGS(),
        KVM_GET_TSC_KHZ(),
        KVM_GET_XSAVE(),
        KVM_GET_XCRS(),
    ]
}

/// The event loop's KVM requests on the VM fd: reading the in-kernel interrupt
/// controllers, PIT and clock for a snapshot.
pub(crate) fn events_ioctls() -> Vec<u64> {
    vec![KVM_GET_IRQCHIP(), KVM_GET_CLOCK(), KVM_GET_PIT2()]
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

/// The API's extra syscalls: the older path calls musl makes (`open`, `mkdir`,
/// `rename`, `unlink`, `stat`) and glibc's `fstat`.
pub(crate) fn api() -> Vec<Entry> {
    vec![
        any(libc::SYS_open),
        any(libc::SYS_mkdir),
        any(libc::SYS_rename),
        any(libc::SYS_unlink),
        any(libc::SYS_stat),
        any(libc::SYS_lstat),
    ]
}

/// A file server's extra syscalls: `poll` (glibc) next to `ppoll`, and the older
/// path calls musl and glibc still make here.
pub(crate) fn fs() -> Vec<Entry> {
    vec![
        any(libc::SYS_poll),
        any(libc::SYS_open),
        any(libc::SYS_stat),
        any(libc::SYS_lstat),
    ]
}

/// The main thread's extra syscall: `unlink` next to `unlinkat` (the API socket).
pub(crate) fn main_thread() -> Vec<Entry> {
    vec![any(libc::SYS_unlink)]
}
