//! aarch64: vCPUs first (KVM_ARM_VCPU_INIT with PSCI 0.2), then the GIC; the ns16550a
//! serial port and the boot timer on MMIO; a device tree with memory, CPUs, the command
//! line and initrd, GIC, timer, PSCI, serial and every virtio-mmio device; the boot
//! vCPU enters the Image with X0 = the device tree. Reset and power-off arrive as PSCI
//! calls (KVM system events), so no device signals them.

use super::{eventfd, MmioDeviceInfo, PlatformDevices};
use crate::config::VmConfig;
use crate::error::VmmError;
use crate::timeline::{BootEvent, Timeline};
use arch::aarch64::fdt::{create_fdt, FdtConfig, MmioDevice};
use arch::aarch64::gic::{create_gic, Gic};
use arch::aarch64::layout::{
    BOOT_TIMER_ADDR, BOOT_TIMER_MAGIC, BOOT_TIMER_SIZE, CMDLINE_MAX_SIZE, DRAM_START, FDT_MAX_SIZE,
    SERIAL_ADDR, SERIAL_IRQ, SERIAL_SIZE,
};
use arch::aarch64::regs;
use arch::ArchError;
use devices::boot_timer::BootTimer;
use devices::serial::{ConsoleWriter, SerialDevice};
use devices::trigger::EventFdTrigger;
use devices::Bus;
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use std::sync::{Arc, Mutex};
use vm_memory::{
    Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
};

/// What the VM needs kept alive besides its fds: the GIC.
pub(crate) struct ArchState {
    gic: Gic,
}

/// Where the boot vCPU starts, and where its device tree is.
pub(crate) struct BootEntry {
    entry: u64,
    fdt: u64,
}

/// Nothing: the GIC comes after the vCPUs on aarch64.
/// The `emulated-kvm` preset is for x86 hosts: on aarch64 there is nothing to decide.
pub(crate) fn host_emulates_guest_code() -> Option<bool> {
    None
}

/// No instruction-level hint on aarch64 (the preset is x86-only).
pub(crate) fn emulation_failure_hint(_reason: &vcpu::VcpuExitReason) -> Option<String> {
    None
}

pub(crate) fn before_vcpus(_vm: &VmFd) -> Result<(), VmmError> {
    Ok(())
}

/// Creates and initialises `count` vCPUs (secondaries powered off, for PSCI CPU_ON),
/// then the GIC.
pub(crate) fn create_vcpus(vm: &VmFd, count: u8) -> Result<(Vec<VcpuFd>, ArchState), VmmError> {
    let preferred = regs::preferred_target(vm).map_err(ArchError::from)?;
    let mut fds = Vec::with_capacity(usize::from(count));
    for id in 0..count {
        let fd = vm
            .create_vcpu(u64::from(id))
            .map_err(|e| VmmError::CreateVcpu(id, e))?;
        regs::init_vcpu(&fd, &preferred, id).map_err(ArchError::from)?;
        fds.push(fd);
    }
    let gic = create_gic(vm).map_err(ArchError::from)?;
    Ok((fds, ArchState { gic }))
}

/// The serial port (ns16550a on MMIO, SPI through an irqfd) and the boot timer.
pub(crate) fn attach_devices(
    vm: &VmFd,
    console: ConsoleWriter,
    timeline: &Timeline,
) -> Result<PlatformDevices, VmmError> {
    let mut mmio_bus = Bus::new();
    let irq = eventfd()?;
    vm.register_irqfd(&irq, SERIAL_IRQ)
        .map_err(|e| VmmError::Irqfd(SERIAL_IRQ, e))?;
    let serial = Arc::new(Mutex::new(SerialDevice::new(
        EventFdTrigger::new(irq),
        console,
    )));
    mmio_bus.insert(serial.clone(), SERIAL_ADDR, SERIAL_SIZE)?;
    let t = timeline.clone();
    let timer = BootTimer::new(
        BOOT_TIMER_MAGIC,
        Box::new(move || {
            log::info!("guest signalled the boot timer (user space reached)");
            t.record(BootEvent::BootTimer);
        }),
    );
    mmio_bus.insert(
        Arc::new(Mutex::new(timer)),
        BOOT_TIMER_ADDR,
        BOOT_TIMER_SIZE,
    )?;
    Ok(PlatformDevices {
        io_bus: Bus::new(),
        mmio_bus,
        serial,
        reset_evt: eventfd()?,
        poweroff_evt: eventfd()?,
        panic_evt: eventfd()?,
        acpi_pm: None,
        polled: Vec::new(),
        legacy: super::LegacyHandles,
    })
}

