//! Builds a VM from a [`VmConfig`]: KVM, guest memory, devices, kernel and boot
//! structures, and configured vCPUs, ready to run.

use crate::config::VmConfig;
use crate::console::console_writer;
use crate::error::VmmError;
use crate::legacy::{self, LegacyDevices};
use crate::memory::create_guest_memory;
use crate::timeline::{BootEvent, Timeline};
use crate::virtio_devices;
use arch::layout::{CMDLINE_MAX_SIZE, CMDLINE_START};
use arch::{BootInfo, InitrdRange, VcpuSetup};
use devices::virtio::block::{disk::Disk, Block};
use devices::virtio::net::{default_mac, tap::Tap, Net};
use devices::virtio::VirtioDevice;
use kvm_bindings::KVM_MAX_CPUID_ENTRIES;
use kvm_ioctls::{Kvm, VmFd};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use vcpu::{RunState, Vcpu, VcpuContext};
use vm_memory::{GuestAddress, GuestMemoryMmap};

/// A built VM: everything that must live as long as it runs.
pub struct Machine {
    /// The VM's vCPUs, configured and not yet running.
    pub vcpus: Vec<Vcpu>,
    /// The serial console.
    pub serial: Arc<Mutex<devices::serial::SerialDevice>>,
    /// Signalled by the guest's reset request.
    pub reset_evt: vmm_sys_util::eventfd::EventFd,
    /// Signalled by the guest's power-off request.
    pub poweroff_evt: vmm_sys_util::eventfd::EventFd,
    /// virtio devices, for the event loop.
    pub virtio: Vec<crate::virtio_devices::VirtioSlot>,
    /// Tells vCPUs to park or leave their loops.
    pub state: Arc<RunState>,
    /// The ACPI power-management registers (power button).
    pub acpi_pm: Arc<Mutex<devices::acpi_pm::AcpiPmDevice>>,
    /// Guest RAM (kept alive while the VM fd exists).
    pub memory: GuestMemoryMmap,
    /// The VM fd.
    pub vm_fd: VmFd,
}

/// Opens the KVM device at `path`.
pub fn open_kvm(path: &Path) -> Result<Kvm, VmmError> {
    let io_err = |e: kvm_ioctls::Error| std::io::Error::from_raw_os_error(e.errno());
    let cpath = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| VmmError::KvmOpen(path.into(), std::io::ErrorKind::InvalidInput.into()))?;
    let kvm = Kvm::new_with_path(&cpath).map_err(|e| VmmError::KvmOpen(path.into(), io_err(e)))?;
    if kvm.get_api_version() != kvm_bindings::KVM_API_VERSION as i32 {
        return Err(VmmError::KvmOpen(
            path.into(),
            std::io::Error::other("not a KVM device (unexpected API version)"),
        ));
    }
    Ok(kvm)
}

fn check_vcpus(kvm: &Kvm, requested: usize) -> Result<u8, VmmError> {
    let max = kvm.get_max_vcpus().min(arch::layout::MAX_VCPUS);
    match requested {
        0 => Err(VmmError::NoVcpus),
        n if n > max => Err(VmmError::TooManyVcpus(n, max)),
        n => Ok(n as u8),
    }
}

