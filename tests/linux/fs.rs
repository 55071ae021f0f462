//! virtio-fs on this host's KVM, where guest user space cannot run: a Linux guest (the
//! resources/ kernel) mounts a shared directory as its root file system
//! (`root=TAG rootfstype=virtiofs`): FUSE_INIT, lookups, attributes, an open and a read
//! of /sbin/init, all served by minivmm's file server under its seccomp filter. The
//! share's /sbin/init is not a program (an ELF header and nothing more), so the kernel
//! answers "error -8" (ENOEXEC) once it has read it, and panics for want of an init,
//! which ends the VM (pvpanic). What a guest's user space does on a share is checked
//! in the nested test (tests/nested.rs).

use crate::common::*;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(480);
const READ_INIT: &str = "Requested init /sbin/init failed (error -8)";

#[test]
fn a_linux_guest_boots_from_a_shared_directory() {
    let test = "a_linux_guest_boots_from_a_shared_directory";
    let Some(kernel) = linux_guest(test) else {
        return;
    };
    let kernel = kernel.join("vmlinux");
    let share = scratch(test).join("root");
    std::fs::create_dir_all(share.join("sbin")).unwrap();
    std::fs::create_dir_all(share.join("dev")).unwrap();
    let mut not_a_program = b"\x7fELF".to_vec();
    not_a_program.resize(256, 0);
    std::fs::write(share.join("sbin/init"), not_a_program).unwrap();
    std::fs::set_permissions(
        share.join("sbin/init"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let fs = format!("tag=rootfs,path={}", share.display());
    let mut args = vec![
        "--kernel",
        kernel.to_str().unwrap(),
        "--mem",
        "256M",
        "--fs",
        &fs,
        "--cmdline",
        "root=rootfs rootfstype=virtiofs rw init=/sbin/init",
    ];
    if host_emulates_guest_code() {
        args.extend(["--cmdline-preset", "emulated-kvm"]);
    }
    let run = run_minivmm(&args, b"", DEADLINE);
    println!(
        "{test}: {:.1} s wall\n{}",
        run.elapsed.as_secs_f64(),
        run.stderr
    );
    for line in ["VFS: Mounted root (virtiofs filesystem)", READ_INIT] {
        assert!(
            run.stdout.contains(line),
            "{test}: missing '{line}' in:\n{}",
            run.stdout
        );
    }
    // Ended by the guest's panic (no seccomp violation on the way).
    assert_eq!(run.status, Some(1), "{test}: {}", run.stderr);
    assert!(
        run.stderr.contains("the guest kernel panicked"),
        "{test}: {}",
        run.stderr
    );
    // The guest's kernel changed nothing on the share it was not asked to.
    let mut names: Vec<_> = std::fs::read_dir(&share)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["dev", "sbin"]);
}