/// Loads the Image at the start of RAM and the initrd after it, and writes the device
/// tree at the end of RAM.
pub(crate) fn load_payload(
    config: &VmConfig,
    preset: Option<boot::cmdline::Preset>,
    memory: &GuestMemoryMmap,
    vcpus: u8,
    devices: &[MmioDeviceInfo],
    state: &ArchState,
) -> Result<BootEntry, VmmError> {
    let ram_end = memory
        .iter()
        .map(|r| r.start_addr().raw_value() + r.len())
        .max()
        .unwrap_or(DRAM_START);
    // The FDT goes at the end of RAM, 2 MiB aligned (and so 8-byte aligned).
    let fdt_addr = ram_end.saturating_sub(FDT_MAX_SIZE) & !(FDT_MAX_SIZE - 1);
    let kernel = boot::load_kernel(memory, &config.spec.kernel, DRAM_START, fdt_addr)?;
    let initrd = match &config.spec.initrd {
        Some(path) => {
            let (addr, size) = boot::initrd::load_initrd(memory, path, kernel.end, fdt_addr)?;
            Some((addr.raw_value(), size))
        }
        None => None,
    };
    let cmdline = boot::cmdline::build_cmdline(
        config.spec.default_cmdline,
        preset,
        config.spec.cmdline.as_deref(),
        CMDLINE_MAX_SIZE,
    )?;
    let cmdline = cmdline
        .as_cstring()
        .map_err(|e| boot::BootError::Cmdline(e.to_string()))?
        .into_string()
        .map_err(|e| boot::BootError::Cmdline(e.to_string()))?;
    let regions: Vec<(u64, u64)> = memory
        .iter()
        .map(|r| (r.start_addr().raw_value(), r.len()))
        .collect();
    let virtio: Vec<MmioDevice> = devices
        .iter()
        .map(|d| MmioDevice {
            addr: d.base,
            size: d.size,
            spi: d.irq,
        })
        .collect();
    let fdt = create_fdt(&FdtConfig {
        cpus: u32::from(vcpus),
        memory: &regions,
        cmdline: &cmdline,
        initrd,
        gic: state.gic.version(),
        virtio: &virtio,
    })
    .map_err(ArchError::from)?;
    if fdt.len() as u64 > FDT_MAX_SIZE {
        return Err(ArchError::FdtTooBig(fdt.len()).into());
    }
    memory
        .write_slice(&fdt, GuestAddress(fdt_addr))
        .map_err(|_| ArchError::FdtWrite(fdt_addr))?;
    log::debug!(
        "device tree: {} bytes at {fdt_addr:#x}; command line {cmdline:?}",
        fdt.len()
    );
    Ok(BootEntry {
        entry: kernel.entry.raw_value(),
        fdt: fdt_addr,
    })
}

/// The boot vCPU's PC, X0 and PSTATE (the others wait for PSCI CPU_ON).
pub(crate) fn configure_vcpus(
    _kvm: &Kvm,
    vcpus: &[VcpuFd],
    _memory: &GuestMemoryMmap,
    boot: &BootEntry,
) -> Result<(), VmmError> {
    if let Some(first) = vcpus.first() {
        regs::setup_boot_regs(first, boot.entry, boot.fdt).map_err(ArchError::from)?;
    }
    Ok(())
}