/// Builds the VM described by `config`, recording milestones on `timeline`.
pub fn build(mut config: VmConfig, timeline: &Timeline) -> Result<Machine, VmmError> {
    let kvm = open_kvm(&config.kvm_path)?;
    let vcpu_count = check_vcpus(&kvm, config.vcpus)?;
    let vm_fd = kvm.create_vm().map_err(VmmError::CreateVm)?;
    timeline.record(BootEvent::VmCreated);

    // Memory slots go in before the in-kernel irqchip: with the irqchip present every
    // slot update waits for an expedited SRCU grace period (measured 4-6 ms per slot
    // on nested hosts, 0.2 ms without).
    let memory = create_guest_memory(&vm_fd, config.mem_size)?;
    timeline.record(BootEvent::MemoryMapped);
    arch::setup_vm(&vm_fd)?;

    let output = std::mem::replace(
        &mut config.console_output,
        crate::config::ConsoleOutput::Null,
    );
    let console = console_writer(output, timeline.clone())?;
    let LegacyDevices {
        io_bus,
        mut mmio_bus,
        serial,
        reset_evt,
        poweroff_evt,
        acpi_pm,
    } = legacy::attach(&vm_fd, console, timeline)?;

    let mut virtio = Vec::new();
    let mut device_args = Vec::new();
    for device in virtio_device_models(&config)? {
        let index = virtio.len();
        let (slot, arg) = virtio_devices::attach(&vm_fd, &mut mmio_bus, &memory, index, device)?;
        virtio.push(slot);
        device_args.push(arg);
    }

    let entry = load_boot_payload(&config, &memory, usize::from(vcpu_count), &device_args)?;
    timeline.record(BootEvent::KernelLoaded);

    let base_cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(VmmError::SupportedCpuid)?;
    let state = Arc::new(RunState::new());
    let ctx = VcpuContext {
        io_bus,
        mmio_bus,
        memory: memory.clone(),
        state: state.clone(),
    };
    let mut vcpus = Vec::with_capacity(usize::from(vcpu_count));
    for id in 0..vcpu_count {
        let fd = vm_fd
            .create_vcpu(u64::from(id))
            .map_err(|e| VmmError::CreateVcpu(id, e))?;
        let setup = VcpuSetup {
            id,
            count: vcpu_count,
            base_cpuid: &base_cpuid,
            entry,
        };
        arch::configure_vcpu(&fd, &memory, &setup)?;
        vcpus.push(Vcpu::new(id, fd, ctx.clone()));
    }
    Ok(Machine {
        vcpus,
        serial,
        reset_evt,
        poweroff_evt,
        virtio,
        state,
        acpi_pm,
        memory,
        vm_fd,
    })
}

/// The virtio devices `config` asks for, in slot order: disks, then network
/// interfaces. Host resources (images, taps) are opened here, before anything runs.
fn virtio_device_models(config: &VmConfig) -> Result<Vec<Box<dyn VirtioDevice>>, VmmError> {
    let count = config.disks.len() + config.nets.len();
    if count > virtio_devices::MAX_DEVICES {
        return Err(VmmError::TooManyDevices(virtio_devices::MAX_DEVICES));
    }
    let mut models: Vec<Box<dyn VirtioDevice>> = Vec::with_capacity(count);
    for disk in &config.disks {
        let image = Disk::open(&disk.path, disk.read_only, disk.id.as_deref())?;
        models.push(Box::new(Block::new(image)));
    }
    for net in &config.nets {
        let tap = Tap::open(&net.tap, net.create)?;
        let mac = net.mac.unwrap_or_else(|| default_mac(&net.tap));
        models.push(Box::new(Net::new(&net.tap, Box::new(tap), mac)));
    }
    Ok(models)
}

/// Loads kernel, initrd and command line and writes the boot structures; returns the
/// kernel's entry point.
fn load_boot_payload(
    config: &VmConfig,
    memory: &GuestMemoryMmap,
    vcpus: usize,
    device_args: &[String],
) -> Result<GuestAddress, VmmError> {
    let low_end = arch::low_memory_end(memory);
    let kernel = boot::load_kernel(memory, &config.kernel, low_end)?;
    let initrd_top = kernel
        .setup_header
        .map(|h| u64::from(h.initrd_addr_max) + 1)
        .filter(|max| *max > 1)
        .unwrap_or(u64::from(u32::MAX))
        .min(low_end);
    let initrd = match &config.initrd {
        Some(path) => {
            let (addr, size) = boot::initrd::load_initrd(memory, path, kernel.end, initrd_top)?;
            Some(InitrdRange { addr, size })
        }
        None => None,
    };
    let mut cmdline = boot::cmdline::build_cmdline(
        config.default_cmdline,
        config.cmdline_preset,
        config.cmdline.as_deref(),
        CMDLINE_MAX_SIZE,
    )?;
    for arg in device_args {
        boot::cmdline::append(&mut cmdline, arg, CMDLINE_MAX_SIZE)?;
    }
    let cmdline_len = cmdline
        .as_cstring()
        .map(|c| c.as_bytes().len())
        .map_err(|e| boot::BootError::Cmdline(e.to_string()))?;
    linux_loader::loader::load_cmdline(memory, GuestAddress(CMDLINE_START), &cmdline)
        .map_err(|_| boot::BootError::CmdlineWrite)?;
    log::debug!("kernel command line: {:?}", cmdline.as_cstring());
    let info = BootInfo {
        header: kernel.setup_header,
        cmdline_addr: GuestAddress(CMDLINE_START),
        cmdline_len,
        initrd,
        acpi_rsdp: None,
    };
    arch::configure_system(memory, vcpus, info)?;
    Ok(kernel.entry)
}
