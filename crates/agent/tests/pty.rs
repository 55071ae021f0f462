//! Commands on a pseudo-terminal through the real agent: the terminal, its size,
//! resizes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test, as clippy.toml allows in unit tests

mod common;

use agent_client::{ExecRequest, ExitStatus, OutputReader};
use common::Agent;
use std::io::{Read, Write};
use std::time::Duration;

/// Reads until the output holds `needle` (the command's timeout ends a wait for
/// output that never comes).
fn read_until(r: &mut OutputReader, seen: &mut String, needle: &str) {
    let mut buf = [0u8; 4096];
    while !seen.contains(needle) {
        let n = r.read(&mut buf).unwrap();
        assert!(n > 0, "output ended without {needle:?}: {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

#[test]
fn tty_names_a_pseudo_terminal() {
    let agent = Agent::start();
    let req = ExecRequest::new(["tty"])
        .tty(24, 80)
        .timeout(Duration::from_secs(10));
    let out = agent.client().exec(&req).unwrap();
    assert_eq!(out.status, ExitStatus::Code(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("/dev/pts/"), "{text:?}");
    assert!(out.stderr.is_empty());
}

#[test]
fn stty_sees_the_requested_size_and_resizes() {
    let agent = Agent::start();
    let out = agent
        .client()
        .exec(&ExecRequest::new(["stty", "size"]).tty(33, 101))
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "33 101");

    let req = ExecRequest::new(["sh", "-c", "stty size; read x; stty size"])
        .tty(24, 80)
        .stdin(true)
        .timeout(Duration::from_secs(10));
    let mut s = agent.client().spawn(&req).unwrap();
    let mut stdout = s.stdout.take().unwrap();
    let mut seen = String::new();
    read_until(&mut stdout, &mut seen, "24 80");
    s.resize(50, 132).unwrap();
    s.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    read_until(&mut stdout, &mut seen, "50 132");
    drop(stdout);
    let e = s.wait().unwrap();
    assert_eq!(e.status, ExitStatus::Code(0), "{seen:?}");
}

#[test]
fn stdin_close_is_end_of_file_on_a_terminal() {
    let agent = Agent::start();
    let req = ExecRequest::new(["sh", "-c", "cat; echo done"])
        .tty(24, 80)
        .stdin(true)
        .timeout(Duration::from_secs(10));
    let mut s = agent.client().spawn(&req).unwrap();
    let mut stdout = s.stdout.take().unwrap();
    let mut stdin = s.stdin.take().unwrap();
    stdin.write_all(b"hello\n").unwrap();
    let mut seen = String::new();
    read_until(&mut stdout, &mut seen, "hello\r\nhello");
    stdin.close().unwrap();
    read_until(&mut stdout, &mut seen, "done");
    drop(stdout);
    let e = s.wait().unwrap();
    assert_eq!(e.status, ExitStatus::Code(0));
    assert!(!e.timed_out);
}
