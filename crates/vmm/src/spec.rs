//! [`VmSpec`]: what a VM is, as data. The CLI builds one from its flags, a config file
//! is one in JSON, the control API and snapshots carry one; [`crate::VmConfig`] holds
//! it beside the runtime objects (console writer, clock origin, seccomp policy) that
//! cannot be written down. Each device's rules are checked in one place
//! ([`DiskConfig::check`], [`NetConfig::check`], [`VsockConfig::check`],
//! [`FsConfig::check`]), whichever way
//! the description came in.
//!
//! JSON field names follow the command line's long options (`cpus`, `mem`,
//! `no_default_cmdline`, `kvm_device`); a missing field takes its default, an unknown
//! one is an error naming it.

use crate::config::{
    DiskConfig, FsConfig, NetConfig, VsockConfig, DEFAULT_KVM_PATH, DEFAULT_MEM_SIZE,
};
use boot::cmdline::PresetChoice;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The serializable description of a VM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VmSpec {
    /// Kernel image: ELF vmlinux or bzImage.
    pub kernel: PathBuf,
    /// Optional initrd / initramfs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initrd: Option<PathBuf>,
    /// Text added to the kernel command line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    /// Start from minivmm's default command line (`boot::cmdline::DEFAULT_CMDLINE`).
    #[serde(rename = "no_default_cmdline", with = "inverted")]
    pub default_cmdline: bool,
    /// Host-specific command-line preset: by default (`Auto`) the one this host
    /// needs, decided when the VM is built.
    #[serde(with = "as_text")]
    pub cmdline_preset: PresetChoice,
    /// Guest memory in bytes (JSON: a number of MiB or a size such as "512M").
    #[serde(rename = "mem", with = "mem_json")]
    pub mem_size: u64,
    /// Back guest memory with the host's reserved huge pages.
    pub mem_hugepages: bool,
    /// Number of vCPUs.
    #[serde(rename = "cpus")]
    pub vcpus: usize,
    /// virtio-blk disks, in order (vda, vdb, ...).
    pub disks: Vec<DiskConfig>,
    /// virtio-net interfaces, in order (eth0, eth1, ...).
    pub nets: Vec<NetConfig>,
    /// A virtio-vsock device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vsock: Option<VsockConfig>,
    /// A virtio-rng device (entropy from the host's getrandom); on by default.
    pub rng: bool,
    /// Host directories shared over virtio-fs, one device each.
    #[serde(rename = "fs", skip_serializing_if = "Vec::is_empty")]
    pub shares: Vec<FsConfig>,
    /// Path of the KVM device.
    #[serde(rename = "kvm_device")]
    pub kvm_path: PathBuf,
    /// Leave the host kernel's destruction of the VM to a helper process.
    pub async_teardown: bool,
}

impl Default for VmSpec {
    fn default() -> Self {
        Self {
            kernel: PathBuf::new(),
            initrd: None,
            cmdline: None,
            default_cmdline: true,
            cmdline_preset: PresetChoice::Auto,
            mem_size: DEFAULT_MEM_SIZE,
            mem_hugepages: false,
            vcpus: 1,
            disks: Vec::new(),
            nets: Vec::new(),
            vsock: None,
            rng: true,
            shares: Vec::new(),
            kvm_path: PathBuf::from(DEFAULT_KVM_PATH),
            async_teardown: false,
        }
    }
}

impl VmSpec {
    /// A description with minivmm's defaults for `kernel`.
    pub fn new(kernel: impl Into<PathBuf>) -> Self {
        Self {
            kernel: kernel.into(),
            ..Self::default()
        }
    }

    /// Parses a JSON description; the error names the field and the problem.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let spec: Self = serde_json::from_str(text).map_err(|e| e.to_string())?;
        spec.check_devices()?;
        Ok(spec)
    }

    /// The description as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// Checks every device description (the rules `--disk`, `--net` and `--vsock`
    /// apply); the message names the device.
    pub fn check_devices(&self) -> Result<(), String> {
        for d in &self.disks {
            d.check()?;
        }
        for n in &self.nets {
            n.check()?;
        }
        if let Some(v) = &self.vsock {
            v.check()?;
        }
        for (i, f) in self.shares.iter().enumerate() {
            f.check()?;
            if self.shares[..i].iter().any(|g| g.tag == f.tag) {
                return Err(format!("two shares are tagged '{}'", f.tag));
            }
        }
        Ok(())
    }
}

/// `no_default_cmdline` in JSON, `default_cmdline` in Rust.
mod inverted {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &bool, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bool(!v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        bool::deserialize(d).map(|v| !v)
    }
}

/// A value written as its `Display` text and read with `FromStr`.
mod as_text {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};
    use std::fmt::Display;
    use std::str::FromStr;

    pub fn serialize<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr<Err = String>,
        D: Deserializer<'de>,
    {
        String::deserialize(d)?.parse().map_err(D::Error::custom)
    }
}

/// Memory as a number of MiB or a size with a unit; written as MiB when whole.
mod mem_json {
    use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Mem {
        Mib(u64),
        Text(String),
    }

    pub fn serialize<S: Serializer>(bytes: &u64, s: S) -> Result<S::Ok, S::Error> {
        if bytes.is_multiple_of(1 << 20) {
            Mem::Mib(bytes >> 20).serialize(s)
        } else {
            Mem::Text(format!("{}K", bytes >> 10)).serialize(s)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match Mem::deserialize(d)? {
            Mem::Mib(n) => n
                .checked_mul(1 << 20)
                .ok_or_else(|| D::Error::custom(format!("memory size {n} MiB is too large"))),
            Mem::Text(t) => crate::parse_mem_size(&t).map_err(D::Error::custom),
        }
    }
}

/// A MAC address as text ("02:00:00:00:00:01"), checked like `--net mac=`.
pub(crate) mod mac_text {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mac: &Option<[u8; 6]>, s: S) -> Result<S::Ok, S::Error> {
        match mac {
            Some(m) => s.serialize_str(&crate::config::format_mac(m)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 6]>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| crate::parse_mac(&t).map_err(D::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests;
