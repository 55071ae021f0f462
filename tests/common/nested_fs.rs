//! virtio-fs in the nested harness: the L1 side of the scenario (the shares, the
//! directory beside them that must not change, the checks after the guest is done)
//! and the assertions on its log. The guest side is `fs_test` in resources/guest/init.

use super::nested_log::{section, value};

/// L1 shell for the scenario: prepares `/tmp/fs-work` (read-write share, with 64 MiB
/// from L1 and links out of it), `/tmp/fs-ro` (read-only share, with a busybox tree's
/// tarball) and `/tmp/fs-outside` (beside the shares), runs the L2 with both shares,
/// then reports what L1 sees.
pub const FS_SCENARIO: &str = r#"
rm -rf /tmp/fs-work /tmp/fs-ro /tmp/fs-outside /tmp/fs-tree
mkdir -p /tmp/fs-work /tmp/fs-ro /tmp/fs-outside /tmp/fs-tree/bin
echo outside-secret > /tmp/fs-outside/secret
dd if=/dev/urandom of=/tmp/fs-work/host64.bin bs=1M count=64 2>/dev/null
echo "L1: fs host64 sha256=$(sha256sum /tmp/fs-work/host64.bin | cut -d' ' -f1)"
ln -s /tmp/fs-outside /tmp/fs-work/abs
ln -s ../fs-outside /tmp/fs-work/rel
echo read-only-content > /tmp/fs-ro/file
cp /bin/busybox /tmp/fs-tree/bin/ && /bin/busybox --install -s /tmp/fs-tree/bin && mkdir -p /tmp/fs-tree/etc/deep/er && echo cfg > /tmp/fs-tree/etc/deep/er/conf
tar -cf /tmp/fs-ro/tree.tar -C /tmp/fs-tree .
fs_state() { (cd /tmp && find fs-outside fs-ro -exec stat -c '%n %s %a %Y' {} + | sort | sha256sum | cut -d' ' -f1); }
echo "L1: fs outside before $(fs_state)"
ls / > /tmp/fs-root-before
run_l2 fs --kernel /l2/vmlinux --initrd /l2/initramfs.cpio --mem 256M --fs tag=work,path=/tmp/fs-work --fs tag=ro,path=/tmp/fs-ro,readonly=on --cmdline 'noxsave minivmm.action=fs'
echo "L1: fs outside after $(fs_state)"
ls / > /tmp/fs-root-after
echo "L1: fs root entries unchanged=$(cmp -s /tmp/fs-root-before /tmp/fs-root-after && echo yes || echo no)"
echo "L1: fs guest64 sha256=$(sha256sum /tmp/fs-work/guest64.bin | cut -d' ' -f1)"
echo "L1: fs ops renamed=$(tr '\n' , < /tmp/fs-work/ops/renamed) mode=$(stat -c %a /tmp/fs-work/ops/renamed) link=$(readlink /tmp/fs-work/ops/link) trunc=$(stat -c %s /tmp/fs-work/ops/trunc) synced=$(stat -c %s /tmp/fs-work/ops/synced) synced-mode=$(stat -c %a /tmp/fs-work/ops/synced) fifo=$(stat -c %F /tmp/fs-work/fifo | tr ' ' -)"
echo "L1: fs device nodes=$(find /tmp/fs-work \( -type b -o -type c \) | wc -l) hardlink=$(ls /tmp/fs-work/hardlink 2>/dev/null | wc -l)"
echo "L1: fs tree entries=$(cd /tmp/fs-work/tree && find . | wc -l) sha256=$(cd /tmp/fs-work/tree && find . -type f | sort | xargs sha256sum | sha256sum | cut -d' ' -f1)"
echo "L1: fs tree source entries=$(cd /tmp/fs-tree && find . | wc -l)"
"#;

