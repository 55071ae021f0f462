//! aarch64 guest set-up: the memory layout, the device tree, the in-kernel GIC and
//! the vCPUs' start state (issue 6 wires them into the VMM).

pub mod fdt;
pub mod gic;
pub mod layout;
pub mod regs;
