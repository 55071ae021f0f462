//! The plain configuration a VM is built from, and parsing of user-facing sizes.

use crate::spec::VmSpec;
use devices::virtio::block::disk::ID_BYTES;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

/// Default guest memory: 128 MiB.
pub const DEFAULT_MEM_SIZE: u64 = 128 << 20;
/// Smallest guest minivmm builds.
pub const MIN_MEM_SIZE: u64 = 16 << 20;
/// Default path of the KVM device.
pub const DEFAULT_KVM_PATH: &str = "/dev/kvm";

/// Where guest console output goes.
pub enum ConsoleOutput {
    /// The VMM's standard output.
    Stdout,
    /// A file, created or truncated.
    File(PathBuf),
    /// A writer the embedding program gives.
    Writer(Box<dyn Write + Send>),
    /// Discarded.
    Null,
}

/// Where guest console input comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleInput {
    /// The VMM's standard input (raw mode while the VM runs, if it is a terminal).
    Stdin,
    /// No input.
    None,
}

/// A virtio-blk disk (JSON: `{"path": .., "readonly": .., "id": ..}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    /// Raw image file (or block device).
    pub path: PathBuf,
    /// Guest may only read; the file is opened read-only.
    #[serde(
        default,
        rename = "readonly",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub read_only: bool,
    /// Serial the guest reads with GET_ID (at most 20 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl DiskConfig {
    /// A read-write disk on `path`, without a serial.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            read_only: false,
            id: None,
        }
    }

    /// Checks the description: a path, a serial that fits GET_ID.
    pub fn check(&self) -> Result<(), String> {
        if self.path.as_os_str().is_empty() {
            return Err("a disk needs path=FILE".into());
        }
        match &self.id {
            Some(id) if id.len() > ID_BYTES => {
                Err(format!("disk id '{id}' is longer than {ID_BYTES} bytes"))
            }
            _ => Ok(()),
        }
    }
}

impl std::str::FromStr for DiskConfig {
    type Err = String;

    /// Parses `path=FILE[,readonly=on|off][,id=SERIAL]`.
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut path = None;
        let mut read_only = false;
        let mut id = None;
        for (key, value) in key_values(spec, "path=FILE[,readonly=on][,id=SERIAL]")? {
            match key {
                "path" => path = Some(PathBuf::from(value)),
                "readonly" | "ro" => read_only = parse_on_off(key, value)?,
                "id" => id = Some(value.to_string()),
                _ => {
                    return Err(format!(
                        "unknown disk option '{key}' (known: path, readonly, id)"
                    ))
                }
            }
        }
        let disk = Self {
            path: path.ok_or("a disk needs path=FILE")?,
            read_only,
            id,
        };
        disk.check()?;
        Ok(disk)
    }
}

/// A host directory shared with the guest over virtio-fs; the guest mounts it with
/// `mount -t virtiofs TAG DIR` (JSON: `{"tag": .., "path": .., "readonly": ..}`).
///
/// ```
/// let fs: vmm::FsConfig = "tag=work,path=/srv/work,readonly=on".parse().unwrap();
/// assert_eq!(fs.tag, "work");
/// assert!(fs.read_only);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsConfig {
    /// The name the guest mounts (1 to 36 bytes).
    pub tag: String,
    /// The host directory.
    pub path: PathBuf,
    /// The guest may only read.
    #[serde(
        default,
        rename = "readonly",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub read_only: bool,
}

impl FsConfig {
    /// A read-write share of `path` under `tag`.
    pub fn new(tag: &str, path: impl Into<PathBuf>) -> Self {
        Self {
            tag: tag.to_string(),
            path: path.into(),
            read_only: false,
        }
    }

    /// Checks the description: a tag the device can hold, a path.
    pub fn check(&self) -> Result<(), String> {
        if self.path.as_os_str().is_empty() {
            return Err("a share needs path=DIR".into());
        }
        virtiofs::check_tag(&self.tag).map_err(|e| e.to_string())
    }
}

impl std::str::FromStr for FsConfig {
    type Err = String;