/// The checks on the scenario's log.
pub fn check_fs(log: &str) {
    let run = section(log, "fs");
    let out = &run.output;
    assert_eq!(run.rc, 0, "{out}");
    let guest = |key: &str| value(out, &format!("MINIVMM-GUEST: fs {key}")).to_string();
    assert!(
        out.contains("MINIVMM-GUEST: fs mounted work /mnt/work virtiofs rw"),
        "{out}"
    );
    assert!(
        out.contains("MINIVMM-GUEST: fs mounted ro /mnt/ro virtiofs"),
        "{out}"
    );
    // Every operation worked, as the guest saw it...
    for op in [
        "mount-work",
        "mount-ro",
        "mkdir",
        "create",
        "write",
        "read",
        "rename",
        "symlink",
        "readlink",
        "chmod",
        "truncate",
        "fsync",
        "unlink",
        "rmdir",
        "mkfifo",
        "suid-chmod",
        "tar-x",
    ] {
        let line = format!("MINIVMM-GUEST: fs op {op} ok");
        assert!(out.contains(&line), "missing '{line}' in:\n{out}");
    }
    assert!(!out.contains("FAILED"), "{out}");
    assert!(out.contains("MINIVMM-GUEST: fs unmounted"), "{out}");
    // ... and as the host sees it: contents, mode, link, sizes, a FIFO, and no
    // set-user-ID bit although the guest asked for one.
    let l1_ops = value(log, "L1: fs ops renamed=");
    assert_eq!(l1_ops, "hello,world,", "{log}");
    for (key, want) in [
        ("mode=", "640"),
        ("link=", "renamed"),
        ("trunc=", "3"),
        ("synced=", "16384"),
        ("synced-mode=", "755"),
        ("fifo=", "fifo"),
    ] {
        let line = log
            .lines()
            .find(|l| l.starts_with("L1: fs ops"))
            .unwrap_or("");
        assert_eq!(value(line, key), want, "{key} in {line}");
    }
    // 64 MiB each way, the same bytes on both sides.
    let host64 = value(log, "L1: fs host64 sha256=");
    assert_eq!(host64.len(), 64, "{log}");
    assert_eq!(guest("host64 sha256="), host64, "{out}");
    let guest64 = guest("guest64 sha256=");
    assert_eq!(guest64.len(), 64, "{out}");
    assert_eq!(value(log, "L1: fs guest64 sha256="), guest64);
    // The read-only share refused all seven changes.
    assert!(
        out.contains("MINIVMM-GUEST: fs ro content=read-only-content"),
        "{out}"
    );
    assert!(out.contains("MINIVMM-GUEST: fs ro refused 7 of 7"), "{out}");
    // Each escape failed, and nothing outside the shares changed.
    for escape in [
        "abs-symlink",
        "rel-symlink",
        "hardlink",
        "block-device",
        "char-device",
    ] {
        let line = format!("MINIVMM-GUEST: fs escape {escape} refused");
        assert!(out.contains(&line), "missing '{line}' in:\n{out}");
    }
    assert!(out.contains("MINIVMM-GUEST: fs race done"), "{out}");
    assert_eq!(
        value(log, "L1: fs outside before"),
        value(log, "L1: fs outside after"),
        "the directory beside the shares (or the read-only share) changed:\n{log}"
    );
    assert_eq!(value(log, "L1: fs root entries unchanged="), "yes", "{log}");
    assert_eq!(value(log, "L1: fs device nodes="), "0", "{log}");
    let l1_nodes = log
        .lines()
        .find(|l| l.starts_with("L1: fs device nodes"))
        .unwrap_or("");
    assert_eq!(value(l1_nodes, "hardlink="), "0", "{l1_nodes}");
    // The unpacked tree: every entry of the source, the same bytes, on both sides.
    let source = value(log, "L1: fs tree source entries=");
    assert_eq!(value(log, "L1: fs tree entries="), source, "{log}");
    assert!(source.parse::<u32>().unwrap_or(0) > 100, "{log}");
    assert_eq!(guest("tree entries="), source, "{out}");
    let tree_line = log
        .lines()
        .find(|l| l.starts_with("L1: fs tree entries"))
        .unwrap_or("");
    assert_eq!(guest("tree entries=").len(), source.len());
    let guest_tree = out
        .lines()
        .find(|l| l.contains("MINIVMM-GUEST: fs tree entries"))
        .unwrap_or("");
    assert_eq!(
        value(guest_tree, "sha256="),
        value(tree_line, "sha256="),
        "{out}"
    );
    assert_eq!(value(tree_line, "sha256=").len(), 64, "{tree_line}");
    for line in out
        .lines()
        .filter(|l| l.contains("MINIVMM-GUEST: fs 64MiB") || l.contains("tar-x s="))
    {
        println!("nested fs: {line}");
    }
}
