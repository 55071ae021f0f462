//! Command-line options, merged with an optional JSON config file (flags win), and
//! their translation into the library's `VmConfig`.

use crate::config_file::FileConfig;
use clap::Parser;
use std::path::{Path, PathBuf};
use std::time::Instant;
use vmm::{
    ConsoleInput, ConsoleOutput, DiskConfig, FsConfig, NetConfig, PresetChoice, SeccompPolicy,
    VmBuilder, VmConfig, VsockConfig,
};

/// Boot a Linux guest in a KVM microVM.
#[derive(Debug, Parser)]
#[command(
    name = "minivmm",
    version,
    about,
    after_help = "In a running VM with a vsock device and the guest agent:\n  minivmm exec --vsock-socket PATH [-i] [-t] [--env K=V] [--cwd DIR] -- CMD ARGS...\n  minivmm cp --vsock-socket PATH SRC DST     (guest paths as guest:/PATH)"
)]
pub struct Cli {
    /// Read options from a JSON file (fields named like these options); flags given
    /// here override the file's values.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print the effective configuration as JSON (usable with --config) and exit.
    #[arg(long)]
    pub print_config: bool,

    /// Continue the VM snapshotted into DIR (its description comes from the
    /// snapshot; console, log and seccomp options still apply, and --vsock, --disk
    /// and --net give this VM its own socket, images and taps in place of the
    /// snapshot's: as many, in order, as the guest has).
    #[arg(long, value_name = "DIR", conflicts_with_all = [
        "config", "print_config", "kernel", "initrd", "cmdline", "no_default_cmdline",
        "cmdline_preset", "mem", "mem_hugepages", "cpus", "rng", "async_teardown",
    ])]
    pub restore: Option<PathBuf>,

    /// Guest kernel: an uncompressed ELF vmlinux or a bzImage (detected from the file).
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<PathBuf>,

    /// Initial ramdisk (cpio archive, compressed or not).
    #[arg(long, value_name = "FILE")]
    pub initrd: Option<PathBuf>,

    /// Text appended to the default kernel command line
    /// ("console=ttyS0 reboot=k panic=1 pci=off nomodules i8042.*").
    #[arg(long, value_name = "ARGS")]
    pub cmdline: Option<String>,

    /// Use only --cmdline (and any preset), without minivmm's default arguments.
    #[arg(long)]
    pub no_default_cmdline: bool,

    /// Host-specific kernel arguments: "auto" (default) adds what this host needs,
    /// "emulated-kvm" those for nested KVM hosts without hardware virtualization (which
    /// emulate guest kernel code), "none" nothing.
    #[arg(long, value_name = "NAME", value_parser = parse_preset)]
    pub cmdline_preset: Option<PresetChoice>,

    /// Guest memory: 512M, 1G, 256MiB, or a plain number of MiB [default: 128M].
    #[arg(long, value_name = "SIZE", value_parser = parse_mem)]
    pub mem: Option<u64>,

    /// Back guest memory with the host's reserved huge pages (see
    /// /proc/sys/vm/nr_hugepages); the size must be a multiple of the huge page size.
    #[arg(long)]
    pub mem_hugepages: bool,

    /// Number of vCPUs [default: 1].
    #[arg(long, value_name = "N")]
    pub cpus: Option<usize>,

    /// Attach a virtio-blk disk: path=FILE[,readonly=on][,id=SERIAL]. Repeatable; the
    /// guest sees them in order as vda, vdb, ...
    #[arg(long = "disk", value_name = "SPEC")]
    pub disks: Vec<DiskConfig>,

    /// Attach a virtio-net interface on a host tap: tap=NAME[,mac=02:..][,create=on].
    /// Repeatable (eth0, eth1, ...). The tap must exist unless create=on (which needs
    /// CAP_NET_ADMIN; the tap is then removed on exit).
    #[arg(long = "net", value_name = "SPEC")]
    pub nets: Vec<NetConfig>,

    /// Attach a virtio-vsock device: socket=PATH[,cid=N] (guest CID 3 by default).
    /// Host programs connect to PATH and send "CONNECT <port>\n"; guest connections
    /// to port P go to the listener at PATH_P (Firecracker's convention).
    #[arg(long, value_name = "SPEC")]
    pub vsock: Option<VsockConfig>,

    /// Share a host directory over virtio-fs: tag=NAME,path=DIR[,readonly=on].
    /// Repeatable; the guest mounts it with `mount -t virtiofs NAME /mnt`. A VM with a
    /// share cannot be snapshotted.
    #[arg(long = "fs", value_name = "SPEC")]
    pub shares: Vec<FsConfig>,

    /// A virtio-rng device giving the guest entropy from the host: on or off
    /// [default: on].
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    pub rng: Option<bool>,

    /// Write guest console output to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub console_log: Option<PathBuf>,

    /// Serve the control API (HTTP/1.1 and JSON: status, pause, resume, snapshot,
    /// shutdown, metrics; docs/api/openapi.json) on a Unix socket created at PATH,
    /// mode 0600. The path must not exist; it is removed on exit.
    #[arg(long, value_name = "PATH")]
    pub api_socket: Option<PathBuf>,

    /// Print the boot timeline (milliseconds since minivmm started) to stderr on exit.
    #[arg(long)]
    pub boot_timeline: bool,

    /// Log level: off, error, warn, info, debug, trace [default: warn].
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<log::LevelFilter>,

    /// Path of the KVM device [default: /dev/kvm].
    #[arg(long, value_name = "PATH")]
    pub kvm_device: Option<PathBuf>,

    /// Seccomp filters on minivmm's threads: on (built-in allow-lists) or off (for
    /// debugging only) [default: on].
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    pub seccomp: Option<bool>,

    /// Leave the host kernel's destruction of the VM to a helper process, so that
    /// minivmm exits as soon as the guest has: on or off [default: off]. The helper
    /// belongs to init once minivmm exits; an init that does not reap orphans keeps
    /// one zombie per VM.
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    pub async_teardown: Option<bool>,

    /// Replace the built-in allow-list of some threads with filters from a
    /// seccompiler JSON file, keyed "vcpu", "events", "io" or "main".
    #[arg(long, value_name = "FILE")]
    pub seccomp_filter: Option<PathBuf>,
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("'{s}': use on or off")),
    }
}

