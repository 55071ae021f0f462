//! x86_64: RIP, and the vCPU's own page-table walk (KVM_TRANSLATE).

use kvm_ioctls::VcpuFd;

/// The guest's RIP (0 if it cannot be read).
pub(crate) fn program_counter(fd: &VcpuFd) -> u64 {
    fd.get_regs().map(|r| r.rip).unwrap_or(0)
}

/// The guest-physical address of virtual address `gva`, if mapped.
pub(crate) fn guest_physical(fd: &mut VcpuFd, gva: u64) -> Option<u64> {
    fd.translate_gva(gva)
        .ok()
        .filter(|t| t.valid != 0)
        .map(|t| t.physical_address)
}
