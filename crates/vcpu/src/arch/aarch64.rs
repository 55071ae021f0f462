//! aarch64: PC through KVM_GET_ONE_REG. KVM has no address translation ioctl here, so
//! a failed emulation shows no instruction bytes.

use kvm_bindings::{KVM_REG_ARM64, KVM_REG_ARM_CORE, KVM_REG_SIZE_U64};
use kvm_ioctls::VcpuFd;

/// `kvm_regs.regs.pc`: after x0-x30 and sp, in 32-bit units as KVM counts core regs.
const PC_OFFSET: u64 = (31 + 1) * 8 / 4;
const PC_ID: u64 = KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE as u64 | PC_OFFSET;

/// The guest's PC (0 if it cannot be read).
pub(crate) fn program_counter(fd: &VcpuFd) -> u64 {
    let mut bytes = [0u8; 8];
    match fd.get_one_reg(PC_ID, &mut bytes) {
        Ok(_) => u64::from_le_bytes(bytes),
        Err(_) => 0,
    }
}

/// Not available on aarch64.
pub(crate) fn guest_physical(_fd: &mut VcpuFd, _gva: u64) -> Option<u64> {
    None
}
