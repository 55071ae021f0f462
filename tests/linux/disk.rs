//! virtio-blk with the resources/ Linux guest on this host's KVM: an ext4 image made
//! at test time is the root file system. Read-write: the kernel probes both disks with
//! their sizes, mounts vda, and the mount is recorded in the image (the superblock's
//! mount count), which stays clean for e2fsck. Read-only: it mounts read-only and the
//! image's bytes do not change. Each boot is stopped (SIGTERM) once the root is mounted:
//! the image has no init, and how a guest ends without one differs between hosts.

use crate::common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(480);

fn mkfs(path: &Path, mib: u64) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(mib << 20).unwrap();
    let ok = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(path)
        .status()
        .expect("mkfs.ext4 (e2fsprogs)");
    assert!(ok.success());
}

fn mount_count(path: &Path) -> u32 {
    let out = Command::new("dumpe2fs")
        .arg("-h")
        .arg(path)
        .output()
        .expect("dumpe2fs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.starts_with("Mount count:"))
        .expect("Mount count line");
    line.split(':').nth(1).unwrap().trim().parse().unwrap()
}

const MOUNTED: &str = "VFS: Mounted root (ext4 filesystem)";

fn boot(test: &str, args: &[&str]) -> Option<Run> {
    let kernel = linux_guest(test)?.join("vmlinux");
    let mut all = vec![
        "--kernel",
        kernel.to_str().unwrap(),
        "--mem",
        "256M",
        "--boot-timeline",
    ];
    if host_emulates_guest_code() {
        all.extend(["--cmdline-preset", "emulated-kvm"]);
    }
    all.extend_from_slice(args);
    let run = run_until_marker(&all, MOUNTED, DEADLINE);
    println!(
        "{test}: {:.1} s wall\n{}",
        run.elapsed.as_secs_f64(),
        run.stderr
    );
    assert!(
        run.stdout.contains(MOUNTED),
        "{test}: root not mounted in time:\n{}",
        run.stdout
    );
    // Stopped by the test's SIGTERM, cleanly.
    assert_eq!(
        run.status,
        Some(128 + libc::SIGTERM),
        "{test}: {}",
        run.stderr
    );
    Some(run)
}

fn assert_lines(test: &str, out: &str, lines: &[&str]) {
    for line in lines {
        assert!(out.contains(line), "{test}: missing '{line}' in:\n{out}");
    }
}

#[test]
fn ext4_root_read_write_and_a_read_only_data_disk() {
    let test = "ext4_root_read_write_and_a_read_only_data_disk";
    let dir = scratch(test);
    let root = dir.join("root.ext4");
    mkfs(&root, 64);
    let data = dir.join("data.img");
    std::fs::write(&data, vec![0x77u8; 8 << 20]).unwrap();
    assert_eq!(mount_count(&root), 0);
    let root_spec = format!("path={},id=root-disk", root.display());
    let data_spec = format!("path={},readonly=on,id=data-ro", data.display());
    let Some(run) = boot(
        test,
        &[
            "--disk",
            &root_spec,
            "--disk",
            &data_spec,
            "--cmdline",
            "root=/dev/vda rw",
        ],
    ) else {
        return;
    };
    assert_lines(
        test,
        &run.stdout,
        &[
            "virtio_mmio.device=4K@0xd0001000:10 virtio_mmio.device=4K@0xd0002000:11",
            "virtio_blk virtio0: [vda] 131072 512-byte logical blocks (67.1 MB/64.0 MiB)",
            "virtio_blk virtio1: [vdb] 16384 512-byte logical blocks (8.39 MB/8.00 MiB)",
            "EXT4-fs (vda): mounted filesystem",
            "VFS: Mounted root (ext4 filesystem) on device 254:0.",
        ],
    );
    // The guest's writes reached the file, and left the file system consistent.
    assert_eq!(
        mount_count(&root),
        1,
        "the mount was not recorded in the image"
    );
    let fsck = Command::new("e2fsck")
        .arg("-fn")
        .arg(&root)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    assert!(std::fs::read(&data).unwrap().iter().all(|b| *b == 0x77));
}

#[test]
fn ext4_root_read_only_leaves_the_image_untouched() {
    let test = "ext4_root_read_only_leaves_the_image_untouched";
    let dir = scratch(test);
    let root = dir.join("root.ext4");
    mkfs(&root, 64);
    let before = std::fs::read(&root).unwrap();
    let spec = format!("path={},readonly=on", root.display());
    let Some(run) = boot(test, &["--disk", &spec, "--cmdline", "root=/dev/vda ro"]) else {
        return;
    };
    assert_lines(
        test,
        &run.stdout,
        &[
            "virtio_blk virtio0: [vda] 131072 512-byte logical blocks (67.1 MB/64.0 MiB)",
            "VFS: Mounted root (ext4 filesystem) readonly on device 254:0.",
        ],
    );
    assert!(
        std::fs::read(&root).unwrap() == before,
        "a read-only image changed"
    );
}
