//! Boot benchmarks that print numbers (run with `cargo bench --bench boot -- [OPTIONS]`):
//!
//! - VMM overhead: the freestanding test guest, exec to exit, wall time and peak RSS of
//!   the minivmm process (wait4 rusage), at --mem 128M and 2G. Always runs.
//! - `--linux`: time to `Run /init` of the resources/ Linux guest on this host's KVM
//!   (slow where KVM emulates guest code: minutes).
//! - `--nested`: time to user space (boot-timer write) of a 2-vCPU Linux guest inside the
//!   nested harness, from minivmm's boot timeline; virtio-blk (dd) and virtio-net
//!   (wget/nc) throughput from guest user space, beside QEMU's when packed.
//!
//!   Side by side in the same L1: runc starting a busybox container, and with
//!   `--peer-firecracker PATH` Firecracker booting the same guest, alternating with
//!   minivmm; launch to ready and to exit are printed with their ratios.
//!
//! Options: `--runs N` (default 20).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test, as clippy.toml allows in unit tests

#[path = "shared/chart.rs"]
mod chart;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "shared/output.rs"]
mod output;

use common::{guest_initramfs, guest_kernel, repo, scratch, test_guest, MINIVMM};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One measured run: wall time, peak RSS (KiB), exit status, and minivmm's own
/// "exit" milestone (ms since its main(): the VM stopped, before the kernel tears it down).
struct Sample {
    wall: Duration,
    rss_kib: u64,
    status: i32,
    vm_stopped_ms: Option<f64>,
}

/// Runs a command with stderr captured, reaping it with wait4 for its rusage.
// The child is reaped by wait4 (for its rusage), not by std's wait.
#[allow(clippy::zombie_processes)]
fn measure(cmd: &mut Command) -> Sample {
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn minivmm");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child and fills the rusage we own.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    assert_eq!(pid, child.id() as i32, "wait4 failed");
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    let vm_stopped_ms = stderr
        .lines()
        .find(|l| l.starts_with("boot-timeline exit "))
        .and_then(|l| l.split_whitespace().nth(2)?.parse().ok());
    Sample {
        wall,
        rss_kib: usage.ru_maxrss as u64,
        // Killed by a signal: 128 + N, as shells report it (never 0).
        status: if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        },
        vm_stopped_ms,
    }
}

/// Ends the bench with status 1: something did not work (not a slow figure).
fn fail(why: &str) -> ! {
    eprintln!("boot bench FAILED: {why}");
    std::process::exit(1);
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn summary(name: &str, unit: &str, mut v: Vec<f64>) {
    v.sort_by(f64::total_cmp);
    output::record(
        name,
        unit,
        percentile(&v, 0.5),
        v[0],
        v[v.len() - 1],
        v.len(),
    );
    println!(
        "{name:<34} median {:>8.2} {unit}  p90 {:>8.2} {unit}  min {:>8.2}  max {:>8.2}  (n={})",
        percentile(&v, 0.5),
        percentile(&v, 0.9),
        v[0],
        v[v.len() - 1],
        v.len()
    );
}

fn overhead(runs: usize) {
    let guest = test_guest();
    println!("== VMM overhead: test guest, exec to exit ({runs} runs each)");
    for mem in ["128M", "2G"] {
        let (mut wall, mut rss, mut stopped, mut teardown) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            let s = measure(Command::new(MINIVMM).args(["--kernel"]).arg(&guest).args([
                "--mem",
                mem,
                "--boot-timeline",
            ]));
            if s.status != 0 {
                fail(&format!(
                    "minivmm --mem {mem} ended with status {}",
                    s.status
                ));
            }
            let wall_ms = s.wall.as_secs_f64() * 1e3;
            wall.push(wall_ms);
            rss.push(s.rss_kib as f64 / 1024.0);
            if let Some(ms) = s.vm_stopped_ms {
                stopped.push(ms);
                teardown.push(wall_ms - ms);
            }
        }
        summary(&format!("wall time, --mem {mem}"), "ms ", wall);
        summary("  of which main() to VM stopped", "ms ", stopped);
        summary("  of which the rest (KVM teardown)", "ms ", teardown);
        summary(&format!("peak RSS, --mem {mem}"), "MiB", rss);
    }
    println!(
        "note: on nested hosts the kernel's VM teardown (in-kernel PIC/IOAPIC/PIT io-bus \
         unregistration, one expedited SRCU grace period each) dominates the wall time"
    );
}

