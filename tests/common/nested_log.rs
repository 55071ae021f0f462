//! Reading what an L1 of the nested harnesses printed: each L2 run sits between
//! "=== BEGIN NAME" and "=== END NAME rc=N" (tests/nested/l1-lib.sh).
#![allow(dead_code)]

use std::process::Command;

/// Runs nested harness `script` (under tests/nested/) on `scenario`, in scratch
/// directory `name`, with `envs`; returns L1's console (CRs removed: L1's console turns
/// every newline into CR LF). L1 must have booted with /dev/kvm and finished.
pub fn run_harness(script: &str, name: &str, scenario: &str, envs: &[(&str, String)]) -> String {
    run_harness_with_retries(script, name, scenario, envs, 3)
}

/// [`run_harness`], allowing `max_retries` retries (L1 boots and L2 runs together);
/// `MINIVMM_L1_BOOTS` in `envs` lets the harness boot L1 that many times.
pub fn run_harness_with_retries(
    script: &str,
    name: &str,
    scenario: &str,
    envs: &[(&str, String)],
    max_retries: usize,
) -> String {
    let dir = super::scratch(name);
    let scenario_path = dir.join("scenario.sh");
    std::fs::write(&scenario_path, scenario).unwrap();
    let log_path = dir.join("l1.log");
    let status = Command::new(super::repo().join("tests/nested").join(script))
        .arg(&scenario_path)
        .arg(&log_path)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .status()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    let log = std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .replace('\r', "");
    // Retries: an L1 that hung, panicked or locked up and was booted again (the
    // harness keeps its output as l1.log.hung, then l1.log.hung2), and L2s run again
    // inside L1 ("=== RETRY NAME: reason"). Each is printed with its reason; more than
    // three in a run is a failure (TCG's emulated SVM kills about one L1 in three CI runs
    // on 2026-12-03's machines, once two in one run, and an agent L2 twice in a row).
    let mut retries = Vec::new();
    let files = std::iter::once("l1.log.hung".to_string())
        .chain((2..10).map(|n| format!("l1.log.hung{n}")));
    for file in files {
        let hung = dir.join(file);
        let Ok(hung_log) = std::fs::read_to_string(&hung) else {
            continue;
        };
        let tail: Vec<&str> = hung_log.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        retries.push(format!(
            "L1 did not finish (time limit, kernel panic or lockup) and was booted again; the end of its console ({}):\n{}",
            hung.display(),
            tail.join("\n")
        ));
    }
    for line in log.lines().filter(|l| l.starts_with("=== RETRY")) {
        retries.push(format!("an L2 run was repeated: {line}"));
    }
    for r in &retries {
        eprintln!("nested RETRY ({script}): {r}");
    }
    assert!(
        retries.len() <= max_retries,
        "{} retries in one nested run (at most {max_retries} are allowed):\n{}",
        retries.len(),
        retries.join("\n")
    );
    assert!(status.success(), "harness failed ({status}):\n{log}");
    assert!(
        log.contains("=== L1 KVM ready"),
        "L1 has no /dev/kvm:\n{log}"
    );
    assert!(log.contains("=== L1 DONE"), "L1 did not finish:\n{log}");
    log
}

/// One L2 run's console and minivmm's status, cut from L1's output.
pub struct L2Run {
    pub output: String,
    pub rc: i32,
}

/// The last run called `name` (a retried run appears twice).
pub fn section(log: &str, name: &str) -> L2Run {
    let begin = format!("=== BEGIN {name}\n");
    let start = log
        .rfind(&begin)
        .unwrap_or_else(|| panic!("no '{name}' section in:\n{log}"))
        + begin.len();
    let rest = &log[start..];
    let end_marker = format!("=== END {name} rc=");
    let end = rest
        .find(&end_marker)
        .unwrap_or_else(|| panic!("'{name}' did not end:\n{rest}"));
    let rc = rest[end + end_marker.len()..]
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .parse()
        .unwrap_or(-1);
    L2Run {
        output: rest[..end].to_string(),
        rc,
    }
}

/// The word after `key` in `text` ("" if none).
pub fn value<'a>(text: &'a str, key: &str) -> &'a str {
    text.split(key)
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or("")
}

/// The numbers after `key=` on the lines of `log` that start with `prefix`, in order
/// (a line without one, or with one that is not a number, gives none).
pub fn numbers(log: &str, prefix: &str, key: &str) -> Vec<f64> {
    log.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))?
                .parse()
                .ok()
        })
        .collect()
}

/// The last `n` lines of `text`, for failure messages that CI logs cut in the middle.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A `run_l2_net` section: the guest's lease, ping, and the three transfers checked by
/// checksum on both sides; the tap minivmm created is gone afterwards.
pub fn check_network(run: &L2Run, tap: &str) {
    let out = &run.output;
    assert_eq!(run.rc, 0, "{out}");
    let removed = format!("L1: {tap} removed");
    for line in [
        "MINIVMM-GUEST: eth0 mac=02:",
        "lease of 10.0.2.15 obtained",
        "MINIVMM-GUEST: eth0 inet 10.0.2.15/24",
        "MINIVMM-GUEST: ping 3 packets transmitted, 3 packets received",
        "MINIVMM-GUEST: powering off",
        &removed,
    ] {
        assert!(out.contains(line), "missing '{line}':\n{out}");
    }
    for (guest, host) in [
        ("MINIVMM-GUEST: small sha256=", "L1: small sha256="),
        ("MINIVMM-GUEST: big sha256=", "L1: big sha256="),
        ("MINIVMM-GUEST: upload sha256=", "L1: upload sha256="),
    ] {
        let g = value(out, guest);
        assert_eq!(g.len(), 64, "no checksum after '{guest}':\n{out}");
        assert_eq!(
            g,
            value(out, host),
            "'{guest}' differs from '{host}':\n{out}"
        );
    }
}
