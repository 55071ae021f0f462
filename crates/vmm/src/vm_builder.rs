//! [`VmBuilder`]: the embedding API's way to describe a VM and start it.

use crate::config::{
    ConsoleInput, ConsoleOutput, DiskConfig, FsConfig, NetConfig, VmConfig, VsockConfig,
};
use crate::console_stream::console_stream;
use crate::error::VmmError;
use crate::handle::VmHandle;
use crate::prepare::PreparedVm;
use boot::cmdline::PresetChoice;
use std::path::PathBuf;
use std::time::Instant;

/// Describes a VM step by step, then starts it.
///
/// ```
/// use vmm::{DiskConfig, VmBuilder};
/// let builder = VmBuilder::new("vmlinux")
///     .initrd("initramfs.cpio")
///     .cmdline("quiet")
///     .memory_mib(512)
///     .vcpus(2)
///     .disk(DiskConfig::new("rootfs.ext4"))
///     .console_stream();
/// assert_eq!(builder.config().spec.mem_size, 512 << 20);
/// assert_eq!(builder.config().spec.disks.len(), 1);
/// // builder.start()? boots it (that needs /dev/kvm and the files).
/// ```
pub struct VmBuilder {
    config: VmConfig,
    stream: bool,
    restore: Option<crate::snapshot::Restore>,
}

impl VmBuilder {
    /// A VM that boots `kernel` (ELF vmlinux or bzImage) with minivmm's defaults:
    /// 128 MiB, one vCPU, the default command line, console on stdout.
    pub fn new(kernel: impl Into<PathBuf>) -> Self {
        Self::from_config(VmConfig::new(kernel))
    }

    /// Starts from a complete configuration.
    pub fn from_config(config: VmConfig) -> Self {
        Self {
            config,
            stream: false,
            restore: None,
        }
    }

    /// A VM that continues the snapshot in `dir` (see [`crate::VmHandle::snapshot`]):
    /// its description comes from the snapshot, its guest memory is mapped from the
    /// snapshot's memory file (private: nothing is copied, pages load on first touch,
    /// and VMs restored from one snapshot share the host's page cache). A snapshot
    /// from another minivmm version or architecture, or a damaged one, is refused
    /// here. Runtime settings (console, seccomp, time origin) are the builder's, and
    /// so are the backends: each VM restored from one snapshot needs its own vsock
    /// socket ([`VmBuilder::vsock`] with the snapshot's CID) and, for a disk the
    /// guest writes, its own image ([`VmBuilder::disks`]: a second VM on the same
    /// read-write image is refused, the image being locked), and may take its own
    /// taps ([`VmBuilder::nets`]).
    pub fn restore(dir: impl AsRef<std::path::Path>) -> Result<Self, VmmError> {
        let restore = crate::snapshot::open(dir.as_ref())?;
        let mut spec = restore.state.spec.clone();
        // This host's KVM device, not the one of the host that took the snapshot.
        spec.kvm_path = crate::config::DEFAULT_KVM_PATH.into();
        let mut builder = Self::from_config(VmConfig::from_spec(spec));
        builder.restore = Some(restore);
        Ok(builder)
    }

    /// The configuration so far.
    pub fn config(&self) -> &VmConfig {
        &self.config
    }

    /// Initial ramdisk.
    pub fn initrd(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.spec.initrd = Some(path.into());
        self
    }

    /// Arguments appended to the kernel command line (several calls add up).
    pub fn cmdline(mut self, args: &str) -> Self {
        self.config.spec.cmdline = Some(match self.config.spec.cmdline.take() {
            Some(old) => format!("{old} {args}"),
            None => args.to_string(),
        });
        self
    }

    /// Leaves out minivmm's default command line (`console=ttyS0 reboot=k ...`).
    pub fn no_default_cmdline(mut self) -> Self {
        self.config.spec.default_cmdline = false;
        self
    }

    /// Which host-specific set of kernel arguments to add: a [`Preset`](crate::Preset), or a
    /// [`PresetChoice`] (`Auto`, the default, decides from the host; `Off` adds none).
    pub fn cmdline_preset(mut self, preset: impl Into<PresetChoice>) -> Self {
        self.config.spec.cmdline_preset = preset.into();
        self
    }

    /// Guest memory in bytes.
    pub fn memory(mut self, bytes: u64) -> Self {
        self.config.spec.mem_size = bytes;
        self
    }

    /// Guest memory in MiB.
    pub fn memory_mib(self, mib: u64) -> Self {
        self.memory(mib.saturating_mul(1 << 20))
    }

