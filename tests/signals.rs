//! SIGTERM at every phase of a boot, on this host's KVM with the test guest: the
//! signal is delivered exactly when minivmm makes the phase's first syscall (strace's
//! syscall fault injection), or once the guest runs. Every time minivmm must exit
//! with 143 and one "stopped by signal 15" line, leave the terminal as it found it,
//! and remove the tap it created.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test, as clippy.toml allows in unit tests

mod common;

use common::net::ip;
use common::*;
use std::process::{Command, Stdio};

/// Whether strace (with fault injection) is installed; otherwise says why we skip.
fn strace_available(test: &str) -> bool {
    match Command::new("strace").arg("-V").output() {
        Ok(o) if o.status.success() => true,
        _ => {
            skip(test, "strace is not installed (apt install strace)");
            false
        }
    }
}

/// The phases, each as the strace options that signal at its first syscall.
fn phases(kernel: &str) -> Vec<(&'static str, Vec<String>)> {
    let at_open = |path: &str| {
        vec![
            "-P".to_string(),
            path.to_string(),
            "-e".into(),
            "trace=openat".into(),
            "-e".into(),
            "inject=openat:signal=SIGTERM:when=1".into(),
        ]
    };
    let at_call = |calls: &str| {
        vec![
            "-e".to_string(),
            format!("trace={calls}"),
            "-e".into(),
            format!("inject={calls}:signal=SIGTERM:when=1"),
        ]
    };
    vec![
        ("opening the KVM device", at_open("/dev/kvm")),
        ("creating the tap", at_open("/dev/net/tun")),
        ("loading the kernel", at_open(kernel)),
        ("attaching devices", at_call("eventfd2")),
        ("starting the vCPU threads", at_call("clone3,clone")),
        ("installing the seccomp filters", at_call("seccomp")),
    ]
}

/// Runs `cmd` (minivmm under strace, or bare) with a pty as stdin and a created tap;
/// checks the clean exit, the terminal and the tap. `wait_for` is guest output to see
/// before sending SIGTERM ourselves.
fn check_clean_stop(phase: &str, mut cmd: Command, tap: &str, wait_for: Option<&str>) {
    let (_master, slave) = pty();
    let mut child = cmd
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kept open until minivmm exits, so guest output never meets a closed pipe.
    let mut out = child.stdout.take().unwrap();
    if let Some(marker) = wait_for {
        read_until(&mut out, marker);
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    }
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > std::time::Duration::from_secs(30) {
            let _ = child.kill();
            panic!("{phase}: minivmm still runs 30 s after SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{phase}: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines, ["minivmm: stopped by signal 15"], "{phase}");
    assert_ne!(
        lflag(&slave) & (libc::ICANON | libc::ECHO),
        0,
        "{phase}: terminal left raw"
    );
    assert!(
        ip(None, &["link", "show", tap]).is_err(),
        "{phase}: tap {tap} left behind"
    );
    println!("signals: SIGTERM while {phase}: exit 143, terminal restored, tap removed");
}

#[test]
fn sigterm_at_every_phase_exits_cleanly() {
    let test = "sigterm_at_every_phase_exits_cleanly";
    if !kvm_available(test) || !strace_available(test) {
        return;
    }
    let guest = test_guest();
    let guest = guest.to_str().unwrap();
    let tap = "mvmsig0";
    let vmm_args = |tap: &str| {
        vec![
            "--kernel".to_string(),
            guest.to_string(),
            "--cmdline".into(),
            "guest.test=hang".into(),
            "--net".into(),
            format!("tap={tap},create=on"),
        ]
    };
    for (phase, strace) in phases(guest) {
        let mut cmd = Command::new("strace");
        cmd.args(["-f", "-qq", "-o", "/dev/null"])
            .args(&strace)
            .arg(MINIVMM)
            .args(vmm_args(tap));
        check_clean_stop(phase, cmd, tap, None);
    }
    let mut cmd = Command::new(MINIVMM);
    cmd.args(vmm_args(tap));
    check_clean_stop("the guest runs", cmd, tap, Some("hanging"));
}
