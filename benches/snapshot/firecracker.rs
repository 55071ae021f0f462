//! Firecracker's snapshot create and load of the same counting test guest, through its
//! API socket (`--peer-firecracker PATH`, a binary the user has): the template booted
//! from a config file, paused and snapshotted (Full); each load a new process given
//! `PUT /snapshot/load` with `resume_vm`, timed from its spawn to the guest's first
//! line on the serial console; and N loaded clones running at once, their RSS and PSS.

use crate::row;
use crate::stats::Stats;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One HTTP/1.1 request over the API socket; the status code, or the error body.
fn request(socket: &Path, method: &str, path: &str, body: &str) -> Result<(), String> {
    let mut s = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    // Headers, then the body Content-Length gives (Firecracker answers 204 on success).
    loop {
        let n = s.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&reply);
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if reply.len() >= end + 4 + len {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&reply);
    let status = text.split_whitespace().nth(1).unwrap_or("");
    if status.starts_with('2') {
        Ok(())
    } else {
        Err(format!("{method} {path}: {}", text.trim()))
    }
}

fn spawn(binary: &Path, socket: &Path, config: Option<&Path>) -> Result<Child, String> {
    let _ = std::fs::remove_file(socket);
    let mut c = Command::new(binary);
    c.arg("--api-sock").arg(socket).args(["--level", "Error"]);
    if let Some(config) = config {
        c.arg("--config-file").arg(config);
    }
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", binary.display()))
}

fn wait_socket(socket: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(socket).is_err() {
        if Instant::now() > deadline {
            return Err("its API socket did not come up".into());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

/// Time from `start` to the first line with `marker` on the child's stdout, which is
/// then drained by a thread of its own: Firecracker ends when its console's pipe breaks.
fn until_line(child: &mut Child, marker: &str, start: Instant) -> Result<Duration, String> {
    let out = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(out).lines();
    for line in lines.by_ref() {
        match line {
            Ok(l) if l.contains(marker) => {
                let took = start.elapsed();
                std::thread::spawn(move || lines.for_each(drop));
                return Ok(took);
            }
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(format!("the guest printed no '{marker}'"))
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Boots the template from a config file, pauses it and snapshots it (Full) into
/// `dir`; the state and memory files, and how long the pause and create took.
fn create(
    binary: &Path,
    guest: &Path,
    mem_mib: u64,
    dir: &Path,
) -> Result<(PathBuf, PathBuf, Duration), String> {
    let config = dir.join(format!("fc-{mem_mib}.json"));
    let text = serde_json::json!({
        "boot-source": {
            "kernel_image_path": guest,
            "boot_args": format!("console=ttyS0 {}", super::GUEST_ARGS),
        },
        "machine-config": {"vcpu_count": 1, "mem_size_mib": mem_mib},
        "drives": [],
        "network-interfaces": [],
    });
    std::fs::write(&config, text.to_string()).map_err(|e| e.to_string())?;
    let (state, memory) = (
        dir.join(format!("fc-{mem_mib}.state")),
        dir.join(format!("fc-{mem_mib}.mem")),
    );
    let socket = dir.join("fc.sock");
    let mut template = spawn(binary, &socket, Some(&config))?;
    wait_socket(&socket)?;
    until_line(&mut template, "tick 3", Instant::now())?;
    let t = Instant::now();
    let made = request(&socket, "PATCH", "/vm", r#"{"state": "Paused"}"#).and_then(|()| {
        request(
            &socket,
            "PUT",
            "/snapshot/create",
            &serde_json::json!({"snapshot_type": "Full", "snapshot_path": state, "mem_file_path": memory}).to_string(),
        )
    });
    let created = t.elapsed();
    stop(template);
    made?;
    Ok((state, memory, created))
}

/// The `PUT /snapshot/load` body for a snapshot, resuming the VM.
fn load_body(state: &Path, memory: &Path) -> String {
    serde_json::json!({
        "snapshot_path": state,
        "mem_backend": {"backend_type": "File", "backend_path": memory},
        "resume_vm": true,
    })
    .to_string()
}

/// `clones` Firecracker processes loading one 256 MiB snapshot, running at once: their
/// total RSS and PSS, as for minivmm's clones.
pub fn clone_memory(binary: &Path, guest: &Path, clones: usize, dir: &Path) -> Result<(), String> {
    let (state, memory, _) = create(binary, guest, 256, dir)?;
    let load = load_body(&state, &memory);
    let mut children = Vec::new();
    let result = (|| {
        for i in 0..clones {
            let socket = dir.join(format!("fc-clone{i}.sock"));
            let start = Instant::now();
            let mut child = spawn(binary, &socket, None)?;
            wait_socket(&socket)?;
            let loaded = request(&socket, "PUT", "/snapshot/load", &load);
            let line = loaded.and_then(|()| until_line(&mut child, "tick", start));
            children.push(child);
            line?;
        }
        crate::report_clones("firecracker", &mut children)
    })();
    for c in children {
        stop(c);
    }
    result
}

/// Snapshot create and load figures for a `mem_mib` guest, printed as rows.
pub fn figures(
    binary: &Path,
    guest: &Path,
    mem_mib: u64,
    runs: usize,
    dir: &Path,
) -> Result<(), String> {
    let (state, memory, created) = create(binary, guest, mem_mib, dir)?;
    let socket = dir.join("fc.sock");
    println!(
        "firecracker {mem_mib:>5} MiB: snapshot created in {:.1} ms",
        created.as_secs_f64() * 1e3
    );
    let load = load_body(&state, &memory);
    let (mut loaded, mut first) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let start = Instant::now();
        let mut child = spawn(binary, &socket, None)?;
        wait_socket(&socket)?;
        request(&socket, "PUT", "/snapshot/load", &load)?;
        loaded.push(start.elapsed().as_secs_f64() * 1e3);
        let line = until_line(&mut child, "tick", start);
        stop(child);
        first.push(line?.as_secs_f64() * 1e3);
    }
    row(
        &format!("firecracker load {mem_mib} MiB: spawn to load answered"),
        "ms",
        &Stats::of(loaded).ok_or("no runs")?,
    );
    row(
        &format!("firecracker load {mem_mib} MiB: spawn to first guest line"),
        "ms",
        &Stats::of(first).ok_or("no runs")?,
    );
    Ok(())
}
