//! aarch64 guest set-up: the memory layout, the device tree, the in-kernel GIC and
//! the vCPUs' start state.

pub mod fdt;
pub mod gic;
pub mod layout;
pub mod regs;
pub mod vm_state;

use vm_memory::GuestAddress;

/// Errors of aarch64 guest set-up.
#[derive(Debug, thiserror::Error)]
pub enum ArchError {
    /// The GIC could not be created.
    #[error("interrupt controller")]
    Gic(#[from] gic::GicError),
    /// vCPU set-up failed.
    #[error("vCPU set-up")]
    Regs(#[from] regs::RegsError),
    /// The device tree could not be built.
    #[error("device tree")]
    Fdt(#[from] fdt::FdtError),
    /// The device tree outgrew its room.
    #[error("the device tree ({0} bytes) is larger than the room reserved for it")]
    FdtTooBig(usize),
    /// The device tree could not be written to guest memory.
    #[error("cannot write the device tree at {0:#x}")]
    FdtWrite(u64),
}

/// Guest RAM: one region from [`layout::DRAM_START`].
pub fn guest_memory_regions(size: u64) -> Vec<(GuestAddress, usize)> {
    vec![(GuestAddress(layout::DRAM_START), size as usize)]
}
