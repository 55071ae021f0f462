//! The guest agent path, in the nested harness (guest user space runs only there on
//! these hosts): `examples/exec_bench.rs` runs in L1 against an L2 (1 vCPU unless --cpus) with the
//! agent and prints start to first exec answered, the round trip of `true` (p50 and
//! p99 over `--runs`), vsock throughput both ways through exec's streams (`--mib`),
//! and `--concurrent` commands at once. Figures go to target/exec-bench.json.
//!
//! `cargo bench --bench exec -- [--runs 200] [--concurrent 32] [--mib 32] [--cpus 1]`
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code: a failed unwrap fails the bench

#[path = "shared/args.rs"]
mod args;
#[path = "shared/chart.rs"]
mod chart;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "shared/output.rs"]
mod output;

use common::{repo, scratch};
use std::process::Command;

fn figure(text: &str, key: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with("EXEC-BENCH "))
        .flat_map(|l| l.split_whitespace())
        .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no EXEC-BENCH {key}= in the L1 log:\n{text}"))
}

fn main() {
    let runs = args::number("--runs", 200);
    let concurrent = args::number("--concurrent", 32);
    let mib = args::number("--mib", 32);
    // One vCPU by default: on TCG's emulated SVM a 2-vCPU L2 now and then
    // triple-faults (docs/DESIGN.md, nested harness).
    let cpus = args::number("--cpus", 1);
    let dir = scratch("bench-exec");
    let scenario = dir.join("scenario.sh");
    std::fs::write(
        &scenario,
        format!(
            "echo '=== BEGIN exec-bench'\n\
             exec_bench --kernel /l2/vmlinux --initrd /l2/initramfs.cpio --cpus {cpus} \
             --cmdline 'noxsave minivmm.action=agent' --runs {runs} --concurrent {concurrent} --mib {mib}\n\
             echo \"=== END exec-bench rc=$?\"\n"
        ),
    )
    .unwrap();
    let log = dir.join("l1.log");
    let ok = Command::new(repo().join("tests/nested/harness.sh"))
        .arg(&scenario)
        .arg(&log)
        .status()
        .expect("harness");
    assert!(ok.success(), "nested harness failed");
    let text = std::fs::read_to_string(&log).unwrap().replace('\r', "");
    assert!(
        text.contains("=== END exec-bench rc=0"),
        "exec_bench failed:\n{text}"
    );
    println!("== Guest agent over vsock, nested harness (emulated L1, {cpus}-vCPU L2)");
    let rows = [
        (
            "start to first exec answered",
            "start_to_first_exec_ms",
            "ms",
        ),
        ("exec `true` round trip p50", "rtt_ms_p50", "ms"),
        ("exec `true` round trip p99", "rtt_ms_p99", "ms"),
        (
            "vsock guest to host (stdout)",
            "vsock_mib_s_guest_to_host",
            "MiB/s",
        ),
        (
            "vsock host to guest (stdin)",
            "vsock_mib_s_host_to_guest",
            "MiB/s",
        ),
        ("concurrent execs, all answered", "concurrent_ms", "ms"),
    ];
    for (name, key, unit) in rows {
        let v = figure(&text, key);
        println!("{name:<34} {v:>9.2} {unit}");
        output::record(name, unit, v, v, v, 1);
    }
    let ok = figure(&text, "concurrent_ok");
    println!("concurrent execs correct           {ok:>9} of {concurrent}");
    assert_eq!(
        ok as usize, concurrent,
        "every concurrent exec must answer right"
    );
    println!("(round trips over {runs} runs; {mib} MiB each way)");
    if let Err(e) = output::write(
        &repo().join("target"),
        "exec-bench",
        "guest agent over vsock, nested (ms)",
        "ms",
    ) {
        panic!("{e}");
    }
}
