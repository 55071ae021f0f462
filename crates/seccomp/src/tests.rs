//! Filters are tested in child processes (this test binary run again): a filter
//! cannot be removed from a thread, and a trapped syscall ends the process.

use super::*;
use std::process::Command;

const CHILD_ENV: &str = "MINIVMM_SECCOMP_CHILD";

/// In a child: installs `role`'s default filter, makes the calls the role needs,
/// prints a marker, then makes `forbidden`, which must trap.
fn child_body(role: ThreadRole, forbidden: &str) {
    let filters = Filters::new(&SeccompPolicy::Default).unwrap();
    filters
        .install(role, &format!("test-{}", role.name()))
        .unwrap();
    // Allowed for every role: allocation, locks, clocks, sleep, stderr.
    let v: Vec<u8> = (0..100_000).map(|i| i as u8).collect();
    let m = std::sync::Mutex::new(v.len());
    let _ = *m.lock().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1));
    let _ = std::time::SystemTime::now();
    eprintln!("ALLOWED-OK {}", role.name());
    // Each call below is expected to trap.
    match forbidden {
        // SAFETY: a plain syscall with constant arguments.
        "socket" => unsafe {
            libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        },
        // SAFETY: a plain syscall on a static NUL-terminated path.
        "openat" => unsafe {
            libc::openat(libc::AT_FDCWD, c"/etc/passwd".as_ptr(), libc::O_RDONLY);
        },
        // SAFETY: a new anonymous mapping; nothing existing is touched.
        "mmap-exec" => unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
        },
        // SAFETY: FIONREAD on stdin with a null pointer fails or traps; no memory is
        // written through it.
        "ioctl" => unsafe {
            libc::ioctl(0, libc::FIONREAD, std::ptr::null_mut::<libc::c_int>());
        },
        other => panic!("unknown forbidden call {other}"),
    }
    eprintln!("NOT TRAPPED");
}

/// Not a test of its own: the body of the child processes that `run_child` starts
/// (this binary run again with `--ignored --exact tests::child`).
#[test]
#[ignore = "runs only as the child process of the filter tests"]
fn child() {
    let spec = std::env::var(CHILD_ENV).expect("started by run_child, which sets the role");
    let (role, forbidden) = spec.split_once(':').unwrap();
    let role = *ThreadRole::ALL.iter().find(|r| r.name() == role).unwrap();
    child_body(role, forbidden);
}

/// Runs the child for `role`/`forbidden`; returns (exit code, stderr).
fn run_child(role: ThreadRole, forbidden: &str) -> (Option<i32>, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "tests::child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{}:{forbidden}", role.name()))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// True when run by qemu-user (the aarch64 unit tests: `.cargo/config.toml` sets
/// MINIVMM_QEMU_USER in its runner).
fn running_under_qemu_user() -> bool {
    std::env::var_os("MINIVMM_QEMU_USER").is_some()
}

/// Whether this kernel (not an emulator such as qemu-user) takes seccomp filters.
fn seccomp_available(test: &str) -> bool {
    let trap: u32 = libc::SECCOMP_RET_TRAP;
    // SAFETY: SECCOMP_GET_ACTION_AVAIL only reads the u32 we pass.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_ACTION_AVAIL,
            0,
            &trap as *const u32,
        )
    };
    if ret != 0 {
        let err = std::io::Error::last_os_error();
        // Only the emulator's ENOSYS is the platform's doing; anything else is a failure.
        if running_under_qemu_user() && err.raw_os_error() == Some(libc::ENOSYS) {
            test_skips::platform_skip(
                test,
                test_skips::PlatformSkip::SeccompUnderQemuUser,
                format!("seccomp(2) failed: {err}"),
            );
        } else {
            test_skips::skip(test, format!("seccomp is not available here ({err})"));
        }
    }
    ret == 0
}

#[test]
fn each_role_allows_its_work_and_traps_the_rest() {
    if !seccomp_available("each_role_allows_its_work_and_traps_the_rest") {
        return;
    }
    let cases = [
        (ThreadRole::Vcpu, "socket", libc::SYS_socket),
        (ThreadRole::Vcpu, "openat", libc::SYS_openat),
        (ThreadRole::Vcpu, "mmap-exec", libc::SYS_mmap),
        (ThreadRole::Vcpu, "ioctl", libc::SYS_ioctl),
        (ThreadRole::Events, "socket", libc::SYS_socket),
        (ThreadRole::Events, "openat", libc::SYS_openat),
        (ThreadRole::Events, "ioctl", libc::SYS_ioctl),
        (ThreadRole::Main, "openat", libc::SYS_openat),
        (ThreadRole::Main, "mmap-exec", libc::SYS_mmap),
    ];
    for (role, forbidden, nr) in cases {
        let (code, stderr) = run_child(role, forbidden);
        let what = format!("{} / {forbidden}: {stderr}", role.name());
        assert!(
            stderr.contains(&format!("ALLOWED-OK {}", role.name())),
            "{what}"
        );
        assert!(!stderr.contains("NOT TRAPPED"), "{what}");
        let expected = format!(
            "thread 'test-{}' made syscall {nr} ({}), which its allow-list does not permit",
            role.name(),
            std::env::consts::ARCH
        );
        assert!(stderr.contains(&expected), "{what}");
        assert_eq!(code, Some(BAD_SYSCALL_EXIT), "{what}");
    }
}

#[test]
fn off_builds_no_filters() {
    let filters = Filters::new(&SeccompPolicy::Off).unwrap();
    assert!(!filters.enabled());
    // Installing nothing succeeds and leaves this thread unconfined.
    filters.install(ThreadRole::Vcpu, "x").unwrap();
    // SAFETY: a plain syscall with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0) };
    assert!(fd >= 0);
    // SAFETY: closing the socket we just opened.
    unsafe { libc::close(fd) };
}

#[test]
fn every_default_list_compiles() {
    for role in ThreadRole::ALL {
        let program = lists::compile(role).unwrap();
        assert!(program.len() > 20, "{}", role.name());
    }
}

#[test]
fn custom_files_are_checked() {
    let dir = std::env::temp_dir().join(format!("minivmm-seccomp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.json");
    std::fs::write(
        &good,
        r#"{"vcpu": {"mismatch_action": "allow", "match_action": "trap",
                    "filter": [{"syscall": "socket"}]}}"#,
    )
    .unwrap();
    let policy = SeccompPolicy::from_json_file(&good).unwrap();
    let filters = Filters::new(&policy).unwrap();
    assert!(filters.enabled());
    assert_eq!(
        filters.programs.len(),
        ThreadRole::ALL.len(),
        "roles left out keep the default list"
    );

    let unknown = dir.join("unknown.json");
    std::fs::write(
        &unknown,
        r#"{"gpu": {"mismatch_action": "allow", "match_action": "trap", "filter": []}}"#,
    )
    .unwrap();
    let err = SeccompPolicy::from_json_file(&unknown)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown thread 'gpu'"), "{err}");

    let broken = dir.join("broken.json");
    std::fs::write(&broken, "{").unwrap();
    assert!(SeccompPolicy::from_json_file(&broken).is_err());
    assert!(SeccompPolicy::from_json_file(&dir.join("missing.json")).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
