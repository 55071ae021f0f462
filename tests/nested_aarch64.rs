//! The aarch64 build of minivmm, end to end under emulation: tests/nested/harness-aarch64.sh
//! boots Debian's arm64 kernel in qemu-system-aarch64 (TCG, EL2, GICv3) as L1, where
//! minivmm boots the same kernel as L2 to user space: with a read-only virtio-blk disk
//! it reads (then PSCI SYSTEM_OFF), and with two vCPUs (then PSCI SYSTEM_RESET).

mod common;

use common::*;
use std::process::Command;

fn section<'a>(log: &'a str, name: &str) -> (&'a str, i32) {
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
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(-1);
    (&rest[..end], rc)
}

fn value<'a>(text: &'a str, key: &str) -> &'a str {
    text.split(key)
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or("")
}

fn user_space(out: &str, rc: i32, cpus: u32) {
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("MINIVMM-GUEST: user space reached"), "{out}");
    assert_eq!(value(out, "cpus="), cpus.to_string(), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("boot-timeline boot_timer")),
        "no boot-timer write:\n{out}"
    );
}

#[test]
fn aarch64_minivmm_boots_linux_to_user_space_under_emulation() {
    if std::env::var_os("MINIVMM_SKIP_NESTED_TESTS").is_some() {
        eprintln!("SKIPPED aarch64 nested harness: MINIVMM_SKIP_NESTED_TESTS is set");
        return;
    }
    let dir = scratch("nested-aarch64");
    let scenario = dir.join("scenario.sh");
    std::fs::write(
        &scenario,
        r#"
echo "L1: ro.img sha256=$(sha256sum /l2/ro.img | cut -d' ' -f1)"
run_l2 a64-disk --kernel /l2/Image --initrd /l2/initramfs.cpio --mem 256M --disk path=/l2/ro.img,readonly=on,id=a64-ro --cmdline minivmm.action=disk-read
run_l2 a64-2cpu --kernel /l2/Image --initrd /l2/initramfs.cpio --mem 256M --cpus 2
"#,
    )
    .unwrap();
    let log_path = dir.join("l1.log");
    let started = std::time::Instant::now();
    let status = Command::new(repo().join("tests/nested/harness-aarch64.sh"))
        .arg(&scenario)
        .arg(&log_path)
        .env("MINIVMM_L2_TIMEOUT", "400")
        .status()
        .expect("run the aarch64 harness");
    let log = std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .replace('\r', "");
    assert!(status.success(), "harness failed ({status}):\n{log}");
    assert!(
        log.contains("=== L1 KVM ready"),
        "L1 has no /dev/kvm:\n{log}"
    );
    assert!(log.contains("=== L1 DONE"), "L1 did not finish:\n{log}");

    let (disk, rc) = section(&log, "a64-disk");
    user_space(disk, rc, 1);
    // The disk the guest read is the file L1 gave minivmm, read-only, 1 MiB.
    let want = value(&log, "L1: ro.img sha256=");
    assert_eq!(want.len(), 64, "{log}");
    assert_eq!(value(disk, "MINIVMM-GUEST: vda sha256="), want, "{disk}");
    assert!(disk.contains("sectors=2048 ro=1"), "{disk}");
    // PSCI SYSTEM_OFF from `poweroff -f` ends minivmm with status 0.
    assert!(disk.contains("MINIVMM-GUEST: powering off"), "{disk}");
    assert!(disk.contains("reboot: Power down"), "{disk}");

    let (smp, rc) = section(&log, "a64-2cpu");
    user_space(smp, rc, 2);
    assert!(
        smp.contains("SMP: Total of 2 processors activated"),
        "{smp}"
    );
    // PSCI SYSTEM_RESET from `reboot -f`.
    assert!(smp.contains("reboot: Restarting system"), "{smp}");

    println!(
        "aarch64 nested: {:.0} s wall; L2 boot timer (ms since minivmm start): disk {}, 2 vCPUs {}",
        started.elapsed().as_secs_f64(),
        value(disk, "boot-timeline boot_timer"),
        value(smp, "boot-timeline boot_timer")
    );
}
