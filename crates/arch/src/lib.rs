//! Architecture-specific guest set-up for minivmm.
//!
//! Every architecture module exports the same small interface, so the rest of the VMM
//! never needs `#[cfg(target_arch)]` inside a function body:
//!
//! - `layout`: every guest-physical address and IRQ number the VMM uses;
//! - `guest_memory_regions(size)`: the RAM regions for a guest of `size` bytes;
//! - `setup_vm(&VmFd)`: in-kernel interrupt controllers and timers;
//! - `VcpuSetup` / `configure_vcpu(...)`: registers, CPUID, MSRs and interrupt lines;
//! - `configure_system(...)`: the boot structures the guest kernel reads.

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
#[cfg(target_arch = "aarch64")]
pub use crate::aarch64::{guest_memory_regions, layout, vm_state, ArchError};
#[cfg(target_arch = "x86_64")]
pub mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use crate::x86_64::*;

/// Bytes in one mebibyte.
pub const MIB: u64 = 1 << 20;
/// Bytes in one gibibyte.
pub const GIB: u64 = 1 << 30;
