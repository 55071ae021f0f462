//! The runtime's own configuration: which guest kernel and agent initramfs it boots.
//! `minivmm-oci install` copies both next to the binary, in `minivmm-oci.d/`, and
//! writes `config.json` naming them; `$MINIVMM_OCI_CONFIG` points elsewhere.

use crate::error::OciError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The environment variable naming another configuration file.
pub const CONFIG_ENV: &str = "MINIVMM_OCI_CONFIG";
/// The directory next to the binary that `install` fills.
pub const INSTALL_DIR: &str = "minivmm-oci.d";
/// The guest command line the agent initramfs (resources/guest) needs.
pub const DEFAULT_CMDLINE: &str = "minivmm.action=agent";
/// Seconds a guest may take to boot to its agent.
pub const DEFAULT_BOOT_TIMEOUT_S: u64 = 60;

/// `config.json` of the runtime. Relative paths are relative to the file's directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// The guest kernel (ELF vmlinux or bzImage).
    pub kernel: PathBuf,
    /// The initramfs whose init starts the guest agent.
    pub initrd: PathBuf,
    /// Added to minivmm's default kernel command line.
    #[serde(default = "default_cmdline")]
    pub cmdline: String,
    /// Seconds the guest may take to answer from its agent.
    #[serde(default = "default_boot_timeout")]
    pub boot_timeout_s: u64,
}

fn default_cmdline() -> String {
    DEFAULT_CMDLINE.into()
}

fn default_boot_timeout() -> u64 {
    DEFAULT_BOOT_TIMEOUT_S
}

/// The configuration file this process reads: `$MINIVMM_OCI_CONFIG`, else
/// `minivmm-oci.d/config.json` beside the running binary.
pub fn config_path() -> PathBuf {
    if let Some(p) = std::env::var_os(CONFIG_ENV) {
        return PathBuf::from(p);
    }
    install_dir(None).join("config.json")
}

/// `dir`, or `minivmm-oci.d` beside the running binary.
pub fn install_dir(dir: Option<&Path>) -> PathBuf {
    if let Some(d) = dir {
        return d.to_path_buf();
    }
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent()
        .unwrap_or_else(|| Path::new("."))
        .join(INSTALL_DIR)
}

impl RuntimeConfig {
    /// Reads the configuration at `path`, its paths made absolute and checked.
    pub fn load(path: &Path) -> Result<Self, OciError> {
        let err = |m: String| OciError::Runtime(path.to_path_buf(), m);
        let text = std::fs::read_to_string(path).map_err(|e| {
            err(format!(
                "{e} (install a guest kernel and initramfs with `minivmm-oci install`)"
            ))
        })?;
        let mut c: RuntimeConfig = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        for (what, p) in [("kernel", &mut c.kernel), ("initrd", &mut c.initrd)] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
            if !p.is_file() {
                return Err(err(format!("{what} {} is not a file", p.display())));
            }
        }
        if c.boot_timeout_s == 0 {
            return Err(err("boot_timeout_s must be at least 1".into()));
        }
        Ok(c)
    }
}

/// Copies `kernel` and `initrd` into `dir` (created) and writes its `config.json`
/// naming them; returns the configuration file's path.
pub fn install(
    kernel: &Path,
    initrd: &Path,
    cmdline: Option<&str>,
    dir: &Path,
) -> Result<PathBuf, OciError> {
    let err = |p: &Path, e: std::io::Error| OciError::Runtime(p.to_path_buf(), e.to_string());
    for (what, p) in [("kernel", kernel), ("initrd", initrd)] {
        let meta = std::fs::metadata(p).map_err(|e| err(p, e))?;
        if !meta.is_file() || meta.len() == 0 {
            return Err(OciError::Runtime(
                p.to_path_buf(),
                format!("the {what} must be a non-empty file"),
            ));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    let copy = |from: &Path, name: &str| -> Result<(), OciError> {
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::copy(from, &tmp).map_err(|e| err(from, e))?;
        std::fs::rename(&tmp, dir.join(name)).map_err(|e| err(dir, e))
    };
    copy(kernel, "kernel")?;
    copy(initrd, "initrd")?;
    let config = RuntimeConfig {
        kernel: "kernel".into(),
        initrd: "initrd".into(),
        cmdline: cmdline.unwrap_or(DEFAULT_CMDLINE).into(),
        boot_timeout_s: DEFAULT_BOOT_TIMEOUT_S,
    };
    let path = dir.join("config.json");
    let text = serde_json::to_string_pretty(&config)
        .map_err(|e| OciError::Runtime(path.clone(), e.to_string()))?;
    std::fs::write(&path, text + "\n").map_err(|e| err(&path, e))?;
    RuntimeConfig::load(&path)?;
    Ok(path)
}
