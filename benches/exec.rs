//! The guest agent path, in the nested harness (guest user space runs only there on
//! these hosts): `examples/exec_bench.rs` runs in L1 against an L2 (1 vCPU unless --cpus) with the
//! agent and prints start to first exec answered, the round trip of `true` (p50 and
//! p99 over `--runs`), vsock throughput both ways through exec's streams (`--mib`),
//! and `--concurrent` commands at once. In the same L1, `examples/snapshot_clones.rs`
//! snapshots a 128 MiB and a 1 GiB guest with the agent and restores one clone of each:
//! snapshot create, restore to vCPUs running, restore to the clone's agent answering
//! (this host's own /dev/kvm runs no guest user space: `benches/snapshot.rs` measures
//! the rest there). Figures go to target/exec-bench.json.
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

/// The last run called `name` in the L1 log: its output, which must have ended rc=0.
fn last_run<'a>(text: &'a str, name: &str) -> &'a str {
    let begin = format!("=== BEGIN {name}\n");
    let start = text
        .rfind(&begin)
        .unwrap_or_else(|| panic!("no {name} run:\n{text}"));
    let rest = &text[start + begin.len()..];
    let end = rest
        .find(&format!("=== END {name} rc="))
        .expect("its END line");
    assert!(
        rest[end..].starts_with(&format!("=== END {name} rc=0")),
        "{name} failed:\n{}",
        &rest[..end]
    );
    &rest[..end]
}

/// `SNAPSHOT: <what> <key>=<value>ms` from a snapshot_clones run.
fn snapshot_figure(run: &str, what: &str, key: &str) -> f64 {
    run.lines()
        .find(|l| l.starts_with(&format!("SNAPSHOT: {what} ")))
        .and_then(|l| l.split(&format!("{key}=")).nth(1))
        .and_then(|v| v.trim_end_matches("ms").parse().ok())
        .unwrap_or_else(|| panic!("no SNAPSHOT: {what} {key}= in:\n{run}"))
}

/// Restore figures of the 128 MiB and 1 GiB guests with the agent (one clone each).
fn restore_rows(text: &str) {
    println!("== Snapshot and restore of a Linux guest with the agent, nested (library restore)");
    for mem in [128, 1024] {
        let run = last_run(text, &format!("restore-{mem}"));
        for (name, what, key) in [
            ("snapshot create", "created", "took"),
            ("restore to vCPUs running", "clone0 running", "after"),
            ("restore to agent answering", "clone0 agent", "after"),
        ] {
            let v = snapshot_figure(run, what, key);
            let name = format!("{mem} MiB: {name}");
            println!("{name:<40} {v:>9.1} ms");
            output::record(&name, "ms", v, v, v, 1);
        }
    }
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
             echo \"=== END exec-bench rc=$?\"\n\
             MINIVMM_L2_TIMEOUT=300\n\
             for mem in 128 1024; do run_program restore-$mem snapshot_clones --kernel /l2/vmlinux \
             --initrd /l2/initramfs.cpio --cmdline 'noxsave minivmm.action=agent' --mem $mem --clones 1; done\n"
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
    restore_rows(&text);
    if let Err(e) = output::write(
        &repo().join("target"),
        "exec-bench",
        "guest agent over vsock, nested (ms)",
        "ms",
    ) {
        panic!("{e}");
    }
}