fn parse_mem(s: &str) -> Result<u64, String> {
    vmm::parse_mem_size(s).map_err(|e| e.to_string())
}

fn parse_preset(s: &str) -> Result<PresetChoice, String> {
    s.parse()
}

/// What to run: the merged options, checked.
pub struct Effective {
    /// Everything, as a config file would say it.
    pub file: FileConfig,
    /// The log level.
    pub log_level: log::LevelFilter,
    /// Print the boot timeline on exit.
    pub boot_timeline: bool,
}

impl Cli {
    /// The config file (if any) with this command line's flags laid over it.
    pub fn merged(&self) -> Result<FileConfig, String> {
        let mut f = match &self.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let spec = &mut f.spec;
        if let Some(k) = &self.kernel {
            spec.kernel.clone_from(k);
        }
        if self.initrd.is_some() {
            spec.initrd.clone_from(&self.initrd);
        }
        if let Some(k) = &self.kvm_device {
            spec.kvm_path.clone_from(k);
        }
        if let Some(on) = self.async_teardown {
            spec.async_teardown = on;
        }
        if self.cmdline.is_some() {
            spec.cmdline.clone_from(&self.cmdline);
        }
        if self.no_default_cmdline {
            spec.default_cmdline = false;
        }
        if let Some(p) = self.cmdline_preset {
            spec.cmdline_preset = p;
        }
        if let Some(m) = self.mem {
            spec.mem_size = m;
        }
        if self.mem_hugepages {
            spec.mem_hugepages = true;
        }
        if let Some(n) = self.cpus {
            spec.vcpus = n;
        }
        if !self.disks.is_empty() {
            spec.disks.clone_from(&self.disks);
        }
        if !self.nets.is_empty() {
            spec.nets.clone_from(&self.nets);
        }
        if self.vsock.is_some() {
            spec.vsock.clone_from(&self.vsock);
        }
        if !self.shares.is_empty() {
            spec.shares.clone_from(&self.shares);
        }
        if let Some(on) = self.rng {
            spec.rng = on;
        }
        let front = &mut f.front;
        if self.console_log.is_some() {
            front.console_log.clone_from(&self.console_log);
        }
        if self.seccomp_filter.is_some() {
            front.seccomp_filter.clone_from(&self.seccomp_filter);
        }
        if let Some(on) = self.seccomp {
            front.seccomp = Some(if on { "on" } else { "off" }.to_string());
        }
        if self.boot_timeline {
            front.boot_timeline = Some(true);
        }
        if let Some(l) = self.log_level {
            front.log_level = Some(l.to_string().to_lowercase());
        }
        Ok(f)
    }

