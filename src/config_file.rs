//! `minivmm --config vm.json`: the VM's description ([`vmm::VmSpec`], the same type the
//! library, the API and snapshots use) plus the front end's own options (console log,
//! boot timeline, log level, seccomp). Fields are named like the long options
//! (`no_default_cmdline` for `--no-default-cmdline`); disks and nets are lists of
//! objects. Unknown fields are an error naming the field.
//!
//! ```json
//! {
//!   "kernel": "vmlinux", "initrd": "initramfs.cpio", "mem": "512M", "cpus": 2,
//!   "cmdline": "quiet", "disks": [{"path": "rootfs.ext4"}, {"path": "data.img", "readonly": true}],
//!   "nets": [{"tap": "tap0", "mac": "02:00:00:00:00:01"}], "boot_timeline": true,
//!   "vsock": {"socket": "/run/vm.sock", "cid": 3}, "rng": true,
//!   "fs": [{"tag": "work", "path": "/srv/work"}, {"tag": "ro", "path": "/srv/ro", "readonly": true}]
//! }
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use vmm::VmSpec;

/// The front end's options: how this process runs the VM, not what the VM is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontEnd {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_log: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_timeline: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_filter: Option<PathBuf>,
}

/// The keys of [`FrontEnd`]; every other key belongs to the VM's description.
const FRONT_END_KEYS: [&str; 5] = [
    "console_log",
    "boot_timeline",
    "log_level",
    "seccomp",
    "seccomp_filter",
];

/// A whole config file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileConfig {
    /// What the VM is.
    pub spec: VmSpec,
    /// How this process runs it.
    pub front: FrontEnd,
}

impl FileConfig {
    /// Reads and parses `path`; the error is one line naming the file and the problem.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("config file {}: {e}", path.display()))
    }

    /// Parses a config file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let Value::Object(mut vm) = value else {
            return Err("expected a JSON object".into());
        };
        let mut front = Map::new();
        for key in FRONT_END_KEYS {
            if let Some(v) = vm.remove(key) {
                front.insert(key.to_string(), v);
            }
        }
        // Errors name the field they are about ("cpus: invalid type ...").
        let front =
            serde_path_to_error::deserialize(Value::Object(front)).map_err(|e| e.to_string())?;
        let spec: VmSpec =
            serde_path_to_error::deserialize(Value::Object(vm)).map_err(|e| e.to_string())?;
        spec.check_devices()?;
        Ok(Self { spec, front })
    }

    /// The file as pretty JSON: the VM's description with the front end's options.
    pub fn to_json(&self) -> String {
        let mut all = match serde_json::to_value(&self.spec) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        if let Ok(Value::Object(front)) = serde_json::to_value(&self.front) {
            all.extend(front);
        }
        serde_json::to_string_pretty(&Value::Object(all))
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_named() {
        let err = FileConfig::parse(r#"{"kernel": "k", "memory": "1G"}"#).unwrap_err();
        assert!(err.contains("unknown field `memory`"), "{err}");
        let err = FileConfig::parse(r#"{"disks": [{"path": "a", "cache": 1}]}"#).unwrap_err();
        assert!(err.contains("unknown field `cache`"), "{err}");
        assert!(FileConfig::parse("[1]").is_err());
        // A value of the wrong type names its field; broken JSON its line and column.
        let err = FileConfig::parse(r#"{"kernel": "k", "cpus": "2"}"#).unwrap_err();
        assert!(err.starts_with("cpus: invalid type"), "{err}");
        let err = FileConfig::parse("{\n\"kernel\": }").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn front_end_options_sit_beside_the_vm() {
        let f = FileConfig::parse(
            r#"{"mem": "1G", "log_level": "info", "boot_timeline": true,
                "disks": [{"path": "a.img", "readonly": true, "id": "x"}],
                "nets": [{"tap": "tap0", "mac": "02:00:00:00:00:09", "create": true}]}"#,
        )
        .unwrap();
        assert_eq!(f.spec.mem_size, 1 << 30);
        assert_eq!(f.front.log_level.as_deref(), Some("info"));
        assert!(f.spec.disks[0].read_only);
        assert_eq!(f.spec.nets[0].mac, Some([2, 0, 0, 0, 0, 9]));
        assert_eq!(FileConfig::parse(&f.to_json()).unwrap(), f);
        let bad = r#"{"nets": [{"tap": "t", "mac": "01:00:00:00:00:00"}]}"#;
        assert!(FileConfig::parse(bad).unwrap_err().contains("multicast"));
    }
}
