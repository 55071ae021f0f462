//! Command-line options, and their translation into the library's `VmConfig`.

use clap::Parser;
use std::path::PathBuf;
use std::time::Instant;
use vmm::{ConsoleInput, ConsoleOutput, DiskConfig, NetConfig, Preset, VmConfig};

/// Boot a Linux guest in a KVM microVM.
#[derive(Debug, Parser)]
#[command(name = "minivmm", version, about)]
pub struct Cli {
    /// Guest kernel: an uncompressed ELF vmlinux or a bzImage (detected from the file).
    #[arg(long, value_name = "FILE")]
    pub kernel: PathBuf,

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

    /// Add a host-specific set of kernel arguments. "emulated-kvm": for nested KVM hosts
    /// without hardware virtualization, which emulate guest kernel code.
    #[arg(long, value_name = "NAME", value_parser = parse_preset)]
    pub cmdline_preset: Option<Preset>,

    /// Guest memory: 512M, 1G, 256MiB, or a plain number of MiB.
    #[arg(long, value_name = "SIZE", default_value = "128M", value_parser = parse_mem)]
    pub mem: u64,

    /// Number of vCPUs.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub cpus: usize,

    /// Attach a virtio-blk disk: path=FILE[,readonly=on][,id=SERIAL]. Repeatable; the
    /// guest sees them in order as vda, vdb, ...
    #[arg(long = "disk", value_name = "SPEC")]
    pub disks: Vec<DiskConfig>,

    /// Attach a virtio-net interface on a host tap: tap=NAME[,mac=02:..][,create=on].
    /// Repeatable (eth0, eth1, ...). The tap must exist unless create=on (which needs
    /// CAP_NET_ADMIN; the tap is then removed on exit).
    #[arg(long = "net", value_name = "SPEC")]
    pub nets: Vec<NetConfig>,

    /// Write guest console output to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub console_log: Option<PathBuf>,

    /// Print the boot timeline (milliseconds since minivmm started) to stderr on exit.
    #[arg(long)]
    pub boot_timeline: bool,

    /// Log level: off, error, warn, info, debug, trace.
    #[arg(long, value_name = "LEVEL", default_value = "warn")]
    pub log_level: log::LevelFilter,

    /// Path of the KVM device.
    #[arg(long, value_name = "PATH", default_value = vmm::config::DEFAULT_KVM_PATH)]
    pub kvm_device: PathBuf,
}

fn parse_mem(s: &str) -> Result<u64, String> {
    vmm::parse_mem_size(s).map_err(|e| e.to_string())
}

fn parse_preset(s: &str) -> Result<Preset, String> {
    s.parse()
}

impl Cli {
    /// The library configuration these options describe.
    pub fn to_config(&self, origin: Instant) -> VmConfig {
        let mut c = VmConfig::new(&self.kernel);
        c.initrd = self.initrd.clone();
        c.cmdline = self.cmdline.clone();
        c.default_cmdline = !self.no_default_cmdline;
        c.cmdline_preset = self.cmdline_preset;
        c.mem_size = self.mem;
        c.vcpus = self.cpus;
        c.disks = self.disks.clone();
        c.nets = self.nets.clone();
        c.console_output = match &self.console_log {
            Some(path) => ConsoleOutput::File(path.clone()),
            None => ConsoleOutput::Stdout,
        };
        c.console_input = ConsoleInput::Stdin;
        c.kvm_path = self.kvm_device.clone();
        c.time_origin = origin;
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let cli = Cli::try_parse_from(["minivmm", "--kernel", "k"]).unwrap();
        let c = cli.to_config(Instant::now());
        assert_eq!(c.mem_size, 128 << 20);
        assert_eq!(c.vcpus, 1);
        assert!(c.default_cmdline);
        assert_eq!(c.kvm_path, PathBuf::from("/dev/kvm"));
    }

    #[test]
    fn options_map_to_config() {
        let cli = Cli::try_parse_from([
            "minivmm",
            "--kernel",
            "k",
            "--initrd",
            "i",
            "--mem",
            "1G",
            "--cpus",
            "2",
            "--cmdline",
            "quiet",
            "--no-default-cmdline",
            "--cmdline-preset",
            "emulated-kvm",
            "--console-log",
            "out.txt",
        ])
        .unwrap();
        let c = cli.to_config(Instant::now());
        assert_eq!(c.mem_size, 1 << 30);
        assert_eq!(c.vcpus, 2);
        assert_eq!(c.cmdline.as_deref(), Some("quiet"));
        assert!(!c.default_cmdline);
        assert_eq!(c.cmdline_preset, Some(Preset::EmulatedKvm));
        assert!(
            matches!(c.console_output, ConsoleOutput::File(ref p) if p == &PathBuf::from("out.txt"))
        );
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(Cli::try_parse_from(["minivmm", "--kernel", "k", "--mem", "lots"]).is_err());
        assert!(
            Cli::try_parse_from(["minivmm", "--kernel", "k", "--cmdline-preset", "x"]).is_err()
        );
        assert!(Cli::try_parse_from(["minivmm", "--kernel", "k", "--cpus", "-1"]).is_err());
        assert!(Cli::try_parse_from(["minivmm"]).is_err());
    }
}
