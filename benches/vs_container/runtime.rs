//! Starting things and timing them: one start to its marker and exit (with wait4's
//! rusage), OCI bundles for runc/crun, and K starts at once.

use crate::report::Sample;
use crate::Density;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What the container's process prints.
pub const MARKER: &str = "CONTAINER-READY";

/// Runs `cmd` to completion: time to the line holding `marker`, time to exit, peak
/// RSS of the process, and the guest memory minivmm reports (if it does).
pub fn measure(cmd: Command, marker: &str) -> Sample {
    measure_expecting(cmd, marker, 0)
}

/// As [`measure`], for a command whose expected exit status is `expected`.
// The child is reaped by wait4 (for its rusage), not by std's wait.
#[allow(clippy::zombie_processes)]
pub fn measure_expecting(mut cmd: Command, marker: &str, expected: i32) -> Sample {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut marker_ms = None;
    let stdout = child.stdout.take().expect("stdout");
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if marker_ms.is_none() && line.contains(marker) {
            marker_ms = Some(start.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child and fills the rusage we own.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let exit_ms = start.elapsed().as_secs_f64() * 1000.0;
    let touched_kib = stderr
        .lines()
        .find(|l| l.starts_with("guest-memory-touched"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok());
    let boot_timer_ms = stderr
        .lines()
        .find(|l| l.starts_with("boot-timeline boot_timer"))
        .and_then(|l| l.split_whitespace().nth(2)?.parse().ok());
    Sample {
        marker_ms,
        exit_ms,
        rss_kib: usage.ru_maxrss as u64,
        touched_kib,
        boot_timer_ms,
        ok: pid > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == expected,
    }
}

/// An OCI runtime with two bundles on one busybox rootfs: `once` prints the marker
/// and exits, `stay` prints it and sleeps (for density).
pub struct Oci {
    pub name: &'static str,
    state: PathBuf,
    once: PathBuf,
    stay: PathBuf,
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

impl Oci {
    /// Builds the bundles under `dir` and checks one run; Err says why not.
    pub fn prepare(name: &'static str, dir: &Path) -> Result<Self, String> {
        which(name).ok_or(format!("not installed (apt-get install {name})"))?;
        let base = dir.join(name);
        let rootfs = base.join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).map_err(|e| e.to_string())?;
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
            .map_err(|e| format!("cannot copy /bin/busybox (busybox-static): {e}"))?;
        let rt = Self {
            name,
            state: base.join("state"),
            once: base.join("once"),
            stay: base.join("stay"),
        };
        let marker = format!("echo {MARKER}");
        rt.bundle(&rt.once, &rootfs, &["/bin/busybox", "sh", "-c", &marker])?;
        let stay = format!("echo {MARKER}; exec /bin/busybox sleep 120");
        rt.bundle(&rt.stay, &rootfs, &["/bin/busybox", "sh", "-c", &stay])?;
        let trial = rt
            .command("mvb-trial", false)
            .output()
            .map_err(|e| e.to_string())?;
        if !String::from_utf8_lossy(&trial.stdout).contains(MARKER) {
            let err = String::from_utf8_lossy(&trial.stderr);
            return Err(format!(
                "its container does not start here: {}",
                err.lines().next().unwrap_or("no output")
            ));
        }
        Ok(rt)
    }

    fn bundle(&self, bundle: &Path, rootfs: &Path, args: &[&str]) -> Result<(), String> {
        std::fs::create_dir_all(bundle).map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(bundle.join("config.json"));
        let spec = Command::new(self.name)
            .arg("spec")
            .current_dir(bundle)
            .output()
            .map_err(|e| e.to_string())?;
        if !spec.status.success() {
            return Err(format!("{} spec failed", self.name));
        }
        let path = bundle.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        let mut c: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        c["process"]["args"] = serde_json::json!(args);
        c["process"]["terminal"] = serde_json::json!(false);
        c["root"]["path"] = serde_json::json!(rootfs);
        c["root"]["readonly"] = serde_json::json!(true);
        std::fs::write(&path, c.to_string()).map_err(|e| e.to_string())
    }

    /// `NAME run` of container `id` (the `stay` bundle if `stay`).
    pub fn command(&self, id: &str, stay: bool) -> Command {
        let mut c = Command::new(self.name);
        c.arg("--root").arg(&self.state).args(["run", "-b"]);
        c.arg(if stay { &self.stay } else { &self.once }).arg(id);
        c
    }

    /// Kills container `id`.
    pub fn kill(&self, id: &str) {
        let _ = Command::new(self.name)
            .arg("--root")
            .arg(&self.state)
            .args(["kill", id, "KILL"])
            .output();
    }

    /// Removes what density runs left.
    pub fn cleanup(&self, count: usize) {
        for i in 0..count {
            let _ = Command::new(self.name)
                .arg("--root")
                .arg(&self.state)
                .args(["delete", "-f", &format!("mvd-{i}")])
                .output();
        }
    }
}

/// RSS of `pid` and all its descendants, KiB.
fn tree_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let own: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    let mut total = own;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                total += tree_rss_kib(c);
            }
        }
    }
    total
}

/// Starts `count` instances at once, waits for all markers (60 s at most), measures
/// their memory, then stops and reaps them.
pub fn density(
    name: &str,
    count: usize,
    start: impl Fn(usize) -> Command,
    stop: impl Fn(usize, &Child),
    marker: &str,
) -> Density {
    let t0 = Instant::now();
    let (tx, rx) = mpsc::channel();
    let mut children = Vec::new();
    for i in 0..count {
        let mut cmd = start(i);
        let Ok(mut child) = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
        else {
            continue;
        };
        let out = child.stdout.take().expect("stdout");
        let tx = tx.clone();
        let marker = marker.to_string();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(out).lines().map_while(Result::ok);
            if lines.any(|l| l.contains(&marker)) {
                let _ = tx.send(Instant::now());
            }
            lines.for_each(drop);
        });
        children.push((i, child));
    }
    let mut last = t0;
    let mut ready = 0;
    while ready < children.len() {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(t) => {
                last = last.max(t);
                ready += 1;
            }
            Err(_) => break,
        }
    }
    let total: u64 = children.iter().map(|(_, c)| tree_rss_kib(c.id())).sum();
    for (i, c) in &children {
        stop(*i, c);
    }
    for (_, mut c) in children {
        let _ = c.wait();
    }
    Density {
        name: name.to_string(),
        count,
        ready,
        seconds: (last - t0).as_secs_f64(),
        kib_per_instance: total / count.max(1) as u64,
    }
}
