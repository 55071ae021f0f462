//! Builds a VM from a [`VmConfig`]: KVM, guest memory, devices, kernel and boot
//! structures, and configured vCPUs, ready to run.

use crate::config::VmConfig;
use crate::console::console_writer;
use crate::error::VmmError;
use crate::memory::{create_guest_memory_from, MemorySource};
use crate::platform::{self, PlatformDevices};
use crate::timeline::{BootEvent, Timeline};
use crate::validate::{check_config, check_vcpu_count};
use crate::virtio_devices;
use boot::cmdline::{Preset, PresetChoice};
use devices::virtio::block::{disk::Disk, Block};
use devices::virtio::net::{default_mac, tap::Tap, Net};
use devices::virtio::rng::Rng;
use devices::virtio::vsock::{muxer::DEFAULT_MAX_CONNECTIONS, Vsock};
use devices::virtio::VirtioDevice;
use kvm_ioctls::{Kvm, VmFd};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use vcpu::{RunState, Vcpu, VcpuContext};
use virtiofs::{Fs, Limits};
use vm_memory::GuestMemoryMmap;

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
    /// Signalled when the guest kernel reports a panic.
    pub panic_evt: vmm_sys_util::eventfd::EventFd,
    /// virtio devices, for the event loop.
    pub virtio: Vec<crate::virtio_devices::VirtioSlot>,
    /// Tells vCPUs to park or leave their loops.
    pub state: Arc<RunState>,
    /// The ACPI power-management registers (power button), where the platform has them.
    pub acpi_pm: Option<Arc<Mutex<devices::acpi_pm::AcpiPmDevice>>>,
    /// Devices the event loop polls.
    pub polled: Vec<Arc<Mutex<dyn devices::Polled>>>,
    /// The platform devices a snapshot saves.
    pub(crate) legacy: platform::LegacyHandles,
    /// The MSRs a snapshot saves, or why this host cannot take snapshots.
    pub snapshot_msrs: Result<Vec<u32>, String>,
    /// The description the VM was built from (a snapshot records it).
    pub spec: crate::spec::VmSpec,
    /// Architecture state that must live as long as the VM (the aarch64 GIC).
    pub _arch: platform::ArchState,
    /// Guest RAM (kept alive while the VM fd exists).
    pub memory: GuestMemoryMmap,
    /// The VM fd.
    pub vm_fd: VmFd,
    /// The helper holding a duplicate of the VM fd, with async teardown.
    pub teardown: Option<crate::teardown::TeardownHelper>,
    /// The command-line preset the guest booted with.
    pub preset: Option<Preset>,
    /// Where the VM's metrics come from.
    pub(crate) metrics: crate::metrics::MetricsSource,
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
    check_vcpu_count(requested, kvm.get_max_vcpus().min(arch::layout::MAX_VCPUS))
}

/// How a built machine's guest starts.
pub(crate) enum Start<'a> {
    /// Boot the kernel the configuration names.
    Boot,
    /// Continue from a snapshot: its state, and its memory file (mapped, not read).
    Restore {
        /// The snapshot's state file, parsed and checked.
        state: &'a crate::snapshot::SnapshotState,
        /// Its memory file.
        memory: &'a std::fs::File,
    },
}

