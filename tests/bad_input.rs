//! Bad user input: each case gets one clear error line and a non-zero exit, never a
//! panic, a backtrace or a hang.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test, as clippy.toml allows in unit tests

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(30);

fn fails_with(args: &[&str], needle: &str) {
    let run = run_minivmm(args, b"", DEADLINE);
    assert_one_line_error(&run, needle);
}

fn guest() -> String {
    test_guest().display().to_string()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.display().to_string()
}

#[test]
fn unusable_kernel_files() {
    let dir = scratch("bad-kernels");
    fails_with(
        &["--kernel", "/nonexistent/vmlinux"],
        "cannot read /nonexistent/vmlinux: No such file",
    );
    let empty = write(&dir, "empty", b"");
    fails_with(&["--kernel", &empty], "is empty");
    let random: Vec<u8> = (0..65536u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    let random = write(&dir, "random", &random);
    fails_with(
        &["--kernel", &random],
        "neither an ELF vmlinux nor a bzImage",
    );
    fails_with(&["--kernel", dir.to_str().unwrap()], "cannot read");

    // The test guest with its machine type changed to aarch64 (EM_AARCH64 = 183).
    let mut elf = std::fs::read(test_guest()).unwrap();
    elf[18..20].copy_from_slice(&183u16.to_le_bytes());
    let arm = write(&dir, "arm64.elf", &elf);
    fails_with(&["--kernel", &arm], "is an ELF file for aarch64");
}

#[test]
fn truncated_bzimage() {
    let Some(kernel) = guest_kernel("truncated_bzimage") else {
        return;
    };
    let dir = scratch("bad-bzimage");
    let bz = std::fs::read(kernel.join("bzImage")).unwrap();
    let cut = write(&dir, "bzImage.cut", &bz[..bz.len() / 2]);
    fails_with(&["--kernel", &cut], "is truncated: its header needs");
}

#[test]
fn unusable_initrd() {
    let dir = scratch("bad-initrd");
    let big = dir.join("big.cpio");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(200 << 20)
        .unwrap();
    fails_with(
        &[
            "--kernel",
            &guest(),
            "--mem",
            "128M",
            "--initrd",
            big.to_str().unwrap(),
        ],
        "does not fit in guest memory",
    );
    fails_with(
        &["--kernel", &guest(), "--initrd", "/nonexistent/initrd"],
        "cannot read /nonexistent/initrd",
    );
}

#[test]
fn impossible_memory_sizes() {
    fails_with(&["--kernel", &guest(), "--mem", "0"], "too small");
    fails_with(
        &["--kernel", &guest(), "--mem", "4096G"],
        "more than this host's",
    );
    fails_with(
        &["--kernel", &guest(), "--mem", "lots"],
        "cannot parse memory size 'lots'",
    );
    fails_with(
        &["--kernel", &guest(), "--mem", "1.5G"],
        "cannot parse memory size",
    );
    fails_with(
        &["--kernel", &guest(), "--mem", "99999999999999999999"],
        "too large",
    );
}

#[test]
fn huge_pages_the_host_does_not_have() {
    fails_with(
        &["--kernel", &guest(), "--mem", "63M", "--mem-hugepages"],
        "with huge pages is not a multiple of the 2048 KiB huge page size",
    );
    // More pages than the host has free (none are reserved on a fresh machine).
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let free: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("HugePages_Free:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap();
    let pages = free + 16;
    fails_with(
        &[
            "--kernel",
            &guest(),
            "--mem",
            &format!("{}M", pages * 2),
            "--mem-hugepages",
        ],
        &format!("needs {pages} huge pages of 2048 KiB, but the host has {free} free"),
    );
}

#[test]
fn impossible_vcpu_counts() {
    fails_with(&["--kernel", &guest(), "--cpus", "0"], "at least one vCPU");
    fails_with(
        &["--kernel", &guest(), "--cpus", "5000"],
        "5000 vCPUs requested, but at most",
    );
    fails_with(
        &["--kernel", &guest(), "--cpus", "two"],
        "invalid value 'two'",
    );
}

#[test]
fn command_line_too_long() {
    let long = "x".repeat(3000);
    fails_with(
        &["--kernel", &guest(), "--cmdline", &long],
        "longer than the kernel accepts (2047 bytes at most)",
    );
}

#[test]
fn kvm_device_missing_or_not_permitted() {
    fails_with(
        &["--kernel", &guest(), "--kvm-device", "/nonexistent/kvm"],
        "cannot open /nonexistent/kvm: No such file",
    );
    // A regular file is not KVM.
    let dir = scratch("bad-kvm");
    let fake = write(&dir, "kvm", b"");
    fails_with(
        &["--kernel", &guest(), "--kvm-device", &fake],
        "cannot open",
    );

    // Permission denied: as root, drop to an unprivileged user for the real /dev/kvm;
    // otherwise use a file without permissions.
    // SAFETY: geteuid has no side effects.
    if unsafe { libc::geteuid() } == 0 {
        if !kvm_available("kvm_device_missing_or_not_permitted (permission case)") {
            return;
        }
        if std::process::Command::new("setpriv")
            .arg("--help")
            .output()
            .is_err()
        {
            skip(
                "kvm_device_missing_or_not_permitted (permission case)",
                "setpriv is not installed (util-linux)",
            );
            return;
        }
        let out = std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                MINIVMM,
                "--kernel",
                &guest(),
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("cannot open /dev/kvm: Permission denied"),
            "{stderr}"
        );
        assert!(stderr.contains("kvm' group"), "{stderr}");
    } else {
        let locked = write(&dir, "locked", b"");
        std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o000))
            .unwrap();
        fails_with(
            &["--kernel", &guest(), "--kvm-device", &locked],
            "Permission denied",
        );
    }
}

