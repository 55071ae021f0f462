//! The aarch64 build of minivmm, end to end under emulation: tests/nested/harness-aarch64.sh
//! boots Debian's arm64 kernel in qemu-system-aarch64 (TCG, EL2, GICv3) as L1, where
//! minivmm boots the same kernel as L2 to user space: with a read-only virtio-blk disk
//! it reads (then PSCI SYSTEM_OFF), with two vCPUs (then PSCI SYSTEM_RESET), and with
//! virtio-net on a tap (DHCP, ping, download and upload checked by checksum). A second
//! L1 with a GICv2 makes minivmm fall back to a GICv2 for its guest.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test, as clippy.toml allows in unit tests

mod common;

use common::nested_log::{run_harness as run_harness_script, *};
use common::skip;

fn user_space(run: &L2Run, cpus: u32) {
    let out = &run.output;
    assert_eq!(run.rc, 0, "{out}");
    assert!(out.contains("MINIVMM-GUEST: user space reached"), "{out}");
    assert_eq!(value(out, "cpus="), cpus.to_string(), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("boot-timeline boot_timer")),
        "no boot-timer write:\n{out}"
    );
}

/// Boots L1 (with a GICv`gic`) on `scenario`; returns L1's console.
fn run_harness(name: &str, gic: u32, scenario: &str) -> String {
    let envs = [
        ("MINIVMM_L2_TIMEOUT", "400".to_string()),
        ("MINIVMM_A64_GIC", gic.to_string()),
    ];
    run_harness_script("harness-aarch64.sh", name, scenario, &envs)
}