    /// Parses `tag=NAME,path=DIR[,readonly=on|off]`.
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut tag = None;
        let mut path = None;
        let mut read_only = false;
        for (key, value) in key_values(spec, "tag=NAME,path=DIR[,readonly=on]")? {
            match key {
                "tag" => tag = Some(value.to_string()),
                "path" => path = Some(PathBuf::from(value)),
                "readonly" | "ro" => read_only = parse_on_off(key, value)?,
                _ => {
                    return Err(format!(
                        "unknown share option '{key}' (known: tag, path, readonly)"
                    ))
                }
            }
        }
        let fs = Self {
            tag: tag.ok_or("a share needs tag=NAME")?,
            path: path.ok_or("a share needs path=DIR")?,
            read_only,
        };
        fs.check()?;
        Ok(fs)
    }
}

/// The `key=value` pairs of a comma-separated device description; the error names the
/// part that is not one and the form `expected`.
fn key_values<'a>(spec: &'a str, expected: &str) -> Result<Vec<(&'a str, &'a str)>, String> {
    spec.split(',')
        .map(|part| {
            part.split_once('=')
                .ok_or_else(|| format!("'{part}' is not key=value (expected {expected})"))
        })
        .collect()
}

/// A virtio-net interface backed by a host tap.
///
/// ```
/// let net: vmm::NetConfig = "tap=tap0,mac=02:00:00:00:00:01".parse().unwrap();
/// assert_eq!(net.mac, Some([2, 0, 0, 0, 0, 1]));
/// let disk: vmm::DiskConfig = "path=data.img,readonly=on".parse().unwrap();
/// assert!(disk.read_only);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    /// Name of the tap interface on the host.
    pub tap: String,
    /// Guest MAC address; derived from the tap name when absent.
    #[serde(
        default,
        with = "crate::spec::mac_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub mac: Option<[u8; 6]>,
    /// Create the tap when it does not exist (it is removed again on exit).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create: bool,
}

impl NetConfig {
    /// An interface on the existing tap `tap`, with the MAC derived from its name.
    pub fn new(tap: &str) -> Self {
        Self {
            tap: tap.to_string(),
            mac: None,
            create: false,
        }
    }

    /// Checks the description: a tap name the kernel takes (the MAC was checked
    /// when it was parsed).
    pub fn check(&self) -> Result<(), String> {
        if self.tap.is_empty() {
            return Err("a network interface needs tap=NAME".into());
        }
        if !devices::virtio::net::tap::valid_name(&self.tap) {
            return Err(format!("'{}' is not a valid interface name", self.tap));
        }
        Ok(())
    }
}

/// A virtio-vsock device: the guest's context ID and the host Unix socket its
/// connections go through (Firecracker's convention: `CONNECT <port>` on `socket`,
/// guest connections to port P on `socket_P`).
///
/// ```
/// let v: vmm::VsockConfig = "cid=7,socket=/tmp/vm.sock".parse().unwrap();
/// assert_eq!(v.cid, 7);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VsockConfig {
    /// The guest's context ID (3 or more).
    #[serde(default = "default_cid")]
    pub cid: u64,
    /// Path of the host socket.
    pub socket: PathBuf,
}

impl VsockConfig {
    /// A device with the default guest CID (3) on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            cid: devices::virtio::vsock::DEFAULT_GUEST_CID,
            socket: socket.into(),
        }
    }

    /// Checks the description: a socket path, a CID a guest may have.
    pub fn check(&self) -> Result<(), String> {
        if self.socket.as_os_str().is_empty() {
            return Err("a vsock device needs socket=PATH".into());
        }
        if !devices::virtio::vsock::valid_cid(self.cid) {
            return Err(format!(
                "vsock cid '{}' is not valid (use 3 to 4294967294)",
                self.cid
            ));
        }
        Ok(())
    }
}

fn default_cid() -> u64 {
    devices::virtio::vsock::DEFAULT_GUEST_CID
}

impl std::str::FromStr for VsockConfig {
    type Err = String;

