//! Emulated devices and the bus that routes guest port I/O and MMIO accesses to them.

pub mod acpi_pm;
pub mod boot_timer;
pub mod bus;
pub mod cmos;
pub mod counters;
pub mod guest_log;
pub mod i8042;
pub mod pvpanic;
pub mod serial;
pub mod trigger;
pub mod virtio;
pub mod vmgenid;

pub use bus::{Bus, BusDevice, BusError};

/// A device with time-driven state (a clock's interrupts) that the VMM's event loop
/// polls at least every tick.
pub trait Polled: Send {
    /// Catches up with the time now.
    fn poll(&mut self);
}

impl Polled for cmos::Cmos {
    fn poll(&mut self) {
        cmos::Cmos::poll(self);
    }
}