#[test]
fn aarch64_minivmm_boots_linux_to_user_space_under_emulation() {
    if std::env::var_os("MINIVMM_SKIP_NESTED_TESTS").is_some() {
        skip("aarch64 nested harness", "MINIVMM_SKIP_NESTED_TESTS is set");
        return;
    }
    let started = std::time::Instant::now();
    let log = run_harness(
        "nested-aarch64",
        3,
        r#"
echo "L1: ro.img sha256=$(sha256sum /l2/ro.img | cut -d' ' -f1)"
run_l2 a64-disk --kernel /l2/Image --initrd /l2/initramfs.cpio --mem 256M --disk path=/l2/ro.img,readonly=on,id=a64-ro --cmdline minivmm.action=disk-read --log-level info
run_l2 a64-2cpu --kernel /l2/Image --initrd /l2/initramfs.cpio --mem 256M --cpus 2
NET_BIG_MIB=4 run_l2_net a64-net mvm0 --kernel /l2/Image --initrd /l2/initramfs.cpio --mem 256M --net tap=mvm0,create=on --cmdline minivmm.action=net --log-level info
run_l2_agent_once a64-agent --kernel /l2/Image --initrd /l2/initramfs.cpio --mem 256M --cmdline minivmm.action=agent
mkdir -p /tmp/share && dd if=/dev/urandom of=/tmp/share/from-host.bin bs=64k count=16 2>/dev/null
echo "L1: fs from-host sha256=$(sha256sum /tmp/share/from-host.bin | cut -d' ' -f1)"
run_l2 a64-fs --kernel /l2/Image --initrd /l2/initramfs.cpio --mem 256M --fs tag=work,path=/tmp/share --cmdline minivmm.action=fs-roundtrip
echo "L1: fs from-guest sha256=$(sha256sum /tmp/share/from-guest.bin | cut -d' ' -f1)"
"#,
    );
    let v3_wall = started.elapsed();

    // The guest agent over virtio-vsock, and virtio-rng, on aarch64.
    let agent = section(&log, "a64-agent");
    assert_eq!(agent.rc, 0, "{}", agent.output);
    let exec = agent
        .output
        .lines()
        .find(|l| l.starts_with("AGENT: exec "))
        .unwrap_or_else(|| panic!("no exec line: {}", agent.output));
    assert_eq!(value(exec, "rc="), "0", "{exec}");
    assert_eq!(value(exec, "out="), "aarch64", "{exec}");
    let rng = agent
        .output
        .lines()
        .find(|l| l.starts_with("AGENT: hwrng "))
        .unwrap_or_else(|| panic!("no hwrng line: {}", agent.output));
    assert_eq!(value(rng, "bytes="), "32", "{rng}");
    assert!(value(rng, "current=").starts_with("virtio_rng"), "{rng}");

    // virtio-fs on aarch64: the guest mounts the share, reads what L1 put there and
    // writes a file L1 reads back, the same bytes on both sides.
    let fs_run = section(&log, "a64-fs");
    user_space(&fs_run, 1);
    let fs = fs_run.output.as_str();
    assert!(fs.contains("MINIVMM-GUEST: fs mounted"), "{fs}");
    let from_host = value(&log, "L1: fs from-host sha256=");
    assert_eq!(from_host.len(), 64, "{log}");
    assert_eq!(
        value(fs, "MINIVMM-GUEST: fs host sha256="),
        from_host,
        "{fs}"
    );
    let from_guest = value(fs, "MINIVMM-GUEST: fs guest sha256=");
    assert_eq!(from_guest.len(), 64, "{fs}");
    assert_eq!(
        value(&log, "L1: fs from-guest sha256="),
        from_guest,
        "{log}"
    );
    assert!(fs.contains("MINIVMM-GUEST: fs unmounted"), "{fs}");

    let disk_run = section(&log, "a64-disk");
    user_space(&disk_run, 1);
    let disk = disk_run.output.as_str();
    assert!(!disk.contains("the guest gets a GICv2"), "{disk}");
    // The disk the guest read is the file L1 gave minivmm, read-only, 1 MiB.
    let want = value(&log, "L1: ro.img sha256=");
    assert_eq!(want.len(), 64, "{log}");
    assert_eq!(value(disk, "MINIVMM-GUEST: vda sha256="), want, "{disk}");
    assert!(disk.contains("sectors=2048 ro=1"), "{disk}");
    // PSCI SYSTEM_OFF from `poweroff -f` ends minivmm with status 0.
    assert!(disk.contains("MINIVMM-GUEST: powering off"), "{disk}");
    assert!(disk.contains("reboot: Power down"), "{disk}");

    let smp_run = section(&log, "a64-2cpu");
    user_space(&smp_run, 2);
    let smp = smp_run.output.as_str();
    assert!(
        smp.contains("SMP: Total of 2 processors activated"),
        "{smp}"
    );
    // PSCI SYSTEM_RESET from `reboot -f`.
    assert!(smp.contains("reboot: Restarting system"), "{smp}");

    // virtio-net unchanged on aarch64: lease, ping, and transfers checked both ways.
    let net_run = section(&log, "a64-net");
    check_network(&net_run, "mvm0");
    let net = net_run.output.as_str();

    // An L1 with a GICv2: minivmm falls back to a GICv2 and the guest still boots.
    let log = run_harness(
        "nested-aarch64-gicv2",
        2,
        "run_l2 a64-gicv2 --kernel /l2/Image --initrd /l2/initramfs.cpio --mem 256M --log-level info\n",
    );
    let v2_run = section(&log, "a64-gicv2");
    user_space(&v2_run, 1);
    let v2 = v2_run.output.as_str();
    assert!(v2.contains("the guest gets a GICv2"), "{v2}");
    println!(
        "aarch64 nested: GICv3 L1 {:.0} s wall, GICv2 L1 {:.0} s; L2 boot timer (ms since minivmm start): disk {}, 2 vCPUs {}, GICv2 {}; {}",
        v3_wall.as_secs_f64(),
        (started.elapsed() - v3_wall).as_secs_f64(),
        value(disk, "boot-timeline boot_timer"),
        value(smp, "boot-timeline boot_timer"),
        value(v2, "boot-timeline boot_timer"),
        net.lines()
            .find(|l| l.contains("MINIVMM-GUEST: net download="))
            .unwrap_or("no net throughput line")
    );
}
