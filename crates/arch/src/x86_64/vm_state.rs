//! The VM-wide state KVM keeps on x86_64, for snapshots: the two PICs and the IOAPIC,
//! the PIT, and the kvmclock base.

use kvm_bindings::{
    kvm_clock_data, kvm_irqchip, kvm_pit_state2, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE,
};
use kvm_ioctls::VmFd;
use serde::{Deserialize, Serialize};

/// Why the VM's state cannot be saved or restored.
#[derive(Debug, thiserror::Error)]
pub enum VmStateError {
    /// A KVM_GET_* ioctl failed.
    #[error("reading the VM's {0}: {1}")]
    Get(&'static str, #[source] kvm_ioctls::Error),
    /// A KVM_SET_* ioctl failed.
    #[error("writing the VM's {0}: {1}")]
    Set(&'static str, #[source] kvm_ioctls::Error),
}

/// The in-kernel devices' state.
#[derive(Serialize, Deserialize)]
pub struct VmState {
    /// The master 8259.
    pub pic_master: kvm_irqchip,
    /// The slave 8259.
    pub pic_slave: kvm_irqchip,
    /// The IOAPIC (its redirection table decides where each device IRQ goes).
    pub ioapic: kvm_irqchip,
    /// The 8254 PIT.
    pub pit: kvm_pit_state2,
    /// The kvmclock base the guest's clock counts from.
    pub clock: kvm_clock_data,
}

impl std::fmt::Debug for VmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmState")
            .field("clock", &self.clock.clock)
            .finish_non_exhaustive()
    }
}

fn chip(id: u32) -> kvm_irqchip {
    kvm_irqchip {
        chip_id: id,
        ..Default::default()
    }
}

/// Reads the state of a VM whose vCPUs are parked.
pub fn save_vm(vm: &VmFd) -> Result<VmState, VmStateError> {
    let get = |what| move |e| VmStateError::Get(what, e);
    let mut pic_master = chip(KVM_IRQCHIP_PIC_MASTER);
    vm.get_irqchip(&mut pic_master).map_err(get("master PIC"))?;
    let mut pic_slave = chip(KVM_IRQCHIP_PIC_SLAVE);
    vm.get_irqchip(&mut pic_slave).map_err(get("slave PIC"))?;
    let mut ioapic = chip(KVM_IRQCHIP_IOAPIC);
    vm.get_irqchip(&mut ioapic).map_err(get("IOAPIC"))?;
    let pit = vm.get_pit2().map_err(get("PIT"))?;
    let clock = vm.get_clock().map_err(get("clock"))?;
    Ok(VmState {
        pic_master,
        pic_slave,
        ioapic,
        pit,
        clock,
    })
}

/// Writes `state` into a VM set up by [`super::setup_vm`] whose vCPUs have not run.
/// The guest's clock continues from the saved value: the time the VM spent saved
/// does not pass for it.
pub fn restore_vm(vm: &VmFd, state: &VmState) -> Result<(), VmStateError> {
    let set = |what| move |e| VmStateError::Set(what, e);
    vm.set_irqchip(&state.pic_master)
        .map_err(set("master PIC"))?;
    vm.set_irqchip(&state.pic_slave).map_err(set("slave PIC"))?;
    vm.set_irqchip(&state.ioapic).map_err(set("IOAPIC"))?;
    vm.set_pit2(&state.pit).map_err(set("PIT"))?;
    // Only the clock value is given back: flags such as TSC_STABLE are KVM's to
    // report, and KVM_SET_CLOCK refuses them.
    let clock = kvm_clock_data {
        clock: state.clock.clock,
        ..Default::default()
    };
    vm.set_clock(&clock).map_err(set("clock"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap fails the test
    use super::*;
    use kvm_ioctls::Kvm;

    #[test]
    fn state_moves_to_another_vm() {
        let kvm = match Kvm::new() {
            Ok(kvm) => kvm,
            Err(e) => return test_skips::skip("state_moves_to_another_vm", e),
        };
        let vm = kvm.create_vm().unwrap();
        super::super::setup_vm(&vm).unwrap();
        let mut state = save_vm(&vm).unwrap();
        // Something recognizable: IOAPIC pin 1's entry, masked, vector 0x31.
        // SAFETY: chip_id is IOAPIC, so the union holds the IOAPIC's state.
        unsafe {
            state.ioapic.chip.ioapic.redirtbl[1].bits = 0x1_0031;
        }
        let json = serde_json::to_vec(&state).unwrap();
        let state: VmState = serde_json::from_slice(&json).unwrap();
        let other = kvm.create_vm().unwrap();
        super::super::setup_vm(&other).unwrap();
        restore_vm(&other, &state).unwrap();
        let back = save_vm(&other).unwrap();
        // SAFETY: as above.
        let entry = unsafe { back.ioapic.chip.ioapic.redirtbl[1].bits };
        assert_eq!(entry, 0x1_0031);
        assert!(back.clock.clock >= state.clock.clock);
    }
}
