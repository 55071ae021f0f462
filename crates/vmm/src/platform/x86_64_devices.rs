//! The always-present devices of an x86 microVM: serial console (port I/O, IRQ 4 via
//! irqfd), the i8042 controller (reset line), the ACPI power-management registers
//! (power-off and reset), pvpanic (the guest kernel reports a panic), the CMOS
//! real-time clock (IRQ 8 via irqfd, polled by the event loop), and the boot-timer
//! MMIO byte.

use super::{eventfd, PlatformDevices};
use crate::error::VmmError;
use crate::timeline::{BootEvent, Timeline};
use arch::layout;
use devices::acpi_pm::AcpiPmDevice;
use devices::boot_timer::BootTimer;
use devices::cmos::Cmos;
use devices::i8042::I8042Device;
use devices::pvpanic::PvPanic;
use devices::serial::{ConsoleWriter, SerialDevice};
use devices::trigger::EventFdTrigger;
use devices::vmgenid::VmGenId;
use devices::Bus;
use kvm_ioctls::VmFd;
use std::sync::{Arc, Mutex};
use vm_memory::GuestAddress;

/// Creates the legacy devices and places them on fresh buses.
pub fn attach(
    vm: &VmFd,
    console: ConsoleWriter,
    timeline: &Timeline,
) -> Result<PlatformDevices, VmmError> {
    let mut io_bus = Bus::new();
    let mut mmio_bus = Bus::new();

    let irq = eventfd()?;
    vm.register_irqfd(&irq, layout::SERIAL_IRQ)
        .map_err(|e| VmmError::Irqfd(layout::SERIAL_IRQ, e))?;
    let serial = Arc::new(Mutex::new(SerialDevice::new(
        EventFdTrigger::new(irq),
        console,
    )));
    io_bus.insert(
        serial.clone(),
        layout::SERIAL_PORT_BASE,
        layout::SERIAL_PORT_SIZE,
    )?;

    let reset_evt = eventfd()?;
    let i8042 = Arc::new(Mutex::new(I8042Device::new(
        reset_evt.try_clone().map_err(VmmError::EventFd)?,
    )));
    io_bus.insert(
        i8042.clone(),
        layout::I8042_PORT_BASE,
        layout::I8042_PORT_SIZE,
    )?;

    let poweroff_evt = eventfd()?;
    let sci = eventfd()?;
    vm.register_irqfd(&sci, layout::ACPI_SCI_IRQ)
        .map_err(|e| VmmError::Irqfd(layout::ACPI_SCI_IRQ, e))?;
    let acpi_pm = AcpiPmDevice::new(
        poweroff_evt.try_clone().map_err(VmmError::EventFd)?,
        reset_evt.try_clone().map_err(VmmError::EventFd)?,
        arch::acpi::S5_SLEEP_TYPE,
        layout::ACPI_RESET_VALUE,
    )
    .with_sci(EventFdTrigger::new(sci));
    let acpi_pm = Arc::new(Mutex::new(acpi_pm));
    io_bus.insert(
        acpi_pm.clone(),
        layout::ACPI_PM_PORT_BASE,
        layout::ACPI_PM_PORT_SIZE,
    )?;

    // The century byte the FADT names is where the clock keeps it.
    const _: () = assert!(layout::CMOS_CENTURY == devices::cmos::CENTURY);
    let rtc_irq = eventfd()?;
    vm.register_irqfd(&rtc_irq, layout::CMOS_IRQ)
        .map_err(|e| VmmError::Irqfd(layout::CMOS_IRQ, e))?;
    let cmos = Arc::new(Mutex::new(
        Cmos::new().with_irq(EventFdTrigger::new(rtc_irq)),
    ));
    io_bus.insert(cmos.clone(), layout::CMOS_PORT_BASE, layout::CMOS_PORT_SIZE)?;

    let panic_evt = eventfd()?;
    let pvpanic = Arc::new(Mutex::new(PvPanic::new(
        panic_evt.try_clone().map_err(VmmError::EventFd)?,
    )));
    io_bus.insert(pvpanic.clone(), layout::PVPANIC_PORT, 1)?;

    let ged = eventfd()?;
    vm.register_irqfd(&ged, layout::GED_IRQ)
        .map_err(|e| VmmError::Irqfd(layout::GED_IRQ, e))?;
    let vmgenid = Arc::new(VmGenId::new(
        GuestAddress(layout::VMGENID_ADDR),
        EventFdTrigger::new(ged),
    ));

    let t = timeline.clone();
    let timer = BootTimer::new(
        layout::BOOT_TIMER_MAGIC,
        Box::new(move || {
            log::info!("guest signalled the boot timer (user space reached)");
            t.record(BootEvent::BootTimer);
        }),
    );
    mmio_bus.insert(
        Arc::new(Mutex::new(timer)),
        layout::BOOT_TIMER_ADDR,
        layout::BOOT_TIMER_SIZE,
    )?;

    let legacy = super::LegacyHandles {
        serial: serial.clone(),
        i8042,
        acpi_pm: acpi_pm.clone(),
        cmos: cmos.clone(),
        pvpanic,
        vmgenid,
    };
    Ok(PlatformDevices {
        io_bus,
        mmio_bus,
        serial,
        reset_evt,
        poweroff_evt,
        panic_evt,
        acpi_pm: Some(acpi_pm),
        polled: vec![cmos],
        legacy,
    })
}
