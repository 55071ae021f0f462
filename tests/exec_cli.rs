//! `minivmm exec` and `minivmm cp` from a second process, on this host: the guest
//! agent (`minivmm-agent --unix`) runs here, behind a stand-in for the VMM's vsock
//! socket that answers `CONNECT 52` the way minivmm's does and relays the stream.
//! (The same commands against a real guest run in the nested test.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test, as clippy.toml allows in unit tests

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The agent and the stand-in vsock socket.
struct Guest {
    agent: Child,
    vm_socket: PathBuf,
    dir: PathBuf,
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.agent.kill();
        let _ = self.agent.wait();
    }
}

fn relay(mut from: UnixStream, mut to: UnixStream) {
    let mut buf = [0u8; 65536];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// Answers `CONNECT <port>` like minivmm's vsock socket, then relays to `agent`.
fn vsock_stand_in(listener: UnixListener, agent: PathBuf) {
    for host in listener.incoming().map_while(Result::ok) {
        let agent = agent.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            let mut reader = BufReader::new(host.try_clone().unwrap());
            if reader.read_line(&mut line).is_err() || line != "CONNECT 52\n" {
                return;
            }
            let Ok(guest) = UnixStream::connect(&agent) else {
                return;
            };
            let mut host_w = host.try_clone().unwrap();
            host_w.write_all(b"OK 1073741824\n").unwrap();
            let (g2, h2) = (guest.try_clone().unwrap(), host.try_clone().unwrap());
            std::thread::spawn(move || relay(g2, h2));
            relay(host, guest);
        });
    }
}

fn guest(name: &str) -> Guest {
    let dir = scratch(name);
    let agent_bin = Path::new(MINIVMM).with_file_name("minivmm-agent");
    assert!(
        agent_bin.exists(),
        "{} is built with the workspace",
        agent_bin.display()
    );
    let agent_socket = dir.join("agent.sock");
    let agent = Command::new(&agent_bin)
        .args(["--unix", agent_socket.to_str().unwrap(), "--no-power-off"])
        .spawn()
        .expect("start the agent");
    wait_until("the agent's socket", Duration::from_secs(10), || {
        agent_socket.exists()
    });
    let vm_socket = dir.join("vm.sock");
    let listener = UnixListener::bind(&vm_socket).unwrap();
    std::thread::spawn(move || vsock_stand_in(listener, agent_socket));
    Guest {
        agent,
        vm_socket,
        dir,
    }
}

fn minivmm(g: &Guest, sub: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(MINIVMM)
        .arg(sub)
        .args(["--vsock-socket", g.vm_socket.to_str().unwrap()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn exec_streams_output_and_exits_with_the_command_status() {
    let g = guest("exec-cli-status");
    let out = minivmm(
        &g,
        "exec",
        &["--", "sh", "-c", "echo out; echo err >&2; exit 7"],
        b"",
    );
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n");
    let out = minivmm(&g, "exec", &["--", "sh", "-c", "kill -9 $$"], b"");
    assert_eq!(out.status.code(), Some(128 + 9));
    let out = minivmm(
        &g,
        "exec",
        &[
            "--env",
            "GREETING=hi",
            "--cwd",
            "/tmp",
            "--",
            "sh",
            "-c",
            "echo $GREETING; pwd",
        ],
        b"",
    );
    assert_eq!(text(&out.stdout), "hi\n/tmp\n");
    // -i streams stdin; without it the command reads /dev/null.
    let data = vec![b'x'; 1 << 20];
    let out = minivmm(&g, "exec", &["-i", "--", "sha256sum"], &data);
    let want = text(
        &Command::new("sh")
            .args(["-c", "head -c 1048576 /dev/zero | tr '\\0' x | sha256sum"])
            .output()
            .unwrap()
            .stdout,
    );
    assert_eq!(text(&out.stdout), want);
    let out = minivmm(&g, "exec", &["--", "wc", "-c"], b"ignored");
    assert_eq!(text(&out.stdout).trim(), "0");
    let out = minivmm(&g, "exec", &["--timeout", "0.5", "--", "sleep", "30"], b"");
    assert_eq!(out.status.code(), Some(128 + 9));
    assert!(
        text(&out.stderr).contains("timeout"),
        "{}",
        text(&out.stderr)
    );
    let out = minivmm(&g, "exec", &["--", "/no/such/program"], b"");
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        text(&out.stderr).lines().count(),
        1,
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn cp_copies_files_in_and_out() {
    let g = guest("exec-cli-cp");
    let local = g.dir.join("in.bin");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&local, &data).unwrap();
    let remote = g.dir.join("remote.bin");
    let guest_path = format!("guest:{}", remote.display());
    let out = minivmm(
        &g,
        "cp",
        &[local.to_str().unwrap(), &guest_path, "--mode", "600"],
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(&remote).unwrap(), data);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&remote).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let back = g.dir.join("back.bin");
    let out = minivmm(&g, "cp", &[&guest_path, back.to_str().unwrap()], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(&back).unwrap(), data);
    let out = minivmm(
        &g,
        "cp",
        &["guest:/no/such/file", back.to_str().unwrap()],
        b"",
    );
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        std::fs::read(&back).unwrap(),
        data,
        "a failed copy leaves the old file"
    );
    let out = minivmm(&g, "cp", &["a", "b"], b"");
    assert_eq!(out.status.code(), Some(125));
}

#[test]
fn exec_t_gives_the_command_a_terminal_of_the_host_size() {
    let g = guest("exec-cli-tty");
    // `script` runs minivmm under a pseudo-terminal of 40 x 100.
    let inner = format!(
        "stty rows 40 cols 100; {MINIVMM} exec -t --vsock-socket {} -- sh -c 'tty; stty size'",
        g.vm_socket.display()
    );
    let out = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("run script (util-linux)");
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{shown} {}", text(&out.stderr));
    assert!(shown.contains("/dev/pts/"), "{shown}");
    assert!(shown.contains("40 100"), "{shown}");
}

#[test]
fn exec_without_an_agent_fails_clearly_within_its_deadline() {
    let dir = scratch("exec-cli-absent");
    // A VM socket whose guest has no agent: minivmm's answer then is to close the
    // connection after the CONNECT line (the guest refused the port).
    let vm_socket = dir.join("vm.sock");
    let listener = UnixListener::bind(&vm_socket).unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming().map_while(Result::ok) {
            let mut line = String::new();
            let _ = BufReader::new(s).read_line(&mut line);
        }
    });
    let start = std::time::Instant::now();
    let out = Command::new(MINIVMM)
        .args(["exec", "--vsock-socket", vm_socket.to_str().unwrap()])
        .args(["--wait", "1", "--", "true"])
        .output()
        .unwrap();
    let took = start.elapsed();
    assert_eq!(out.status.code(), Some(125));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("did not answer"), "{err}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(4),
        "{took:?}"
    );
}
