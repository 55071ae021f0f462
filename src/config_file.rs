//! `minivmm --config vm.json`: every command-line option as a JSON file. Fields are
//! named like the long options (`no_default_cmdline` for `--no-default-cmdline`);
//! disks and nets are lists of objects. Unknown fields are an error naming the field.
//!
//! ```json
//! {
//!   "kernel": "vmlinux", "initrd": "initramfs.cpio", "mem": "512M", "cpus": 2,
//!   "cmdline": "quiet", "disks": [{"path": "rootfs.ext4"}, {"path": "data.img", "readonly": true}],
//!   "nets": [{"tap": "tap0", "mac": "02:00:00:00:00:01"}], "boot_timeline": true,
//!   "vsock": {"socket": "/run/vm.sock", "cid": 3}, "rng": true
//! }
//! ```

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use vmm::{DiskConfig, NetConfig, VsockConfig};

/// Guest memory as the CLI takes it ("512M") or a plain number of MiB.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MemSize {
    /// A number of MiB.
    Mib(u64),
    /// A size with a unit, as `--mem` takes it.
    Text(String),
}

/// One disk, as `--disk path=..,readonly=..,id=..` describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDisk {
    pub path: PathBuf,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub readonly: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// One network interface, as `--net tap=..,mac=..,create=..` describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileNet {
    pub tap: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create: bool,
}

/// The vsock device, as `--vsock socket=..,cid=..` describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileVsock {
    pub socket: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cid: Option<u64>,
}

/// The file's contents; every field optional (command-line flags fill in and win).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_default_cmdline: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline_preset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem: Option<MemSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_hugepages: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disks: Option<Vec<FileDisk>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nets: Option<Vec<FileNet>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vsock: Option<FileVsock>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rng: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_log: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_timeline: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kvm_device: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_filter: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub async_teardown: Option<bool>,
}

impl FileConfig {
    /// Reads and parses `path`; the error is one line naming the file and the problem.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))
    }

    /// The file as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

impl MemSize {
    /// Bytes.
    pub fn bytes(&self) -> Result<u64, String> {
        match self {
            Self::Mib(n) => n
                .checked_mul(1 << 20)
                .ok_or_else(|| format!("memory size {n} MiB is too large")),
            Self::Text(t) => vmm::parse_mem_size(t).map_err(|e| e.to_string()),
        }
    }
}

impl FileDisk {
    /// The library's description of this disk, checked as `--disk` would be.
    pub fn to_disk(&self) -> Result<DiskConfig, String> {
        if self.path.as_os_str().is_empty() {
            return Err("a disk needs a path".into());
        }
        if self.id.as_ref().is_some_and(|id| id.len() > 20) {
            return Err(format!(
                "disk id '{}' is longer than 20 bytes",
                self.id.as_deref().unwrap_or("")
            ));
        }
        Ok(DiskConfig {
            path: self.path.clone(),
            read_only: self.readonly,
            id: self.id.clone(),
        })
    }

    /// This disk as the file describes it.
    pub fn from_disk(d: &DiskConfig) -> Self {
        Self {
            path: d.path.clone(),
            readonly: d.read_only,
            id: d.id.clone(),
        }
    }
}

impl FileNet {
    /// The library's description of this interface, checked as `--net` would be.
    pub fn to_net(&self) -> Result<NetConfig, String> {
        if self.tap.is_empty() {
            return Err("a network interface needs a tap".into());
        }
        Ok(NetConfig {
            tap: self.tap.clone(),
            mac: self.mac.as_deref().map(vmm::parse_mac).transpose()?,
            create: self.create,
        })
    }

    /// This interface as the file describes it.
    pub fn from_net(n: &NetConfig) -> Self {
        Self {
            tap: n.tap.clone(),
            mac: n.mac.map(|m| {
                m.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":")
            }),
            create: n.create,
        }
    }
}

impl FileVsock {
    /// The library's description of this device, checked as `--vsock` would be.
    pub fn to_vsock(&self) -> Result<VsockConfig, String> {
        let mut spec = format!("socket={}", self.socket.display());
        if let Some(cid) = self.cid {
            spec.push_str(&format!(",cid={cid}"));
        }
        if self.socket.as_os_str().is_empty() || self.socket.to_string_lossy().contains(',') {
            return Err("a vsock device needs a socket path (without commas)".into());
        }
        spec.parse()
    }

    /// This device as the file describes it.
    pub fn from_vsock(v: &VsockConfig) -> Self {
        Self {
            socket: v.socket.clone(),
            cid: Some(v.cid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_named() {
        let err = serde_json::from_str::<FileConfig>(r#"{"kernel": "k", "memory": "1G"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `memory`"), "{err}");
        let err = serde_json::from_str::<FileConfig>(r#"{"disks": [{"path": "a", "cache": 1}]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `cache`"), "{err}");
    }

    #[test]
    fn sizes_and_devices_parse_like_the_cli() {
        let f: FileConfig = serde_json::from_str(
            r#"{"mem": "1G", "disks": [{"path": "a.img", "readonly": true, "id": "x"}],
                "nets": [{"tap": "tap0", "mac": "02:00:00:00:00:09", "create": true}]}"#,
        )
        .unwrap();
        assert_eq!(f.mem.as_ref().unwrap().bytes(), Ok(1 << 30));
        assert_eq!(MemSize::Mib(256).bytes(), Ok(256 << 20));
        assert!(MemSize::Text("lots".into()).bytes().is_err());
        let d = f.disks.as_ref().unwrap()[0].to_disk().unwrap();
        assert!(d.read_only && d.id.as_deref() == Some("x"));
        let n = f.nets.as_ref().unwrap()[0].to_net().unwrap();
        assert_eq!(n.mac, Some([2, 0, 0, 0, 0, 9]));
        assert_eq!(FileNet::from_net(&n), f.nets.as_ref().unwrap()[0]);
        let bad = FileNet {
            tap: "t".into(),
            mac: Some("01:00:00:00:00:00".into()),
            create: false,
        };
        assert!(bad.to_net().is_err());
    }
}
