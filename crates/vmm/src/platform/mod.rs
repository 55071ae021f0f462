//! What differs between architectures when a VM is built, behind one set of function
//! names per architecture (the builder calls them in order and never looks at
//! `target_arch`):
//!
//! 1. `before_vcpus(vm)`: interrupt controllers that must exist before vCPUs (x86).
//! 2. `create_vcpus(vm, count)`: vCPU fds, plus what must follow them (the aarch64 GIC).
//! 3. `attach_devices(vm, console, timeline)`: serial, reset/power-off lines, boot timer.
//! 4. `load_payload(config, preset, memory, vcpus, devices, state)`: kernel, initrd, command
//!    line, and how the guest learns about its devices (command line + MP table/ACPI on
//!    x86, a device tree on aarch64).
//! 5. `configure_vcpus(kvm, vcpus, memory, boot)`: registers at entry.
//!
//! Also per architecture: `host_emulates_guest_code()` (whether the host's KVM lacks
//! hardware virtualization below it) and `emulation_failure_hint(reason)` (which
//! preset would have kept the guest off an instruction KVM could not emulate).

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "aarch64")]
mod aarch64_state;
#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
mod x86_64_devices;
#[cfg(target_arch = "x86_64")]
mod x86_64_state;

#[cfg(target_arch = "aarch64")]
pub(crate) use aarch64::*;
#[cfg(target_arch = "aarch64")]
pub(crate) use aarch64_state::{LegacyHandles, LegacyState};
#[cfg(target_arch = "x86_64")]
pub(crate) use x86_64::*;
#[cfg(target_arch = "x86_64")]
pub(crate) use x86_64_state::{LegacyHandles, LegacyState};

use devices::acpi_pm::AcpiPmDevice;
use devices::serial::SerialDevice;
use devices::Bus;
use std::sync::{Arc, Mutex};
use vmm_sys_util::eventfd::EventFd;

/// The always-present devices and the handles the VMM keeps.
pub(crate) struct PlatformDevices {
    /// Port I/O bus (empty where there is no port I/O).
    pub io_bus: Bus,
    /// MMIO bus.
    pub mmio_bus: Bus,
    /// The serial console, also fed by the event loop.
    pub serial: Arc<Mutex<SerialDevice>>,
    /// Written when the guest asks for a reset through a device.
    pub reset_evt: EventFd,
    /// Written when the guest powers off through a device.
    pub poweroff_evt: EventFd,
    /// Written when the guest kernel reports a panic (pvpanic, where the platform
    /// has it).
    pub panic_evt: EventFd,
    /// The ACPI power-management registers, where the platform has them.
    pub acpi_pm: Option<Arc<Mutex<AcpiPmDevice>>>,
    /// Devices the event loop polls (the CMOS clock's interrupts).
    pub polled: Vec<Arc<Mutex<dyn devices::Polled>>>,
    /// The devices whose state a snapshot keeps.
    pub legacy: LegacyHandles,
}

/// A memory-mapped device the guest must be told about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MmioDeviceInfo {
    /// Base address.
    pub base: u64,
    /// Window size.
    pub size: u64,
    /// Interrupt: GSI (x86) or SPI (aarch64).
    pub irq: u32,
}

pub(crate) fn eventfd() -> Result<EventFd, crate::error::VmmError> {
    EventFd::new(vmm_sys_util::eventfd::EFD_NONBLOCK).map_err(crate::error::VmmError::EventFd)
}
