//! vCPU start state on aarch64: KVM_ARM_VCPU_INIT with the host's preferred target and
//! PSCI 0.2 (secondary vCPUs start powered off and are brought up by the guest through
//! PSCI CPU_ON), then the boot protocol's registers on the boot vCPU: PC = kernel
//! entry, X0 = device tree address, PSTATE = EL1h with every exception masked.

use kvm_bindings::{
    kvm_vcpu_init, KVM_ARM_VCPU_POWER_OFF, KVM_ARM_VCPU_PSCI_0_2, KVM_REG_ARM64, KVM_REG_ARM_CORE,
    KVM_REG_SIZE_U64,
};
use kvm_ioctls::{VcpuFd, VmFd};

/// Errors setting up a vCPU.
#[derive(Debug, thiserror::Error)]
pub enum RegsError {
    /// KVM_ARM_PREFERRED_TARGET failed.
    #[error("KVM_ARM_PREFERRED_TARGET failed")]
    PreferredTarget(#[source] kvm_ioctls::Error),
    /// KVM_ARM_VCPU_INIT failed.
    #[error("KVM_ARM_VCPU_INIT failed")]
    Init(#[source] kvm_ioctls::Error),
    /// KVM_SET_ONE_REG failed.
    #[error("KVM_SET_ONE_REG ({0}) failed")]
    SetReg(&'static str, #[source] kvm_ioctls::Error),
}

/// PSTATE at entry: EL1h (SPSel = 1), D, A, I and F masked.
pub const PSTATE_EL1H_MASKED: u64 = 0x3c5;

/// The ID of core register `offset` (in bytes into `struct kvm_regs`).
pub const fn core_reg_id(byte_offset: u64) -> u64 {
    KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE as u64 | (byte_offset / 4)
}

/// `kvm_regs.regs.regs[0]` (X0).
pub const X0: u64 = core_reg_id(0);
/// `kvm_regs.regs.pc`.
pub const PC: u64 = core_reg_id(32 * 8);
/// `kvm_regs.regs.pstate`.
pub const PSTATE: u64 = core_reg_id(33 * 8);

/// The vCPU init request for vCPU `index`: the host's preferred target, PSCI 0.2,
/// and powered off for every vCPU but the first.
pub fn vcpu_init_for(preferred: &kvm_vcpu_init, index: u8) -> kvm_vcpu_init {
    let mut kvi = *preferred;
    kvi.features[0] |= 1 << KVM_ARM_VCPU_PSCI_0_2;
    if index > 0 {
        kvi.features[0] |= 1 << KVM_ARM_VCPU_POWER_OFF;
    }
    kvi
}

/// The host's preferred vCPU target.
pub fn preferred_target(vm: &VmFd) -> Result<kvm_vcpu_init, RegsError> {
    let mut kvi = kvm_vcpu_init::default();
    vm.get_preferred_target(&mut kvi)
        .map_err(RegsError::PreferredTarget)?;
    Ok(kvi)
}

/// KVM_ARM_VCPU_INIT of vCPU `index`.
pub fn init_vcpu(vcpu: &VcpuFd, preferred: &kvm_vcpu_init, index: u8) -> Result<(), RegsError> {
    vcpu.vcpu_init(&vcpu_init_for(preferred, index))
        .map_err(RegsError::Init)
}

fn set(vcpu: &VcpuFd, what: &'static str, id: u64, value: u64) -> Result<(), RegsError> {
    vcpu.set_one_reg(id, &value.to_le_bytes())
        .map(|_| ())
        .map_err(|e| RegsError::SetReg(what, e))
}

/// The boot vCPU's registers: PC, X0 and PSTATE.
pub fn setup_boot_regs(vcpu: &VcpuFd, entry: u64, fdt_addr: u64) -> Result<(), RegsError> {
    set(vcpu, "pstate", PSTATE, PSTATE_EL1H_MASKED)?;
    set(vcpu, "pc", PC, entry)?;
    set(vcpu, "x0", X0, fdt_addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_register_ids_follow_kvm_regs() {
        // KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE, offsets in 32-bit words.
        assert_eq!(X0, 0x6030_0000_0010_0000);
        assert_eq!(PC, 0x6030_0000_0010_0040);
        assert_eq!(PSTATE, 0x6030_0000_0010_0042);
    }

    #[test]
    fn secondary_vcpus_start_powered_off_with_psci() {
        let preferred = kvm_vcpu_init {
            target: 5,
            features: [0; 7],
        };
        let boot = vcpu_init_for(&preferred, 0);
        assert_eq!(boot.target, 5);
        assert_eq!(boot.features[0], 1 << KVM_ARM_VCPU_PSCI_0_2);
        let second = vcpu_init_for(&preferred, 1);
        assert_eq!(
            second.features[0],
            (1 << KVM_ARM_VCPU_PSCI_0_2) | (1 << KVM_ARM_VCPU_POWER_OFF)
        );
    }
}
