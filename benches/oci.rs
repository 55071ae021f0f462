//! minivmm-oci against runc, the same busybox image through the same containerd in
//! the nested harness's L1 (guest user space runs only there on these hosts):
//! `ctr run` to the container's first output line, per runtime, `--rounds` times, and
//! the host memory `--density` sleeping containers take, per container (L1's
//! MemAvailable before and after; the RSS of the process the shim waits on: the VMM
//! process for minivmm-oci, the container's process for runc). Figures go to
//! target/oci-bench.json.
//!
//! `cargo bench --bench oci -- [--rounds 5] [--density 3]`
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code: a failed unwrap fails the bench

#[path = "shared/args.rs"]
mod args;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "shared/stats.rs"]
mod stats;

use common::nested_log::numbers;
use common::{repo, scratch};
use std::process::Command;

/// `key=` values of the "OCI-BENCH: WHAT runtime=RT" lines.
fn figures(log: &str, what: &str, runtime: &str, key: &str) -> Vec<f64> {
    numbers(log, &format!("OCI-BENCH: {what} runtime={runtime} "), key)
}

fn main() {
    let rounds = args::number("--rounds", 5);
    let density = args::number("--density", 3);
    let dir = scratch("bench-oci");
    let scenario = dir.join("scenario.sh");
    let body = std::fs::read_to_string(repo().join("benches/oci-scenario.sh")).unwrap();
    let settings = format!("OCI_ROUNDS={rounds}\nOCI_DENSITY={density}\n");
    std::fs::write(&scenario, settings + &body).unwrap();
    let log_path = dir.join("l1.log");
    let ok = Command::new(repo().join("tests/nested/harness.sh"))
        .arg(&scenario)
        .arg(&log_path)
        .env("MINIVMM_NESTED_CONTAINERD", "1")
        .env(
            "MINIVMM_NESTED_TIMEOUT",
            std::env::var("MINIVMM_NESTED_TIMEOUT").unwrap_or_else(|_| "900".into()),
        )
        .status()
        .expect("harness");
    let log = std::fs::read_to_string(&log_path)
        .expect("log")
        .replace('\r', "");
    assert!(ok.success(), "nested harness failed:\n{log}");
    assert!(
        log.contains("=== END oci-bench rc=0"),
        "the bench failed:\n{log}"
    );
    let first: Vec<(String, stats::Stats)> = ["minivmm", "runc"]
        .iter()
        .map(|rt| {
            let v = figures(&log, "first-line", rt, "ms");
            assert_eq!(v.len(), rounds, "{rt}: a run printed no first line:\n{log}");
            (rt.to_string(), stats::Stats::of(v).unwrap())
        })
        .collect();
    println!(
        "== ctr run to the first output line, busybox image, containerd 1.6 in the nested L1 \
         (qemu TCG), {rounds} round(s)"
    );
    println!(
        "{:<14} {:>10} {:>10} {:>10}",
        "runtime", "median ms", "min ms", "max ms"
    );
    for (rt, s) in &first {
        println!(
            "{:<14} {:>10.0} {:>10.0} {:>10.0}",
            rt, s.median, s.min, s.max
        );
    }
    let ratio = first[0].1.median / first[1].1.median.max(1.0);
    println!("minivmm-oci / runc: {ratio:.1}x");
    println!("== host memory per container, {density} sleeping containers each");
    println!(
        "{:<14} {:>22} {:>22}",
        "runtime", "MemAvailable drop KiB", "waited-on RSS KiB"
    );
    let mut json = serde_json::json!({"rounds": rounds, "density": density});
    for (rt, s) in &first {
        let drop = figures(&log, "memory", rt, "per_container_kib");
        let rss = figures(&log, "memory", rt, "pid_rss_kib");
        assert!(
            !drop.is_empty() && !rss.is_empty(),
            "{rt}: no memory line:\n{log}"
        );
        println!("{:<14} {:>22.0} {:>22.0}", rt, drop[0], rss[0]);
        json[rt] = serde_json::json!({
            "first_line_ms": s.json(),
            "memory_per_container_kib": drop[0], "rss_per_container_kib": rss[0],
        });
    }
    let out = repo().join("target/oci-bench.json");
    std::fs::write(&out, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    println!("figures: {}", out.display());
}
