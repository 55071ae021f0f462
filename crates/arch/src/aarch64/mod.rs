//! aarch64 guest set-up. So far: the memory layout and the device tree (issue 6 adds
//! the GIC, vCPU initialisation and the boot path on top).

pub mod fdt;
pub mod layout;
