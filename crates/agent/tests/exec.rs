//! Commands through the real agent (a child process on a Unix socket): statuses,
//! output volume and order, stdin, concurrency, timeouts, signals, a host that leaves.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test, as clippy.toml allows in unit tests

mod common;

use agent_client::{ClientError, ErrorCode, ExecRequest, ExitStatus};
use common::{alive, pattern, sha256_hex, Agent};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn sh(script: &str) -> ExecRequest {
    ExecRequest::new(["sh", "-c", script])
}

#[test]
fn uname_succeeds_with_output() {
    let agent = Agent::start();
    let out = agent
        .client()
        .exec(&ExecRequest::new(["uname", "-a"]))
        .unwrap();
    assert_eq!(out.status, ExitStatus::Code(0));
    assert!(!out.timed_out);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Linux"));
}

#[test]
fn exit_codes_and_signals() {
    let agent = Agent::start();
    let c = agent.client();
    assert_eq!(c.exec(&sh("exit 7")).unwrap().status, ExitStatus::Code(7));
    let out = c.exec(&sh("kill -9 $$")).unwrap();
    assert_eq!(out.status, ExitStatus::Signal(9));
    assert_eq!(out.status.shell_code(), 137);
}

#[test]
fn stdout_and_stderr_are_separate_streams() {
    let agent = Agent::start();
    let out = agent
        .client()
        .exec(&sh("echo out1; echo err1 >&2; echo out2; echo err2 >&2"))
        .unwrap();
    assert_eq!(out.stdout, b"out1\nout2\n");
    assert_eq!(out.stderr, b"err1\nerr2\n");
}

#[test]
fn sixteen_mib_of_stdout_arrive_intact() {
    let agent = Agent::start();
    let start = Instant::now();
    let out = agent
        .client()
        .exec(&sh("yes 0123456789abcdef | head -c 16777216"))
        .unwrap();
    let expected: Vec<u8> = b"0123456789abcdef\n"
        .iter()
        .copied()
        .cycle()
        .take(16 << 20)
        .collect();
    assert_eq!(out.status, ExitStatus::Code(0));
    assert_eq!(out.stdout.len(), expected.len());
    assert!(out.stdout == expected, "16 MiB of stdout differ");
    println!("16 MiB exec in {:?}", start.elapsed());

    // The same through a streaming session, checked by digest.
    let data = pattern(16 << 20, 7);
    let path = agent.dir.join("random.bin");
    std::fs::write(&path, &data).unwrap();
    let mut s = agent
        .client()
        .spawn(&ExecRequest::new(["cat", path.to_str().unwrap()]))
        .unwrap();
    let mut got = Vec::new();
    s.stdout.take().unwrap().read_to_end(&mut got).unwrap();
    assert_eq!(s.wait().unwrap().status, ExitStatus::Code(0));
    assert_eq!(sha256_hex(&got), sha256_hex(&data));
}

#[test]
fn stdin_streams_through_sha256sum() {
    let agent = Agent::start();
    let data = pattern(8 << 20, 3);
    let mut s = agent
        .client()
        .spawn(&ExecRequest::new(["sha256sum"]).stdin(true))
        .unwrap();
    let mut stdin = s.stdin.take().unwrap();
    let mut stdout = s.stdout.take().unwrap();
    let writer = std::thread::spawn(move || {
        for chunk in data.chunks(100_000) {
            stdin.write_all(chunk).unwrap();
        }
        stdin.close().unwrap();
        data
    });
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    let data = writer.join().unwrap();
    assert_eq!(s.wait().unwrap().status, ExitStatus::Code(0));
    assert_eq!(&out[..64], sha256_hex(&data));
}

#[test]
fn thirty_two_concurrent_execs() {
    let agent = Agent::start();
    let threads: Vec<_> = (0..32)
        .map(|i| {
            let c = agent.client();
            std::thread::spawn(move || {
                let out = c
                    .exec(&sh(&format!("sleep 0.2; printf 'job {i}'; exit {}", i % 5)))
                    .unwrap();
                assert_eq!(out.stdout, format!("job {i}").into_bytes());
                assert_eq!(out.status, ExitStatus::Code(i % 5));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn environment_cwd_and_user_are_applied() {
    let agent = Agent::start();
    let req = sh("echo $FOO; pwd; id -u; id -g; env | sort")
        .env("FOO", "bar")
        .cwd("/tmp")
        .user(65534, 65534);
    let out = agent.client().exec(&req).unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(&lines[..4], ["bar", "/tmp", "65534", "65534"], "{text}");
    // The environment is replaced: FOO, the default PATH, and what sh adds itself.
    assert!(lines.iter().any(|l| l.starts_with("PATH=/usr/local/sbin")));
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("HOME=") || l.starts_with("CARGO")),
        "{text}"
    );
}

#[test]
fn missing_commands_and_directories_are_errors() {
    let agent = Agent::start();
    let c = agent.client();
    match c.exec(&ExecRequest::new(["no-such-command-xyz"])) {
        Err(ClientError::Remote { code, .. }) => assert_eq!(code, ErrorCode::NotFound),
        other => panic!("{other:?}"),
    }
    match c.exec(&ExecRequest::new(["true"]).cwd("/no/such/dir")) {
        Err(ClientError::Remote { code, message }) => {
            assert_eq!(code, ErrorCode::NotFound);
            assert!(message.contains("chdir"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn timeout_kills_the_process_group() {
    let agent = Agent::start();
    let start = Instant::now();
    let out = agent
        .client()
        .exec(&ExecRequest::new(["sleep", "100"]).timeout(Duration::from_millis(500)))
        .unwrap();
    let took = start.elapsed();
    assert_eq!(out.status, ExitStatus::Signal(9));
    assert!(out.timed_out);
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[test]
fn kill_delivers_the_signal() {
    let agent = Agent::start();
    let mut s = agent
        .client()
        .spawn(&ExecRequest::new(["sleep", "100"]))
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    s.kill(15).unwrap();
    let e = s.wait().unwrap();
    assert_eq!(e.status, ExitStatus::Signal(15));
    assert!(!e.timed_out);
}

#[test]
fn a_host_that_leaves_gets_its_command_killed() {
    let agent = Agent::start();
    let c = agent.client();
    let s = c.spawn(&ExecRequest::new(["sleep", "100"])).unwrap();
    let pid = s.pid();
    assert!(alive(pid));
    drop(s);
    let start = Instant::now();
    while alive(pid) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "pid {pid} still runs"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The agent serves the next command.
    assert_eq!(
        c.exec(&ExecRequest::new(["true"])).unwrap().status,
        ExitStatus::Code(0)
    );
}

#[test]
fn a_background_process_holding_stdout_does_not_hang_the_exec() {
    let agent = Agent::start();
    let start = Instant::now();
    let out = agent.client().exec(&sh("sleep 5 & echo started")).unwrap();
    assert_eq!(out.stdout, b"started\n");
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn output_past_the_limit_is_an_error_not_an_allocation() {
    let agent = Agent::start();
    let c = agent.client().with_output_limit(1 << 20);
    match c.exec(&sh("yes | head -c 10000000")) {
        Err(ClientError::OutputLimit {
            stream: "stdout", ..
        }) => {}
        other => panic!("{other:?}"),
    }
}