    /// Backs guest memory with the host's reserved huge pages (see
    /// [`VmConfig::mem_hugepages`]).
    pub fn hugepages(mut self, on: bool) -> Self {
        self.config.spec.mem_hugepages = on;
        self
    }

    /// Leaves the host kernel's destruction of the VM to a helper process (see
    /// [`VmConfig::async_teardown`]): the VM's end, and `wait()`, do not wait for it.
    pub fn async_teardown(mut self, on: bool) -> Self {
        self.config.spec.async_teardown = on;
        self
    }

    /// Number of vCPUs.
    pub fn vcpus(mut self, count: usize) -> Self {
        self.config.spec.vcpus = count;
        self
    }

    /// Adds a virtio-blk disk (vda, vdb, ... in order).
    pub fn disk(mut self, disk: DiskConfig) -> Self {
        self.config.spec.disks.push(disk);
        self
    }

    /// Replaces the disk list (for a restored VM: its own images, one per disk of the
    /// snapshot, in order, read-only where the snapshot's were).
    pub fn disks(mut self, disks: Vec<DiskConfig>) -> Self {
        self.config.spec.disks = disks;
        self
    }

    /// Replaces the network interface list (for a restored VM: its own taps, one per
    /// interface of the snapshot, in order; the guest keeps its MAC addresses).
    pub fn nets(mut self, nets: Vec<NetConfig>) -> Self {
        self.config.spec.nets = nets;
        self
    }

    /// Shares a host directory over virtio-fs (one device per share; the guest mounts
    /// it by its tag). A VM with a share cannot be snapshotted.
    pub fn share(mut self, share: FsConfig) -> Self {
        self.config.spec.shares.push(share);
        self
    }

    /// Adds a virtio-vsock device (one per VM; a second call replaces the first).
    pub fn vsock(mut self, vsock: VsockConfig) -> Self {
        self.config.spec.vsock = Some(vsock);
        self
    }

    /// Gives the guest a virtio-rng device (on by default).
    pub fn rng(mut self, on: bool) -> Self {
        self.config.spec.rng = on;
        self
    }

    /// Adds a virtio-net interface on a tap (eth0, eth1, ... in order).
    pub fn net(mut self, net: NetConfig) -> Self {
        self.config.spec.nets.push(net);
        self
    }

    /// Where console output goes (stdout, a file, a writer, nowhere).
    pub fn console(mut self, output: ConsoleOutput) -> Self {
        self.config.console_output = output;
        self.stream = false;
        self
    }

    /// Console output as a stream: [`VmHandle::take_console`] returns it.
    pub fn console_stream(mut self) -> Self {
        self.stream = true;
        self
    }

    /// Where console input comes from (none by default).
    pub fn console_input(mut self, input: ConsoleInput) -> Self {
        self.config.console_input = input;
        self
    }

    /// Path of the KVM device (default `/dev/kvm`).
    pub fn kvm_device(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.spec.kvm_path = path.into();
        self
    }

    /// Seccomp filters for the VM's vCPU and event-loop threads (the built-in lists
    /// unless told otherwise). The embedding program's own threads are never filtered.
    pub fn seccomp(mut self, policy: crate::SeccompPolicy) -> Self {
        self.config.seccomp = policy;
        self
    }

    /// Time zero of the boot timeline (default: when the builder was made).
    pub fn time_origin(mut self, origin: Instant) -> Self {
        self.config.time_origin = origin;
        self
    }

    /// Builds and starts the VM; errors in the configuration, the files or the host
    /// come back before anything runs.
    pub fn start(self) -> Result<VmHandle, VmmError> {
        Ok(self.prepare()?.release())
    }

    /// Builds the VM and spawns its threads, its vCPUs parked before the guest's first
    /// instruction; [`PreparedVm::release`] runs it. Errors come back as from `start()`.
    pub fn prepare(mut self) -> Result<PreparedVm, VmmError> {
        let console = if self.stream {
            let (sink, stream) = console_stream();
            self.config.console_output = ConsoleOutput::Writer(Box::new(sink));
            Some(stream)
        } else {
            None
        };
        if let Some(r) = &self.restore {
            crate::snapshot::check_backends(&r.state.spec, &mut self.config.spec)?;
        }
        crate::prepare::prepare(self.config, console, self.restore.as_ref())
    }
}

impl From<VmConfig> for VmBuilder {
    fn from(config: VmConfig) -> Self {
        Self::from_config(config)
    }
}