    /// Parses `socket=PATH[,cid=N]`.
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut cid = devices::virtio::vsock::DEFAULT_GUEST_CID;
        let mut socket = None;
        for (key, value) in key_values(spec, "cid=N,socket=PATH")? {
            match key {
                "socket" | "path" | "uds" => socket = Some(PathBuf::from(value)),
                "cid" => {
                    cid = value.parse::<u64>().map_err(|_| {
                        format!("vsock cid '{value}' is not valid (use 3 to 4294967294)")
                    })?
                }
                _ => return Err(format!("unknown vsock option '{key}' (known: cid, socket)")),
            }
        }
        let vsock = Self {
            cid,
            socket: socket.ok_or("a vsock device needs socket=PATH")?,
        };
        vsock.check()?;
        Ok(vsock)
    }
}

fn parse_on_off(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        v => Err(format!("{key}={v}: use on or off")),
    }
}

/// Parses a MAC address `02:00:00:00:00:01`; multicast addresses are refused.
pub fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let bad = || format!("'{text}' is not a MAC address like 02:00:00:00:00:01");
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in mac.iter_mut() {
        let part = parts.next().ok_or_else(bad)?;
        if part.len() != 2 {
            return Err(bad());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    if mac[0] & 1 != 0 {
        return Err(format!(
            "MAC {text} is a multicast address; a NIC needs a unicast one (even first byte)"
        ));
    }
    Ok(mac)
}

/// Writes a MAC address as `parse_mac` reads it.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl std::str::FromStr for NetConfig {
    type Err = String;

    /// Parses `tap=NAME[,mac=02:..][,create=on|off]`.
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut tap = None;
        let mut mac = None;
        let mut create = false;
        for (key, value) in key_values(spec, "tap=NAME[,mac=MAC][,create=on]")? {
            match key {
                "tap" => tap = Some(value.to_string()),
                "mac" => mac = Some(parse_mac(value)?),
                "create" => create = parse_on_off(key, value)?,
                _ => {
                    return Err(format!(
                        "unknown net option '{key}' (known: tap, mac, create)"
                    ))
                }
            }
        }
        let net = Self {
            tap: tap.ok_or("a network interface needs tap=NAME")?,
            mac,
            create,
        };
        net.check()?;
        Ok(net)
    }
}

/// Everything needed to build and boot a VM: its description ([`VmSpec`], what a
/// config file, the API and a snapshot hold) and the runtime objects beside it.
pub struct VmConfig {
    /// What the VM is.
    pub spec: VmSpec,
    /// Console output.
    pub console_output: ConsoleOutput,
    /// Console input.
    pub console_input: ConsoleInput,
    /// Time zero of the boot timeline (process start, for the CLI).
    pub time_origin: Instant,
    /// Seccomp filters for the VM's threads (built-in lists by default).
    pub seccomp: seccomp::SeccompPolicy,
}

impl VmConfig {
    /// A configuration with minivmm's defaults for `kernel`.
    pub fn new(kernel: impl Into<PathBuf>) -> Self {
        Self::from_spec(VmSpec::new(kernel))
    }

    /// A configuration for `spec`, with the default runtime objects (console on
    /// standard output, no input, built-in seccomp lists).
    pub fn from_spec(spec: VmSpec) -> Self {
        Self {
            spec,
            console_output: ConsoleOutput::Stdout,
            console_input: ConsoleInput::None,
            time_origin: Instant::now(),
            seccomp: seccomp::SeccompPolicy::Default,
        }
    }
}

/// Errors parsing a size.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SizeError {
    /// Not a number with an optional unit.
    #[error(
        "cannot parse memory size '{0}': use a number of MiB or a unit, e.g. 512M, 1G, 256MiB"
    )]
    Unparsable(String),
    /// Larger than 64 bits.
    #[error("memory size '{0}' is too large")]
    Overflow(String),
}

