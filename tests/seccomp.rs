//! Seccomp on the real binary: every minivmm thread runs confined by default, none
//! with `--seccomp off`, and a vCPU thread that makes a syscall outside its list is
//! stopped with a clear report, the terminal restored and exit status 159.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test, as clippy.toml allows in unit tests

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The Seccomp mode (0 off, 2 filter) of every thread of `pid`, by thread name.
fn thread_modes(pid: u32) -> Vec<(String, u32)> {
    let mut modes = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let name = field("Name:");
        if name.starts_with("kvm-") {
            // KVM's own worker (kvm-nx-lpage-recovery) lives in the VMM's process.
            continue;
        }
        let mode = field("Seccomp:").parse().unwrap_or(u32::MAX);
        modes.push((name, mode));
    }
    modes.sort();
    modes
}

/// Starts the `hang` test guest with `extra` flags, waits until it hangs and (up to
/// 30 s) until all four threads show seccomp mode `expected`, and returns their modes.
fn modes_while_running(extra: &[&str], expected: u32) -> Vec<(String, u32)> {
    let guest = test_guest();
    let mut child = Command::new(MINIVMM)
        .args(["--kernel", guest.to_str().unwrap(), "--cpus", "2"])
        .args(["--cmdline", "guest.test=hang"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    read_until(&mut out, "hanging");
    // The main thread installs its filter right after the VM starts: wait for it
    // (the caller's checks then report what was seen last if it never happens).
    let mut modes = Vec::new();
    poll_until(Duration::from_secs(30), || {
        modes = thread_modes(child.id());
        modes.len() == 4 && modes.iter().all(|(_, m)| *m == expected)
    });
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "{modes:?}");
    modes
}

#[test]
fn every_thread_is_confined_by_default_and_none_with_seccomp_off() {
    if !kvm_available("every_thread_is_confined_by_default_and_none_with_seccomp_off") {
        return;
    }
    let on = modes_while_running(&[], 2);
    let names: Vec<&str> = on.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "minivmm",
            "minivmm-events",
            "minivmm-vcpu0",
            "minivmm-vcpu1"
        ],
        "threads: {on:?}"
    );
    assert!(on.iter().all(|(_, m)| *m == 2), "all filtered: {on:?}");
    let off = modes_while_running(&["--seccomp", "off"], 0);
    assert!(off.iter().all(|(_, m)| *m == 0), "none filtered: {off:?}");
}

#[test]
fn a_vcpu_outside_its_list_is_stopped_and_reported() {
    if !kvm_available("a_vcpu_outside_its_list_is_stopped_and_reported") {
        return;
    }
    // A vCPU list without writes to stdout: the guest's first console byte makes the
    // vCPU thread write to stdout, outside its list.
    let dir = scratch("seccomp-vcpu");
    let filter = dir.join("filter.json");
    std::fs::write(
        &filter,
        r#"{"vcpu": {"mismatch_action": "allow", "match_action": "trap",
                    "filter": [{"syscall": "write",
                                "args": [{"index": 0, "type": "dword", "op": "eq", "val": 1}]}]}}"#,
    )
    .unwrap();
    let guest = test_guest();
    let (_master, slave) = pty();
    assert_ne!(
        lflag(&slave) & libc::ICANON,
        0,
        "a new pty starts canonical"
    );
    let start = Instant::now();
    let out = Command::new(MINIVMM)
        .args(["--kernel", guest.to_str().unwrap()])
        .args(["--seccomp-filter", filter.to_str().unwrap()])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(vmm::BAD_SYSCALL_EXIT), "{stderr}");
    assert_eq!(vmm::BAD_SYSCALL_EXIT, 159);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines,
        [format!(
            "minivmm: error: seccomp: thread 'minivmm-vcpu0' made syscall {} ({}), which \
             its allow-list does not permit; stopping the VM",
            libc::SYS_write,
            std::env::consts::ARCH
        )],
        "one clear line"
    );
    assert!(out.stdout.is_empty(), "no guest output got out");
    assert_ne!(
        lflag(&slave) & (libc::ICANON | libc::ECHO),
        0,
        "terminal restored after the seccomp stop"
    );
    assert!(start.elapsed() < Duration::from_secs(30));
}

#[test]
fn seccomp_options_are_checked() {
    let dir = scratch("seccomp-options");
    let guest = test_guest();
    let guest = guest.to_str().unwrap();
    let run = run_minivmm(
        &["--kernel", guest, "--seccomp", "maybe"],
        b"",
        Duration::from_secs(10),
    );
    assert_one_line_error(&run, "use on or off");
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"gpu": {"mismatch_action": "allow", "match_action": "trap", "filter": []}}"#,
    )
    .unwrap();
    let run = run_minivmm(
        &["--kernel", guest, "--seccomp-filter", bad.to_str().unwrap()],
        b"",
        Duration::from_secs(10),
    );
    assert_one_line_error(&run, "unknown thread 'gpu'");
    let run = run_minivmm(
        &[
            "--kernel",
            guest,
            "--seccomp",
            "off",
            "--seccomp-filter",
            bad.to_str().unwrap(),
        ],
        b"",
        Duration::from_secs(10),
    );
    assert_one_line_error(&run, "--seccomp-filter needs seccomp on");
}
