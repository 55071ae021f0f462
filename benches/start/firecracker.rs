//! Firecracker as a peer (`--peer-firecracker PATH`, a binary the user has): the same
//! test guest, memory and vCPU count, booted with a config file and no API socket.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The guest's command line under both VMMs: the hello test, and no boot-timer write
/// (Firecracker's boot page tables map only the first 1 GiB; minivmm's device is at
/// 3.25 GiB).
pub const GUEST_ARGS: &str = "guest.test=hello boot_timer=0";

/// A Firecracker binary and the config file that boots the test guest.
pub struct Firecracker {
    binary: PathBuf,
    config: PathBuf,
}

impl Firecracker {
    /// Checks `binary` runs and writes its config into `dir`.
    pub fn prepare(binary: &Path, guest: &Path, mem_mib: u64, dir: &Path) -> Result<Self, String> {
        let version = Command::new(binary)
            .arg("--version")
            .output()
            .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
        if !version.status.success() {
            return Err(format!("{} --version failed", binary.display()));
        }
        println!(
            "peer: {}",
            String::from_utf8_lossy(&version.stdout)
                .lines()
                .next()
                .unwrap_or("firecracker")
        );
        let config = dir.join("firecracker.json");
        let text = serde_json::json!({
            "boot-source": {
                "kernel_image_path": guest,
                "boot_args": format!("console=ttyS0 {GUEST_ARGS}"),
            },
            "machine-config": {"vcpu_count": 1, "mem_size_mib": mem_mib},
            "drives": [],
            "network-interfaces": [],
        });
        std::fs::write(&config, text.to_string()).map_err(|e| e.to_string())?;
        Ok(Self {
            binary: binary.to_path_buf(),
            config,
        })
    }

    /// A command that boots the test guest once; it exits after the guest's reset.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("--no-api")
            .arg("--config-file")
            .arg(&self.config)
            .args(["--level", "Error"]);
        c
    }
}