#[test]
fn unknown_options_and_missing_kernel() {
    fails_with(&[], "--kernel");
    fails_with(
        &["--kernel", &guest(), "--frobnicate"],
        "unexpected argument '--frobnicate'",
    );
    fails_with(
        &["--kernel", &guest(), "--cmdline-preset", "warp"],
        "unknown command-line preset 'warp'",
    );
}

#[test]
fn unusable_disks() {
    let dir = scratch("bad-disks");
    fails_with(
        &["--kernel", &guest(), "--disk", "path=/nonexistent/disk.img"],
        "cannot open disk image /nonexistent/disk.img: No such file",
    );
    fails_with(
        &["--kernel", &guest(), "--disk", "disk.img"],
        "invalid value 'disk.img' for '--disk <SPEC>'",
    );
    fails_with(
        &["--kernel", &guest(), "--disk", "path=a.img,cache=none"],
        "unknown disk option 'cache'",
    );
    // A disk another process holds (as a second VM would) is refused.
    let img = dir.join("held.img");
    let held = std::fs::File::create(&img).unwrap();
    held.set_len(1 << 20).unwrap();
    // SAFETY: flock on a descriptor this test owns.
    let locked = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&held), libc::LOCK_EX) };
    assert_eq!(locked, 0);
    let spec = format!("path={}", img.display());
    fails_with(
        &["--kernel", &guest(), "--disk", &spec],
        "is in use by another process (locked)",
    );
    let ro = format!("path={},readonly=on", img.display());
    fails_with(
        &["--kernel", &guest(), "--disk", &ro],
        "is in use by another process (locked)",
    );
    drop(held);
    // More devices than the layout has IRQs for: refused before any file is opened.
    let g = guest();
    let mut args = vec!["--kernel", g.as_str()];
    for _ in 0..15 {
        args.extend(["--disk", "path=/nonexistent/disk.img"]);
    }
    fails_with(&args, "too many virtio devices: at most 14");
}

