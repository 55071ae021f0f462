//! Helpers shared by minivmm's integration tests: building the test guest, finding
//! the guest kernel, running the `minivmm` binary with a deadline.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub mod nested_fs;
pub mod nested_log;
pub mod nested_sandbox;
pub mod net;

pub const MINIVMM: &str = env!("CARGO_BIN_EXE_minivmm");

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `test` cannot run on this host because of `why`: prints it and returns (the caller
/// then returns); under CI (`CI=true`) fails instead. See crates/test-skips.
#[track_caller]
pub fn skip(test: &str, why: impl std::fmt::Display) {
    test_skips::skip(test, why);
}

/// True if /dev/kvm is a usable KVM device (it opens and answers with KVM's API
/// version); otherwise skips `test` (a failure under CI) and returns false.
#[track_caller]
pub fn kvm_available(test: &str) -> bool {
    match vmm::host::check_kvm(Path::new("/dev/kvm")) {
        Ok(()) => true,
        Err(e) => {
            skip(test, format!("this host has no usable KVM: {e}"));
            false
        }
    }
}

/// Builds the freestanding test guest (once per test binary) and returns its path.
pub fn test_guest() -> PathBuf {
    static GUEST: OnceLock<PathBuf> = OnceLock::new();
    GUEST
        .get_or_init(|| {
            let dir = repo().join("resources/test-guest");
            let status = Command::new(env!("CARGO"))
                .args(["build", "--release", "--quiet"])
                .current_dir(&dir)
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_TARGET_DIR")
                .env_remove("CARGO_BUILD_TARGET")
                .status()
                .expect("run cargo for the test guest");
            assert!(
                status.success(),
                "building the test guest failed (rustup target add x86_64-unknown-none?)"
            );
            dir.join("target/x86_64-unknown-none/release/minivmm-test-guest")
        })
        .clone()
}

/// The guest kernel directory (vmlinux, bzImage), built or found in the cache by
/// resources/kernel/build-kernel.sh. None (with the reason printed) only when the
/// developer opted out with MINIVMM_SKIP_LINUX_TESTS=1.
pub fn guest_kernel(test: &str) -> Option<PathBuf> {
    if std::env::var_os("MINIVMM_SKIP_LINUX_TESTS").is_some() {
        skip(test, "MINIVMM_SKIP_LINUX_TESTS is set");
        return None;
    }
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    Some(
        DIR.get_or_init(|| {
            let out = Command::new(repo().join("resources/kernel/build-kernel.sh"))
                .stderr(Stdio::inherit())
                .output()
                .expect("run build-kernel.sh");
            assert!(out.status.success(), "guest kernel build failed");
            PathBuf::from(
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .lines()
                    .last()
                    .unwrap_or_default(),
            )
        })
        .clone(),
    )
}

/// What a test that boots the resources/ Linux guest on this host's KVM needs: a
/// usable /dev/kvm and the guest kernel directory. None (the test skipped) otherwise.
#[track_caller]
pub fn linux_guest(test: &str) -> Option<PathBuf> {
    if !kvm_available(test) {
        return None;
    }
    guest_kernel(test)
}

/// Builds the guest initramfs into `dir` (raw, or gzip when `gzip`).
pub fn guest_initramfs(dir: &Path, gzip: bool) -> PathBuf {
    let out = dir.join(if gzip {
        "initramfs.cpio.gz"
    } else {
        "initramfs.cpio"
    });
    let mut cmd = Command::new(repo().join("resources/guest/build-initramfs.sh"));
    cmd.arg(&out);
    if gzip {
        cmd.arg("--gzip");
    }
    let status = cmd.status().expect("run build-initramfs.sh");
    assert!(status.success(), "initramfs build failed");
    out
}

/// A unique scratch directory under the target dir.
pub fn scratch(name: &str) -> PathBuf {
    let dir = repo().join("target/test-scratch").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The result of one minivmm run.
pub struct Run {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

pub fn wait_with_deadline(mut child: Child, deadline: Duration) -> (Output, Duration) {
    let start = Instant::now();
    loop {
        match child.try_wait().expect("wait for minivmm") {
            Some(_) => break,
            None if start.elapsed() > deadline => {
                let _ = child.kill();
                break;
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    let out = child.wait_with_output().expect("collect minivmm output");
    (out, start.elapsed())
}

/// Runs minivmm with `args` and `stdin` bytes; kills it after `deadline`.
pub fn run_minivmm(args: &[&str], stdin: &[u8], deadline: Duration) -> Run {
    let mut child = Command::new(MINIVMM)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("RUST_BACKTRACE", "1")
        .spawn()
        .expect("start minivmm");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).expect("write stdin");
    drop(input);
    let (out, elapsed) = wait_with_deadline(child, deadline);
    Run {
        status: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed,
    }
}

/// Asserts a run failed with exactly one clear error line mentioning `needle`.
pub fn assert_one_line_error(run: &Run, needle: &str) {
    assert!(
        matches!(run.status, Some(c) if c != 0),
        "expected failure, got {:?}\n{}",
        run.status,
        run.stderr
    );
    let lines = run.stderr_lines();
    assert_eq!(
        lines.len(),
        1,
        "expected one error line, got:\n{}",
        run.stderr
    );
    assert!(lines[0].starts_with("minivmm: "), "{}", lines[0]);
    assert!(
        lines[0].contains(needle),
        "'{}' does not mention '{needle}'",
        lines[0]
    );
    for bad in ["panicked", "backtrace", "RUST_BACKTRACE"] {
        assert!(!run.stderr.contains(bad), "{}", run.stderr);
    }
}

/// True when this host's KVM emulates guest kernel code (no hardware virtualization
/// below it), so a Linux guest cannot run user space here: the VMM's own probe
/// (`vmm::host`), which also picks the `emulated-kvm` preset. Panics where the host
/// cannot be judged (no /proc/cpuinfo flags): a test must not guess what to expect.
pub fn host_emulates_guest_code() -> bool {
    vmm::host::host_emulates_guest_code()
        .expect("cannot tell from /proc/cpuinfo whether this host has hardware virtualization")
}

/// Parses "Memory: 499576K/523896K available" into the total (second) figure in KiB.
pub fn kernel_memory_total_kib(console: &str) -> Option<u64> {
    let line = console
        .lines()
        .find(|l| l.contains("Memory: ") && l.contains("K available"))?;
    let after = line.split("Memory: ").nth(1)?;
    let total = after.split('/').nth(1)?.split('K').next()?;
    total.parse().ok()
}

/// Runs minivmm until its console prints the line holding `marker`, then stops it with SIGTERM (the
/// guest's own ending differs between hosts). Returns the run; `status` is minivmm's.
pub fn run_until_marker(args: &[&str], marker: &str, deadline: Duration) -> Run {
    run_command_until_marker(Command::new(MINIVMM), args, marker, deadline)
}

/// As [`run_until_marker`], with `command` (e.g. `ip netns exec NS minivmm`) standing
/// for minivmm; it must exec minivmm so that SIGTERM reaches it.
pub fn run_command_until_marker(
    mut command: Command,
    args: &[&str],
    marker: &str,
    deadline: Duration,
) -> Run {
    use std::io::Read;
    let start = Instant::now();
    let mut child = command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start minivmm");
    let mut out = child.stdout.take().expect("stdout");
    let mut stdout = String::new();
    let mut buf = [0u8; 4096];
    // Wait for the whole line that holds the marker: the guest prints byte by byte.
    let line_done = |s: &str| s.find(marker).is_some_and(|at| s[at..].contains('\n'));
    while !line_done(&stdout) && start.elapsed() < deadline {
        match out.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => stdout.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = out.read_to_string(&mut stdout);
    let (output, _) = wait_with_deadline(child, Duration::from_secs(30));
    Run {
        status: output.status.code(),
        stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: start.elapsed(),
    }
}

/// A new pseudo-terminal: (master, slave).
pub fn pty() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two new descriptors into the integers we pass.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just created by openpty and are owned here only.
    unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(master),
            std::os::fd::OwnedFd::from_raw_fd(slave),
        )
    }
}

/// The local-mode flags (ICANON, ECHO, ...) of terminal `fd`.
pub fn lflag(fd: &impl std::os::fd::AsRawFd) -> libc::tcflag_t {
    // SAFETY: tcgetattr fills the termios we own from a terminal fd the caller owns.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(fd.as_raw_fd(), &mut t), 0);
        t.c_lflag
    }
}

/// Reads `out` until the text seen so far contains `marker`; returns that text.
/// Panics if the output ends first.
pub fn read_until(out: &mut impl std::io::Read, marker: &str) -> String {
    let mut seen = String::new();
    let mut buf = [0u8; 256];
    while !seen.contains(marker) {
        let n = out.read(&mut buf).expect("read guest output");
        assert!(n > 0, "guest output ended before '{marker}': {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    seen
}

/// Threads of process `pid` ("self" for this one), without KVM's own per-VM worker
/// (`kvm-nx-lpage-recovery`, which the host kernel runs in the VMM's thread group);
/// and the number of those workers.
pub fn thread_counts(pid: &str) -> (usize, usize) {
    let mut vmm = 0;
    let mut kvm = 0;
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in dir.filter_map(Result::ok) {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.starts_with("kvm-") {
                kvm += 1;
            } else {
                vmm += 1;
            }
        }
    }
    (vmm, kvm)
}

/// Polls `cond` every 5 ms until it holds (true) or `deadline` has passed (false, after
/// one last look). For a check that becomes true a moment after the event that causes
/// it (a thread leaving /proc, a tap going away): wait with this, then assert as before.
pub fn poll_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return cond();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits (polling every 5 ms) until `cond` holds; panics naming `what` (the event
/// awaited, e.g. "the tap to go away") if it does not within `deadline`.
#[track_caller]
pub fn wait_until(what: &str, deadline: Duration, cond: impl FnMut() -> bool) {
    assert!(
        poll_until(deadline, cond),
        "timed out after {deadline:?} waiting for {what}"
    );
}
