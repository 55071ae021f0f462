//! The two things the run loop needs to know about the CPU: where the guest is
//! executing, and which guest-physical address that is (for showing the instruction
//! bytes of a failed emulation).

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86_64;

#[cfg(target_arch = "aarch64")]
pub(crate) use aarch64::{guest_physical, program_counter};
#[cfg(target_arch = "x86_64")]
pub(crate) use x86_64::{guest_physical, program_counter};
