//! x86_64: in-kernel PIC/IOAPIC/PIT before the vCPUs, the legacy devices on port I/O,
//! virtio-mmio devices on the kernel command line, zero page + MP table + ACPI, and
//! 64-bit long-mode entry.

use super::{MmioDeviceInfo, PlatformDevices};
use crate::config::VmConfig;
use crate::error::VmmError;
use crate::timeline::Timeline;
use arch::layout::{CMDLINE_MAX_SIZE, CMDLINE_START};
use arch::{BootInfo, InitrdRange, VcpuSetup};
use boot::cmdline::Preset;
use devices::serial::ConsoleWriter;
use kvm_bindings::KVM_MAX_CPUID_ENTRIES;
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::{GuestAddress, GuestMemoryMmap};

/// What the VM needs kept alive besides its fds (nothing on x86_64).
pub(crate) struct ArchState;

/// Where the boot vCPU starts.
pub(crate) struct BootEntry {
    entry: GuestAddress,
}

/// Whether this host's KVM emulates guest kernel code: no `vmx`/`svm` among the
/// CPU flags in /proc/cpuinfo (`None` when that cannot be read).
pub(crate) fn host_emulates_guest_code() -> Option<bool> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    crate::host::cpuinfo_has_hardware_virtualization(&cpuinfo).map(|hw| !hw)
}

/// What to add to the error of a vCPU that KVM could not emulate, when the guest
/// booted without the `emulated-kvm` preset and the instruction is one it avoids.
pub(crate) fn emulation_failure_hint(reason: &vcpu::VcpuExitReason) -> Option<String> {
    let vcpu::VcpuExitReason::InternalError(info) = reason else {
        return None;
    };
    let name = vcpu::x86_insn::avoided_by_emulated_kvm_preset(&info.instruction)?;
    (info.suberror == 1).then(|| {
        format!(
            "this host's KVM cannot emulate {name}: boot with --cmdline-preset emulated-kvm, \
             which keeps the guest kernel off such instructions"
        )
    })
}

/// TSS, in-kernel irqchip and PIT: KVM needs the irqchip before any vCPU exists.
pub(crate) fn before_vcpus(vm: &VmFd) -> Result<(), VmmError> {
    Ok(arch::setup_vm(vm)?)
}

/// Creates `count` vCPU fds.
pub(crate) fn create_vcpus(vm: &VmFd, count: u8) -> Result<(Vec<VcpuFd>, ArchState), VmmError> {
    let fds = (0..count)
        .map(|id| {
            vm.create_vcpu(u64::from(id))
                .map_err(|e| VmmError::CreateVcpu(id, e))
        })
        .collect::<Result<_, _>>()?;
    Ok((fds, ArchState))
}

/// Serial on COM1, i8042, ACPI PM registers, boot timer.
pub(crate) fn attach_devices(
    vm: &VmFd,
    console: ConsoleWriter,
    timeline: &Timeline,
) -> Result<PlatformDevices, VmmError> {
    super::x86_64_devices::attach(vm, console, timeline)
}

/// Loads kernel, initrd and command line (with a `virtio_mmio.device=` entry per
/// device) and writes the zero page, MP table and ACPI tables.
pub(crate) fn load_payload(
    config: &VmConfig,
    preset: Option<Preset>,
    memory: &GuestMemoryMmap,
    vcpus: u8,
    devices: &[MmioDeviceInfo],
    _state: &ArchState,
) -> Result<BootEntry, VmmError> {
    let low_end = arch::low_memory_end(memory);
    let kernel = boot::load_kernel(memory, &config.spec.kernel, low_end)?;
    let initrd_top = kernel
        .setup_header
        .map(|h| u64::from(h.initrd_addr_max) + 1)
        .filter(|max| *max > 1)
        .unwrap_or(u64::from(u32::MAX))
        .min(low_end);
    let initrd = match &config.spec.initrd {
        Some(path) => {
            let (addr, size) = boot::initrd::load_initrd(memory, path, kernel.end, initrd_top)?;
            Some(InitrdRange { addr, size })
        }
        None => None,
    };
    let mut cmdline = boot::cmdline::build_cmdline(
        config.spec.default_cmdline,
        preset,
        config.spec.cmdline.as_deref(),
        CMDLINE_MAX_SIZE,
    )?;
    for d in devices {
        let arg = format!(
            "virtio_mmio.device={}K@{:#x}:{}",
            d.size >> 10,
            d.base,
            d.irq
        );
        boot::cmdline::append(&mut cmdline, &arg, CMDLINE_MAX_SIZE)?;
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
    arch::configure_system(memory, usize::from(vcpus), info)?;
    Ok(BootEntry {
        entry: kernel.entry,
    })
}

/// CPUID (per vCPU), MSRs, registers, long mode, FPU and LAPIC of every vCPU.
pub(crate) fn configure_vcpus(
    kvm: &Kvm,
    vcpus: &[VcpuFd],
    memory: &GuestMemoryMmap,
    boot: &BootEntry,
) -> Result<(), VmmError> {
    let base_cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(VmmError::SupportedCpuid)?;
    let count = vcpus.len() as u8;
    for (id, fd) in vcpus.iter().enumerate() {
        let setup = VcpuSetup {
            id: id as u8,
            count,
            base_cpuid: &base_cpuid,
            entry: boot.entry,
        };
        arch::configure_vcpu(fd, memory, &setup)?;
    }
    Ok(())
}
