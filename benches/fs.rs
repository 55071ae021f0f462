//! virtio-fs against virtio-blk, in the nested harness (guest user space runs only there
//! on these hosts): one L2 with a share of an L1 directory and an ext4 disk image, both
//! on L1's in-memory root, runs the same workload on each (`fs_bench` in
//! resources/guest/init): sequential write of `--mib` MiB in 1 MiB blocks with fsync,
//! sequential read of it with the guest's page cache dropped, and `--files` small files
//! created then synced; `--rounds` times, alternating. Prints a table of medians;
//! figures go to target/fs-bench.json.
//!
//! `cargo bench --bench fs -- [--mib 32] [--files 300] [--rounds 3]`
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code: a failed unwrap fails the bench

#[path = "shared/args.rs"]
mod args;
#[path = "shared/chart.rs"]
mod chart;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "shared/output.rs"]
mod output;
#[path = "shared/stats.rs"]
mod stats;

use common::nested_log::numbers;
use common::{repo, scratch};
use std::process::Command;

/// The figures of `target` ("fs" or "blk") for `key`, one per round.
fn figures(log: &str, target: &str, key: &str) -> Vec<f64> {
    numbers(log, &format!("MINIVMM-GUEST: fs-bench {target} "), key)
}

fn main() {
    let mib = args::number("--mib", 32);
    let files = args::number("--files", 300);
    let rounds = args::number("--rounds", 3);
    let dir = scratch("bench-fs");
    let scenario = dir.join("scenario.sh");
    let body = std::fs::read_to_string(repo().join("benches/fs-scenario.sh")).unwrap();
    let settings = format!(
        "FS_BENCH_ARGS='minivmm.bench_mib={mib} minivmm.bench_files={files} minivmm.bench_rounds={rounds}'\n"
    );
    std::fs::write(&scenario, settings + &body).unwrap();
    let log_path = dir.join("l1.log");
    let ok = Command::new(repo().join("tests/nested/harness.sh"))
        .arg(&scenario)
        .arg(&log_path)
        .status()
        .expect("harness");
    let log = std::fs::read_to_string(&log_path)
        .expect("log")
        .replace('\r', "");
    assert!(ok.success(), "nested harness failed:\n{log}");
    assert!(
        log.contains("=== END fs-bench rc=0"),
        "the bench guest failed:\n{log}"
    );
    println!(
        "== virtio-fs share vs virtio-blk ext4, nested L2 (1 vCPU, 256 MiB), {mib} MiB sequential, \
         {files} small files, {rounds} round(s), medians"
    );
    println!(
        "{:<40} {:>16} {:>16} {:>8}",
        "workload", "virtio-fs share", "virtio-blk ext4", "fs/blk"
    );
    let rows = [
        ("sequential write (1 MiB, fsync)", "write_mib_s", "MiB/s"),
        ("sequential read (cache dropped)", "read_mib_s", "MiB/s"),
        ("small file creates (then sync)", "creates_per_s", "/s"),
    ];
    for (name, key, unit) in rows {
        let fs = stats::Stats::of(figures(&log, "fs", key));
        let blk = stats::Stats::of(figures(&log, "blk", key));
        let (Some(fs), Some(blk)) = (fs, blk) else {
            panic!("no {key} figures in:\n{log}");
        };
        println!(
            "{:<40} {:>10.1} {unit:<5} {:>10.1} {unit:<5} {:>8.2}",
            name,
            fs.median,
            blk.median,
            fs.median / blk.median
        );
        output::record(
            &format!("{name}: virtio-fs"),
            unit,
            fs.median,
            fs.min,
            fs.max,
            fs.n,
        );
        output::record(
            &format!("{name}: virtio-blk"),
            unit,
            blk.median,
            blk.min,
            blk.max,
            blk.n,
        );
    }
    if let Err(e) = output::write(
        &repo().join("target"),
        "fs-bench",
        "virtio-fs vs virtio-blk (nested)",
        "MiB/s",
    ) {
        eprintln!("fs bench: {e}");
    }
}