/// Builds the VM described by `config`, its guest booted or restored per `start`,
/// recording milestones on `timeline`.
pub(crate) fn build_machine(
    mut config: VmConfig,
    timeline: &Timeline,
    start: Start,
) -> Result<Machine, VmmError> {
    // Everything that needs no KVM first: bad input gets the same answer on any host.
    let preset = crate::host::resolve_preset(config.spec.cmdline_preset);
    check_config(&config, preset, matches!(start, Start::Boot))?;
    // Host resources next (disk images, taps): a bad path or a missing tap is named
    // the same way with or without KVM; they are released if anything below fails.
    let models = virtio_device_models(&config)?;
    timeline.record(BootEvent::ConfigChecked);
    let kvm = open_kvm(&config.spec.kvm_path)?;
    let vcpu_count = check_vcpus(&kvm, config.spec.vcpus)?;
    let vm_fd = kvm.create_vm().map_err(VmmError::CreateVm)?;
    timeline.record(BootEvent::VmCreated);

    // Memory slots go in before the in-kernel irqchip: with the irqchip present every
    // slot update waits for an expedited SRCU grace period (measured 4-6 ms per slot
    // on nested hosts, 0.2 ms without).
    let source = match &start {
        Start::Boot => MemorySource::Anonymous {
            huge: config.spec.mem_hugepages,
        },
        Start::Restore { state, memory } => MemorySource::File {
            file: memory,
            regions: &state.memory,
        },
    };
    let memory = create_guest_memory_from(&vm_fd, config.spec.mem_size, source)?;
    timeline.record(BootEvent::MemoryMapped);
    let teardown = config
        .spec
        .async_teardown
        .then(|| crate::teardown::spawn(&vm_fd, &memory))
        .transpose()?;
    platform::before_vcpus(&vm_fd)?;
    let (vcpu_fds, arch_state) = platform::create_vcpus(&vm_fd, vcpu_count)?;

    let output = std::mem::replace(
        &mut config.console_output,
        crate::config::ConsoleOutput::Null,
    );
    let console = console_writer(output, timeline.clone())?;
    let PlatformDevices {
        io_bus,
        mut mmio_bus,
        serial,
        reset_evt,
        poweroff_evt,
        panic_evt,
        acpi_pm,
        polled,
        legacy,
    } = platform::attach_devices(&vm_fd, console, timeline)?;

    let mut virtio = Vec::new();
    let mut infos = Vec::new();
    let mut metrics = crate::metrics::MetricsSource::new(&memory);
    for device in models {
        metrics.add_device(device.as_ref());
        let index = virtio.len();
        let (slot, info) = virtio_devices::attach(&vm_fd, &mut mmio_bus, &memory, index, device)?;
        virtio.push(slot);
        infos.push(info);
    }

    timeline.record(BootEvent::DevicesAttached);
    match start {
        Start::Boot => {
            let boot =
                platform::load_payload(&config, preset, &memory, vcpu_count, &infos, &arch_state)?;
            timeline.record(BootEvent::KernelLoaded);
            platform::configure_vcpus(&kvm, &vcpu_fds, &memory, &boot)?;
            legacy
                .first_generation(&memory)
                .map_err(VmmError::VmGenId)?;
        }
        Start::Restore { state, .. } => {
            // This host must hold the saved XSAVE area (no AMX) and offer the features.
            vcpu::snapshot::snapshot_support(&kvm)
                .map_err(|e| VmmError::Snapshot(e.to_string()))?;
            let probe = vcpu_fds
                .first()
                .ok_or(VmmError::Snapshot("no vCPU".into()))?;
            vcpu::snapshot::check_host_features(&kvm, probe, &state.vcpus)
                .map_err(|e| VmmError::Snapshot(e.to_string()))?;
            crate::snapshot::apply(state, &vm_fd, &vcpu_fds, &legacy, &virtio, &memory)?;
        }
    }
    timeline.record(BootEvent::VcpusConfigured);

    let state = Arc::new(RunState::new());
    let ctx = VcpuContext {
        io_bus,
        mmio_bus,
        memory: memory.clone(),
        state: state.clone(),
    };
    if config.spec.cmdline_preset == PresetChoice::Auto {
        if let Some(p) = preset {
            log::info!(
                "this host's KVM emulates guest kernel code (no vmx/svm CPU flag): added the \
                 {p} kernel command-line preset (--cmdline-preset none leaves it out)"
            );
        }
    }
    let vcpus: Vec<Vcpu> = vcpu_fds
        .into_iter()
        .enumerate()
        .map(|(id, fd)| Vcpu::new(id as u8, fd, ctx.clone()))
        .collect();
    for v in &vcpus {
        metrics.add_vcpu(v.counters());
    }
    Ok(Machine {
        vcpus,
        serial,
        reset_evt,
        poweroff_evt,
        panic_evt,
        virtio,
        state,
        acpi_pm,
        polled,
        legacy,
        snapshot_msrs: vcpu::snapshot::snapshot_support(&kvm).map_err(|e| e.to_string()),
        spec: config.spec.clone(),
        _arch: arch_state,
        memory,
        vm_fd,
        teardown,
        preset,
        metrics,
    })
}

/// How many virtio devices `config` asks for.
pub(crate) fn virtio_device_count(config: &VmConfig) -> usize {
    config.spec.disks.len()
        + config.spec.nets.len()
        + usize::from(config.spec.vsock.is_some())
        + usize::from(config.spec.rng)
        + config.spec.shares.len()
}

/// The virtio devices `config` asks for, in slot order: disks, network interfaces,
/// vsock, rng, shares. Host resources (images, taps, the vsock socket) are opened here, before
/// anything runs (their number was checked with the rest of the input, in `validate`).
fn virtio_device_models(config: &VmConfig) -> Result<Vec<Box<dyn VirtioDevice>>, VmmError> {
    let mut models: Vec<Box<dyn VirtioDevice>> = Vec::with_capacity(virtio_device_count(config));
    for disk in &config.spec.disks {
        let image = Disk::open(&disk.path, disk.read_only, disk.id.as_deref())?;
        models.push(Box::new(Block::new(image)));
    }
    for net in &config.spec.nets {
        let tap = Tap::open(&net.tap, net.create)?;
        let mac = net.mac.unwrap_or_else(|| default_mac(&net.tap));
        models.push(Box::new(Net::new(&net.tap, Box::new(tap), mac)));
    }
    if let Some(v) = &config.spec.vsock {
        models.push(Box::new(Vsock::new(
            v.cid,
            &v.socket,
            DEFAULT_MAX_CONNECTIONS,
        )?));
    }
    if config.spec.rng {
        models.push(Box::new(Rng::new()));
    }
    if !config.spec.shares.is_empty() {
        crate::host::raise_fd_limit(config.spec.shares.len() * Limits::default().descriptors());
    }
    for share in &config.spec.shares {
        let fs = Fs::new(&share.tag, &share.path, share.read_only, Limits::default())
            .map_err(VmmError::Share)?;
        models.push(Box::new(fs));
    }
    Ok(models)
}