#[test]
fn unusable_shares() {
    let dir = scratch("bad-shares");
    let file = write(&dir, "plain-file", b"x");
    let cases: [(String, &str); 6] = [
        (
            "tag=a,path=/nonexistent/share".into(),
            "cannot open shared directory /nonexistent/share: No such file",
        ),
        (format!("tag=a,path={file}"), "is not a directory"),
        (
            format!("tag={},path=/tmp", "t".repeat(37)),
            "must be 1 to 36 bytes",
        ),
        ("path=/tmp".into(), "a share needs tag=NAME"),
        (
            "tag=a,path=/tmp,cache=always".into(),
            "unknown share option 'cache'",
        ),
        ("tag=a".into(), "a share needs path=DIR"),
    ];
    for (spec, needle) in &cases {
        fails_with(&["--kernel", &guest(), "--fs", spec], needle);
    }
    fails_with(
        &[
            "--kernel",
            &guest(),
            "--fs",
            "tag=a,path=/tmp",
            "--fs",
            "tag=a,path=/var",
        ],
        "two shares are tagged 'a'",
    );
    fails_with(
        &["--restore", "/nonexistent", "--fs", "tag=a,path=/tmp"],
        "--fs cannot be given with --restore",
    );
}

#[test]
fn unusable_taps() {
    fails_with(
        &["--kernel", &guest(), "--net", "tap=mvt-nosuch0"],
        "tap 'mvt-nosuch0' does not exist: create it with `ip tuntap add dev mvt-nosuch0 mode tap",
    );
    fails_with(
        &["--kernel", &guest(), "--net", "tap=lo"],
        "cannot attach to tap 'lo'",
    );
    fails_with(
        &["--kernel", &guest(), "--net", "tap=a/b"],
        "is not a valid interface name",
    );
    fails_with(
        &[
            "--kernel",
            &guest(),
            "--net",
            "tap=t0,mac=01:00:00:00:00:01",
        ],
        "multicast",
    );
    fails_with(
        &["--kernel", &guest(), "--net", "ifname=t0"],
        "unknown net option 'ifname'",
    );
}

#[test]
fn config_files() {
    let dir = scratch("config-files");
    let file = |name: &str, text: &str| -> String {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let unknown = file("unknown.json", r#"{"kernel": "k", "memory": "1G"}"#);
    fails_with(&["--config", &unknown], "unknown field `memory`");
    let broken = file("broken.json", r#"{"kernel": "k","#);
    fails_with(&["--config", &broken], "broken.json: EOF while parsing");
    fails_with(
        &["--config", "/nonexistent/vm.json"],
        "cannot read config file /nonexistent/vm.json",
    );
    let bad_mem = file("mem.json", r#"{"kernel": "k", "mem": "lots"}"#);
    fails_with(&["--config", &bad_mem], "cannot parse memory size 'lots'");
}

/// A good config file boots the test guest; flags still win over it.
#[test]
fn a_good_config_file_boots_and_flags_win() {
    if !kvm_available("a_good_config_file_boots_and_flags_win") {
        return;
    }
    let dir = scratch("config-file-good");
    let file = |name: &str, text: &str| -> String {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let good = file(
        "good.json",
        &format!(
            r#"{{"kernel": {:?}, "mem": "64M", "cmdline": "guest.test=poweroff"}}"#,
            guest()
        ),
    );
    let run = run_minivmm(
        &["--config", &good],
        b"",
        std::time::Duration::from_secs(30),
    );
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains("ram_kib="), "{}", run.stdout);
    assert!(run.stdout.contains("minivmm-test-guest: poweroff"));
    let run = run_minivmm(
        &["--config", &good, "--cmdline", "guest.test=hello"],
        b"",
        std::time::Duration::from_secs(30),
    );
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.contains("minivmm-test-guest: reset"),
        "{}",
        run.stdout
    );
    // --print-config shows the merged result, which --config reads back.
    let run = run_minivmm(
        &["--config", &good, "--cpus", "2", "--print-config"],
        b"",
        std::time::Duration::from_secs(30),
    );
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains("\"cpus\": 2"), "{}", run.stdout);
    // Memory is written as a number of MiB.
    assert!(run.stdout.contains("\"mem\": 64,"), "{}", run.stdout);
}