/// Parses `512M`, `1G`, `256MiB`, `1048576K`, or a plain number of MiB. Units are
/// binary (M = MB = MiB = 2^20 bytes) and case-insensitive.
///
/// ```
/// assert_eq!(vmm::parse_mem_size("512M"), Ok(512 << 20));
/// assert_eq!(vmm::parse_mem_size("2"), Ok(2 << 20));
/// assert!(vmm::parse_mem_size("lots").is_err());
/// ```
pub fn parse_mem_size(text: &str) -> Result<u64, SizeError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(SizeError::Unparsable(text.into()));
    }
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "m" | "mb" | "mib" => 20,
        "k" | "kb" | "kib" => 10,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(SizeError::Unparsable(text.into())),
    };
    let n: u64 = num.parse().map_err(|_| SizeError::Overflow(text.into()))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| SizeError::Overflow(text.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_users_type() {
        assert_eq!(parse_mem_size("512M"), Ok(512 << 20));
        assert_eq!(parse_mem_size("1G"), Ok(1 << 30));
        assert_eq!(parse_mem_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_mem_size("128"), Ok(128 << 20));
        assert_eq!(parse_mem_size("2gib"), Ok(2 << 30));
        assert_eq!(parse_mem_size("65536K"), Ok(64 << 20));
        assert_eq!(parse_mem_size("4096G"), Ok(4096 << 30));
        assert_eq!(parse_mem_size("0"), Ok(0));
    }

    #[test]
    fn disk_specs() {
        let d: DiskConfig = "path=/tmp/a.img".parse().unwrap();
        assert_eq!(
            d,
            DiskConfig {
                path: "/tmp/a.img".into(),
                read_only: false,
                id: None
            }
        );
        let d: DiskConfig = "path=b.img,readonly=on,id=data-1".parse().unwrap();
        assert!(d.read_only);
        assert_eq!(d.id.as_deref(), Some("data-1"));
        for bad in [
            "",
            "b.img",
            "path=",
            "readonly=on",
            "path=a,readonly=maybe",
            "path=a,size=1",
            "path=a,id=123456789012345678901",
        ] {
            assert!(bad.parse::<DiskConfig>().is_err(), "{bad}");
        }
    }

    #[test]
    fn net_specs() {
        let n: NetConfig = "tap=tap0".parse().unwrap();
        assert_eq!(
            n,
            NetConfig {
                tap: "tap0".into(),
                mac: None,
                create: false
            }
        );
        let n: NetConfig = "tap=vm1,mac=02:AB:cd:00:00:01,create=on".parse().unwrap();
        assert_eq!(n.mac, Some([2, 0xab, 0xcd, 0, 0, 1]));
        assert!(n.create);
        for bad in [
            "",
            "tap0",
            "tap=",
            "mac=02:00:00:00:00:01",
            "tap=t,mac=02:00:00:00:00",
            "tap=t,mac=02:00:00:00:00:01:02",
            "tap=t,mac=0g:00:00:00:00:01",
            "tap=t,mac=2:00:00:00:00:01",
            "tap=t,mac=01:00:5e:00:00:01",
            "tap=t,create=maybe",
            "tap=t,queues=2",
        ] {
            assert!(bad.parse::<NetConfig>().is_err(), "{bad}");
        }
        assert!("tap=t,mac=01:00:5e:00:00:01"
            .parse::<NetConfig>()
            .unwrap_err()
            .contains("multicast"));
    }

    #[test]
    fn vsock_specs() {
        let v: VsockConfig = "socket=/run/vm.sock".parse().unwrap();
        assert_eq!(v, VsockConfig::new("/run/vm.sock"));
        assert_eq!(v.cid, 3);
        let v: VsockConfig = "cid=42,socket=a".parse().unwrap();
        assert_eq!(v.cid, 42);
        for bad in [
            "",
            "cid=3",
            "socket=",
            "cid=2,socket=a",
            "cid=x,socket=a",
            "cid=4294967295,socket=a",
            "socket=a,port=1",
        ] {
            assert!(bad.parse::<VsockConfig>().is_err(), "{bad}");
        }
    }

    #[test]
    fn nonsense_is_rejected() {
        for bad in ["", "M", "12X", "1.5G", "-1", "abc", "12 34"] {
            assert!(parse_mem_size(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            parse_mem_size("99999999999999999999"),
            Err(SizeError::Overflow(_))
        ));
        assert!(matches!(
            parse_mem_size("99999999999T"),
            Err(SizeError::Overflow(_))
        ));
    }
}
