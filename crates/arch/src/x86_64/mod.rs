//! x86_64 guest set-up: memory regions, in-kernel interrupt controllers, vCPU state
//! and the boot structures (zero page, e820, MP table) a Linux kernel reads.

pub mod acpi;
pub mod bootparams;
pub mod cpuid;
pub mod gdt;
pub mod layout;
pub mod mptable;
pub mod paging;
pub mod regs;
pub mod vm_state;

use kvm_bindings::{kvm_pit_config, CpuId, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{VcpuFd, VmFd};
use vm_memory::{Address, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

pub use bootparams::{BootInfo, InitrdRange};
use layout::{HIMEM_START, MMIO_GAP_END, MMIO_GAP_START};

/// Errors of x86_64 guest set-up.
#[derive(Debug, thiserror::Error)]
pub enum ArchError {
    /// KVM_SET_TSS_ADDR failed.
    #[error("KVM_SET_TSS_ADDR failed")]
    SetTssAddress(#[source] kvm_ioctls::Error),
    /// KVM_CREATE_IRQCHIP failed.
    #[error("KVM_CREATE_IRQCHIP failed")]
    CreateIrqChip(#[source] kvm_ioctls::Error),
    /// KVM_CREATE_PIT2 failed.
    #[error("KVM_CREATE_PIT2 failed")]
    CreatePit(#[source] kvm_ioctls::Error),
    /// KVM_SET_CPUID2 failed.
    #[error("KVM_SET_CPUID2 failed")]
    SetCpuid(#[source] kvm_ioctls::Error),
    /// Register set-up failed.
    #[error("vCPU register set-up")]
    Regs(#[from] regs::RegsError),
    /// MP table set-up failed.
    #[error("MP table")]
    Mptable(#[from] mptable::MptableError),
    /// Zero page set-up failed.
    #[error("boot parameters")]
    BootParams(#[from] bootparams::BootParamsError),
    /// ACPI table set-up failed.
    #[error("ACPI tables")]
    Acpi(#[from] acpi::AcpiError),
}

/// Guest RAM regions for `size` bytes: one region below the 32-bit MMIO gap, and the
/// rest above 4 GiB when the guest is bigger than the gap's start.
pub fn guest_memory_regions(size: u64) -> Vec<(GuestAddress, usize)> {
    if size <= MMIO_GAP_START {
        vec![(GuestAddress(0), size as usize)]
    } else {
        vec![
            (GuestAddress(0), MMIO_GAP_START as usize),
            (GuestAddress(MMIO_GAP_END), (size - MMIO_GAP_START) as usize),
        ]
    }
}

/// End of the RAM that sits below the MMIO gap (where the initrd goes).
pub fn low_memory_end<M: GuestMemoryBackend>(mem: &M) -> u64 {
    mem.iter()
        .map(|r| r.start_addr().raw_value() + r.len())
        .filter(|end| *end <= MMIO_GAP_START)
        .max()
        .unwrap_or(0)
}

/// Where the kernel's protected-mode code starts; kernels must load at or above it.
pub const fn kernel_min_address() -> GuestAddress {
    GuestAddress(HIMEM_START)
}

/// Creates the in-kernel PIC + IOAPIC + LAPICs and the PIT.
pub fn setup_vm(vm: &VmFd) -> Result<(), ArchError> {
    vm.set_tss_address(layout::KVM_TSS_ADDRESS as usize)
        .map_err(ArchError::SetTssAddress)?;
    vm.create_irq_chip().map_err(ArchError::CreateIrqChip)?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit).map_err(ArchError::CreatePit)
}

/// Everything a vCPU needs to start a 64-bit kernel at `entry`.
pub struct VcpuSetup<'a> {
    /// vCPU index, also its APIC ID.
    pub id: u8,
    /// Number of vCPUs in the VM.
    pub count: u8,
    /// CPUID from KVM_GET_SUPPORTED_CPUID, filtered per vCPU here.
    pub base_cpuid: &'a CpuId,
    /// Guest-physical entry point of the kernel.
    pub entry: GuestAddress,
}

/// Sets CPUID, MSRs, registers, segments, paging, FPU and LAPIC of one vCPU.
pub fn configure_vcpu<M: GuestMemoryBackend>(
    vcpu: &VcpuFd,
    mem: &M,
    setup: &VcpuSetup,
) -> Result<(), ArchError> {
    let mut cpuid = setup.base_cpuid.clone();
    cpuid::filter_cpuid(&mut cpuid, setup.id, setup.count);
    vcpu.set_cpuid2(&cpuid).map_err(ArchError::SetCpuid)?;
    regs::setup_msrs(vcpu)?;
    regs::setup_regs(vcpu, setup.entry.raw_value())?;
    regs::setup_sregs(mem, vcpu)?;
    regs::setup_fpu(vcpu)?;
    regs::setup_lapic(vcpu)?;
    Ok(())
}

/// Writes the MP table, the ACPI tables and the zero page for `num_cpus` vCPUs.
/// Kernels without ACPI read the MP table; kernels with ACPI use the MADT and can power
/// off through the FADT. `info.acpi_rsdp` is filled in here.
pub fn configure_system<M: GuestMemoryBackend>(
    mem: &M,
    num_cpus: usize,
    info: BootInfo,
) -> Result<(), ArchError> {
    mptable::setup_mptable(mem, num_cpus)?;
    let rsdp = acpi::setup_acpi(mem, num_cpus)?;
    let info = BootInfo {
        acpi_rsdp: Some(rsdp),
        ..info
    };
    bootparams::setup_boot_params(mem, &info)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GIB, MIB};
    use vm_memory::GuestMemoryMmap;

    #[test]
    fn memory_below_gap_is_one_region() {
        assert_eq!(
            guest_memory_regions(128 * MIB),
            vec![(GuestAddress(0), (128 * MIB) as usize)]
        );
        assert_eq!(guest_memory_regions(MMIO_GAP_START).len(), 1);
    }

    #[test]
    fn memory_above_gap_is_split() {
        let r = guest_memory_regions(4 * GIB);
        assert_eq!(r[0], (GuestAddress(0), MMIO_GAP_START as usize));
        assert_eq!(
            r[1],
            (
                GuestAddress(MMIO_GAP_END),
                (4 * GIB - MMIO_GAP_START) as usize
            )
        );
        let total: usize = r.iter().map(|x| x.1).sum();
        assert_eq!(total as u64, 4 * GIB);
    }

    #[test]
    fn low_memory_end_stops_at_gap() {
        let m: GuestMemoryMmap =
            GuestMemoryMmap::from_ranges(&guest_memory_regions(64 * MIB)).unwrap();
        assert_eq!(low_memory_end(&m), 64 * MIB);
    }

    #[test]
    fn layout_is_consistent() {
        use layout::*;
        let fixed = [
            (BOOT_GDT_START, 8 * BOOT_GDT_MAX as u64),
            (BOOT_IDT_START, 8),
            (ZERO_PAGE_START, 0x1000),
            (PML4_START, 0x1000),
            (PDPTE_START, 0x1000),
            (PDE_START, 0x4000),
            (CMDLINE_START, CMDLINE_MAX_SIZE as u64),
        ];
        for (i, a) in fixed.iter().enumerate() {
            assert!(a.0 + a.1 <= EBDA_START);
            for b in fixed.iter().skip(i + 1) {
                assert!(
                    a.0 + a.1 <= b.0 || b.0 + b.1 <= a.0,
                    "{a:x?} overlaps {b:x?}"
                );
            }
        }
    }
}