fn linux_direct() {
    let Some(kernel_dir) = guest_kernel("bench --linux") else {
        return;
    };
    let kernel = kernel_dir.join("vmlinux");
    let initrd = guest_initramfs(&scratch("bench-linux"), false);
    println!("== Linux guest on this host's KVM: vmlinux, raw initramfs, 512M, 1 vCPU");
    let start = Instant::now();
    let mut child = Command::new(MINIVMM)
        .args([
            "--kernel",
            path(&kernel),
            "--initrd",
            path(&initrd),
            "--mem",
            "512M",
            "--boot-timeline",
        ])
        .args(["--cmdline-preset", "emulated-kvm"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut reached = false;
    for line in stdout.lines().map_while(Result::ok) {
        if line.contains("Run /init as init process") {
            reached = true;
            println!(
                "Run /init: {:.1} s after exec (guest clock: {})",
                start.elapsed().as_secs_f64(),
                line.trim()
            );
        }
    }
    let out = child.wait_with_output().expect("wait");
    print!("{}", String::from_utf8_lossy(&out.stderr));
    if !reached {
        fail(&format!(
            "the Linux guest never printed 'Run /init' (minivmm ended with {})",
            out.status
        ));
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Launch to ready (guest user space, or the container's line) and to exit on L1's
/// clock: minivmm against Firecracker and runc, from the side-by-side sections.
fn side_by_side(text: &str, peer: bool) {
    println!(
        "== Side by side in the same L1 (L1 clock): minivmm and Firecracker boot the same vmlinux, \
         initramfs and command line with 2 vCPUs and 256 MiB; runc starts a busybox container"
    );
    if !peer {
        println!("Firecracker: no --peer-firecracker PATH given; left out");
    }
    let figures = |prefix: &str, key: &str| -> Vec<f64> {
        text.split("=== BEGIN ")
            .filter(|s| s.starts_with(prefix))
            .filter_map(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix(key))?
                    .trim()
                    .parse()
                    .ok()
            })
            .map(|s: f64| s * 1e3)
            .collect()
    };
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        percentile(&v, 0.5)
    };
    for (what, key) in [
        ("launch to ready", "L1: launch to ready s="),
        ("launch to exit", "L1: launch to exit s="),
    ] {
        let ours = figures("side-minivmm-", key);
        if ours.is_empty() {
            fail(&format!("side by side: no minivmm '{what}' figures"));
        }
        let base = median(ours.clone());
        summary(&format!("minivmm (Linux L2) {what}"), "ms ", ours);
        for (name, prefix, wanted) in [
            ("firecracker (Linux L2)", "side-firecracker-", peer),
            ("runc (busybox container)", "side-runc-", true),
        ] {
            let theirs = figures(prefix, key);
            if theirs.is_empty() {
                if wanted {
                    fail(&format!("side by side: no {name} '{what}' figures"));
                }
                continue;
            }
            let ratio = base / median(theirs.clone());
            summary(&format!("{name} {what}"), "ms ", theirs);
            println!("ratio minivmm / {name}, {what} (medians): {ratio:.2}");
        }
    }
}

fn nested(peer: Option<&str>) {
    let dir = scratch("bench-nested");
    let scenario = repo().join("benches/nested-scenario.sh");
    let log = dir.join("l1.log");
    let mut harness = Command::new(repo().join("tests/nested/harness.sh"));
    if let Some(path) = peer {
        harness.env("MINIVMM_NESTED_FIRECRACKER", path);
    }
    let ok = harness
        .env("MINIVMM_NESTED_QEMU", "1")
        .env("MINIVMM_NESTED_RUNC", "1")
        .arg(&scenario)
        .arg(&log)
        .status()
        .expect("harness");
    assert!(ok.success(), "nested harness failed");
    let text = std::fs::read_to_string(&log)
        .expect("log")
        .replace('\r', "");
    println!("== Nested harness (emulated L1, KVM on emulated SVM): 2-vCPU Linux to user space");
    // Milestones of the 2-vCPU boots only (the disk-bench guest has its own section).
    let boots: String = text
        .split("=== BEGIN ")
        .filter(|section| section.starts_with("elf-2cpu"))
        .collect();
    let milestone = |name: &str| -> Vec<f64> {
        boots
            .lines()
            .filter(|l| l.starts_with(&format!("boot-timeline {name} ")))
            .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
            .collect()
    };
    let (timer, exit) = (milestone("boot_timer"), milestone("exit"));
    assert!(!timer.is_empty(), "no boot-timer milestone in:\n{text}");
    summary("user space (boot timer), L1 clock", "ms ", timer);
    summary("minivmm start to exit, L1 clock", "ms ", exit);
    side_by_side(&text, peer.is_some());
    // The same guest and dd under minivmm and under QEMU, each in its own section.
    let section = |name: &str| -> String {
        text.split("=== BEGIN ")
            .find(|s| s.starts_with(name))
            .unwrap_or("")
            .to_string()
    };
    let rates = |sec: &str, key: &str| -> Vec<f64> {
        sec.lines()
            .filter(|l| l.contains("MINIVMM-GUEST: dd direct"))
            .filter_map(|l| l.split(key).nth(1)?.split_whitespace().next()?.parse().ok())
            .collect()
    };
    println!("== virtio-blk from guest user space: dd 1 MiB x 64, and random 4 KiB for 3 s, O_DIRECT, L1 clock");
    for (vmm, name) in [
        ("minivmm", "disk-bench\n"),
        ("QEMU microvm", "qemu-disk-bench\n"),
        ("Firecracker", "firecracker-disk-bench\n"),
    ] {
        let sec = section(name);
        if vmm == "Firecracker" && peer.is_none() {
            continue;
        }
        let (w, r) = (rates(&sec, "write="), rates(&sec, "read="));
        if w.is_empty() || r.is_empty() {
            fail(&format!("{vmm}: no virtio-blk result in {}", log.display()));
        }
        summary(&format!("{vmm} write"), "MiB/s", w);
        summary(&format!("{vmm} read"), "MiB/s", r);
        // Random 4 KiB, one request at a time, O_DIRECT (the guest's iobench).
        let iops = |key: &str| -> Vec<f64> {
            sec.lines()
                .filter(|l| l.contains("MINIVMM-GUEST: rand 4KiB direct"))
                .filter_map(|l| l.split(key).nth(1)?.split_whitespace().next()?.parse().ok())
                .collect()
        };
        let (rr, rw) = (iops("read="), iops("write="));
        if rr.is_empty() || rw.is_empty() {
            fail(&format!(
                "{vmm}: no random 4 KiB result in {}",
                log.display()
            ));
        }
        summary(&format!("{vmm} random 4 KiB read"), "IOPS", rr);
        summary(&format!("{vmm} random 4 KiB write"), "IOPS", rw);
    }
    println!(
        "== virtio-net from guest user space: wget 32 MiB from L1, nc 8 MiB to L1, over a tap, \
         L1 clock"
    );
    let sections = |prefix: &str| -> String {
        text.split("=== BEGIN ")
            .filter(|s| s.starts_with(prefix))
            .collect()
    };
    let net_rates = |sec: &str, key: &str| -> Vec<f64> {
        sec.lines()
            .filter(|l| l.contains("MINIVMM-GUEST: net download="))
            .filter_map(|l| l.split(key).nth(1)?.split_whitespace().next()?.parse().ok())
            .collect()
    };
    for (vmm, prefix) in [
        ("minivmm", "net-bench-"),
        ("QEMU microvm", "qemu-net-bench-"),
        ("Firecracker", "firecracker-net-bench-"),
    ] {
        if vmm == "Firecracker" && peer.is_none() {
            continue;
        }
        let sec = sections(prefix);
        let (down, up) = (net_rates(&sec, "download="), net_rates(&sec, "upload="));
        if down.is_empty() || up.is_empty() {
            fail(&format!("{vmm}: no virtio-net result in {}", log.display()));
        }
        summary(&format!("{vmm} download"), "MiB/s", down);
        summary(&format!("{vmm} upload"), "MiB/s", up);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    if !common::kvm_available("boot bench") {
        return;
    }
    overhead(runs);
    if args.iter().any(|a| a == "--linux") {
        linux_direct();
    }
    if args.iter().any(|a| a == "--nested") {
        let peer = args
            .iter()
            .position(|a| a == "--peer-firecracker")
            .and_then(|i| args.get(i + 1));
        nested(peer.map(String::as_str));
    }
    if let Err(e) = output::write(
        &repo().join("target"),
        "boot-bench",
        "boot bench (ms, log scale; bar = median, line = min-max)",
        "ms",
    ) {
        fail(&e);
    }
}
