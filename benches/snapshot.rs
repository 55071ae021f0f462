//! Snapshot and restore benchmarks that print numbers (`cargo bench --bench snapshot --
//! [OPTIONS]`), on this host's KVM with the freestanding test guest counting on its
//! serial port:
//!
//! - snapshot create: pause to a complete snapshot directory, through the library, and
//!   the state file's size;
//! - restore: `minivmm --restore DIR` from its start to its vCPUs running (its own boot
//!   timeline, `first_kvm_run`), and from the spawn to the guest's first line after
//!   the restore, for 128 MiB and 1 GiB guests (flat in guest size: memory is mapped,
//!   not read);
//! - memory: N clones of one 256 MiB snapshot running at once, their total RSS and PSS
//!   (each maps the memory file private: what no clone wrote is shared);
//! - with `--peer-firecracker PATH`: Firecracker's snapshot create and load of the same
//!   guest in the same run (its API socket; load with `resume_vm`), to its first line,
//!   and the RSS and PSS of N of its clones running at once.
//!
//! Options: `--runs N` (default 10), `--clones N` (default 20).
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code: a failed unwrap fails the bench, as clippy.toml allows in unit tests

#[path = "shared/args.rs"]
mod args;
#[path = "shared/chart.rs"]
mod chart;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "snapshot/firecracker.rs"]
mod firecracker;
#[path = "shared/output.rs"]
mod output;
#[path = "shared/stats.rs"]
mod stats;

use common::{scratch, test_guest, MINIVMM};
use stats::Stats;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vmm::VmBuilder;

/// The guest: counts every 5 ms on its serial port, without the boot-timer write
/// (Firecracker's boot page tables do not map minivmm's timer address).
const GUEST_ARGS: &str = "guest.test=count count.ms=5 boot_timer=0";

/// Boots the counting guest with `mem_mib`, pauses it after a few ticks and snapshots
/// it into `dir`; the time from the pause to a complete directory.
fn snapshot_of(mem_mib: u64, dir: &Path) -> Duration {
    let mut vm = VmBuilder::new(test_guest())
        .cmdline(GUEST_ARGS)
        .memory_mib(mem_mib)
        .rng(false)
        .console_stream()
        .start()
        .expect("start the guest");
    let mut console = vm.take_console().unwrap();
    assert!(console
        .wait_for("tick 3", Duration::from_secs(10))
        .is_some());
    let t = Instant::now();
    vm.pause().unwrap();
    vm.snapshot(dir).unwrap();
    let took = t.elapsed();
    vm.stop();
    vm.wait();
    took
}

/// Waits until `child` prints a line containing `marker` on stdout; the time since
/// `start`. The rest of its output is drained by a thread, so that the guest's console
/// keeps working (as it would for a user) while the clone is measured.
fn until_line(child: &mut Child, marker: &str, start: Instant) -> Duration {
    let out = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(out).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains(marker) => {
                let took = start.elapsed();
                std::thread::spawn(move || lines.for_each(drop));
                return took;
            }
            Some(Ok(_)) => {}
            _ => panic!("the restored guest printed no '{marker}'"),
        }
    }
}

/// One `minivmm --restore`: (start to vCPUs running per its timeline, spawn to the
/// guest's first tick).
fn restore_once(dir: &Path) -> (f64, f64) {
    let start = Instant::now();
    let mut child = Command::new(MINIVMM)
        .args(["--restore", dir.to_str().unwrap(), "--boot-timeline"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn minivmm --restore");
    let first = until_line(&mut child, "tick", start);
    // SAFETY: signals our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let running = stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("boot-timeline first_kvm_run")?
                .trim()
                .strip_suffix("ms")?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or_else(|| panic!("no first_kvm_run in:\n{stderr}"));
    (running, first.as_secs_f64() * 1e3)
}

/// Prints one figure and records it for the JSON and chart.
pub fn row(name: &str, unit: &str, s: &Stats) {
    stats::row(name, unit, s);
    output::record(name, unit, s.median, s.min, s.max, s.n);
}

fn restore_figures(mem_mib: u64, runs: usize) {
    let dir = scratch(&format!("bench-snapshot-{mem_mib}")).join("snap");
    let created = snapshot_of(mem_mib, &dir);
    let state_kib = std::fs::metadata(dir.join("state")).unwrap().len() / 1024;
    println!(
        "minivmm {mem_mib:>5} MiB: snapshot created in {:.1} ms (state file {state_kib} KiB, memory file {mem_mib} MiB)",
        created.as_secs_f64() * 1e3
    );
    let (mut running, mut first) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let (r, f) = restore_once(&dir);
        running.push(r);
        first.push(f);
    }
    row(
        &format!("minivmm --restore {mem_mib} MiB: start to vCPUs running"),
        "ms",
        &Stats::of(running).unwrap(),
    );
    row(
        &format!("minivmm --restore {mem_mib} MiB: spawn to first guest line"),
        "ms",
        &Stats::of(first).unwrap(),
    );
}

/// Rss and Pss (KiB) of process `pid`, from smaps_rollup.
pub fn rss_pss(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

/// Prints the total RSS and PSS of `who`'s running clone processes; an error if one
/// has ended (it would count as nothing).
pub fn report_clones(who: &str, children: &mut [Child]) -> Result<(), String> {
    let (mut rss, mut pss) = (0, 0);
    for c in children.iter_mut() {
        if let Ok(Some(status)) = c.try_wait() {
            return Err(format!("a clone ended before it was measured ({status})"));
        }
        let (r, p) = rss_pss(c.id());
        rss += r;
        pss += p;
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "{who}: {} clones of one 256 MiB snapshot running: RSS total {:.1} MiB, PSS total {:.1} MiB ({:.1} MiB PSS per clone)",
        children.len(),
        mib(rss),
        mib(pss),
        mib(pss) / children.len().max(1) as f64
    );
    Ok(())
}

fn clone_memory(clones: usize) {
    let dir = scratch("bench-snapshot-clones").join("snap");
    snapshot_of(256, &dir);
    let mut children = Vec::new();
    for _ in 0..clones {
        let start = Instant::now();
        let mut child = Command::new(MINIVMM)
            .args(["--restore", dir.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn a clone");
        until_line(&mut child, "tick", start);
        children.push(child);
    }
    report_clones("minivmm", &mut children).unwrap();
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
}

fn main() {
    if !common::kvm_available("snapshot bench") {
        return;
    }
    let runs = args::number("--runs", 10);
    let clones = args::number("--clones", 20);
    println!("== snapshot and restore: the counting test guest on this host's KVM");
    for mem in [128, 1024] {
        restore_figures(mem, runs);
    }
    clone_memory(clones);
    let peer = args::value("--peer-firecracker");
    match &peer {
        None => println!("firecracker: skipped (no --peer-firecracker PATH given)"),
        Some(path) => {
            let dir = scratch("bench-snapshot-firecracker");
            for mem in [128, 1024] {
                if let Err(e) =
                    firecracker::figures(Path::new(&path), &test_guest(), mem, runs, &dir)
                {
                    println!("firecracker {mem} MiB: not measured: {e}");
                }
            }
            if let Err(e) = firecracker::clone_memory(Path::new(&path), &test_guest(), clones, &dir)
            {
                println!("firecracker clones: not measured: {e}");
            }
        }
    }
    let out = common::repo().join("target/snapshot-bench");
    let _ = std::fs::create_dir_all(&out);
    if let Err(e) = output::write(&out, "snapshot", "minivmm snapshot restore", "ms") {
        println!("cannot write the figures: {e}");
    }
}