    /// The merged options, checked.
    pub fn effective(&self) -> Result<Effective, String> {
        let file = self.merged()?;
        let log_level = match &file.front.log_level {
            Some(l) => l.parse().map_err(|_| {
                format!("log level '{l}': use off, error, warn, info, debug or trace")
            })?,
            None => log::LevelFilter::Warn,
        };
        Ok(Effective {
            boot_timeline: file.front.boot_timeline.unwrap_or(false),
            log_level,
            file,
        })
    }
}

impl Effective {
    /// The library configuration these options describe.
    pub fn to_config(&self, origin: Instant) -> Result<VmConfig, String> {
        if self.file.spec.kernel.as_os_str().is_empty() {
            return Err("no kernel: give --kernel FILE (or \"kernel\" in the config file)".into());
        }
        let mut c = VmConfig::from_spec(self.file.spec.clone());
        c.console_output = self.console_output();
        c.console_input = ConsoleInput::Stdin;
        c.time_origin = origin;
        c.seccomp = self.seccomp_policy()?;
        Ok(c)
    }

    /// The builder of a VM restored from `dir`, with these options' runtime settings
    /// (console, seccomp, time origin).
    pub fn restore_builder(&self, dir: &Path, origin: Instant) -> Result<VmBuilder, String> {
        let seccomp = self.seccomp_policy()?;
        let spec = &self.file.spec;
        if !spec.shares.is_empty() {
            return Err(format!(
                "--fs cannot be given with --restore: {}",
                vmm::SNAPSHOT_REFUSED
            ));
        }
        let mut builder = VmBuilder::restore(dir).map_err(|e| vmm::error_chain(&e))?;
        builder = builder.kvm_device(spec.kvm_path.clone());
        if let Some(v) = &spec.vsock {
            builder = builder.vsock(v.clone());
        }
        if !spec.disks.is_empty() {
            builder = builder.disks(spec.disks.clone());
        }
        if !spec.nets.is_empty() {
            builder = builder.nets(spec.nets.clone());
        }
        Ok(builder
            .console(self.console_output())
            .console_input(ConsoleInput::Stdin)
            .seccomp(seccomp)
            .time_origin(origin))
    }

    fn console_output(&self) -> ConsoleOutput {
        match &self.file.front.console_log {
            Some(path) => ConsoleOutput::File(path.clone()),
            None => ConsoleOutput::Stdout,
        }
    }

    /// The seccomp policy: off, a filter file, or the built-in lists.
    fn seccomp_policy(&self) -> Result<SeccompPolicy, String> {
        let on = match self.file.front.seccomp.as_deref() {
            None | Some("on") => true,
            Some("off") => false,
            Some(other) => return Err(format!("seccomp '{other}': use on or off")),
        };
        match (&self.file.front.seccomp_filter, on) {
            (Some(_), false) => Err("--seccomp-filter needs seccomp on".into()),
            (Some(path), true) => {
                SeccompPolicy::from_json_file(path).map_err(|e| vmm::error_chain(&e))
            }
            (None, true) => Ok(SeccompPolicy::Default),
            (None, false) => Ok(SeccompPolicy::Off),
        }
    }
}

#[cfg(test)]
mod tests;
