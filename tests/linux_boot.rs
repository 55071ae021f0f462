//! Real Linux guests (resources/ kernel) on this host's /dev/kvm, from ELF vmlinux and
//! from bzImage, asserting the kernel's own console lines up to `Run /init`.
//!
//! On hosts whose KVM emulates guest kernel code these boots take minutes, and guest
//! user space cannot run: the kernel panics when init dies on its first instructions,
//! reports it through pvpanic, and minivmm exits 1 with "the guest kernel panicked".
//! On hosts with hardware virtualization the guest's /init prints its marker and
//! reboots: exit 0.

mod common;

use common::*;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(480);

fn boot(test: &str, kernel_file: &str, gzip: bool, mem_mib: u64) {
    if !kvm_available(test) {
        return;
    }
    let Some(kernel_dir) = guest_kernel(test) else {
        return;
    };
    let dir = scratch(test);
    let initrd = guest_initramfs(&dir, gzip);
    let kernel = kernel_dir.join(kernel_file);
    let mem = format!("{mem_mib}M");
    let mut args = vec![
        "--kernel",
        kernel.to_str().unwrap(),
        "--initrd",
        initrd.to_str().unwrap(),
        "--mem",
        &mem,
        "--boot-timeline",
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
    let out = &run.stdout;
    assert!(
        run.elapsed < DEADLINE,
        "{test}: no exit within {DEADLINE:?}; console:\n{out}"
    );

    for line in [
        "Linux version 6.1.",
        "Command line: console=ttyS0 reboot=k panic=1",
        "found SMP MP-table at [mem 0x0009fc00-0x0009fc0f]",
        "Hypervisor detected: KVM",
        "serial8250: ttyS0 at I/O 0x3f8 (irq = 4",
        "Unpacking initramfs...",
        "Run /init as init process",
    ] {
        assert!(
            out.contains(line),
            "{test}: missing '{line}' in console:\n{out}"
        );
    }
    let total = kernel_memory_total_kib(out).expect("Memory: line");
    let want = mem_mib * 1024;
    assert!(
        total <= want && total + 4096 >= want,
        "{test}: kernel sees {total} KiB of {want} KiB"
    );

    // The guest's own stop: /init reboots (exit 0), or (here) init's death panics the
    // kernel, which reports it through pvpanic (exit 1, one clear line).
    if out.contains("MINIVMM-GUEST: user space reached") {
        assert_eq!(run.status, Some(0), "{test}: {}\n{out}", run.stderr);
    } else {
        assert!(
            out.contains("Kernel panic - not syncing: Attempted to kill init!"),
            "{test}: neither user space nor a kernel panic:\n{out}"
        );
        assert_eq!(run.status, Some(1), "{test}: {}\n{out}", run.stderr);
        assert!(
            run.stderr
                .contains("minivmm: error: the guest kernel panicked"),
            "{test}: the panic was not reported: {}",
            run.stderr
        );
    }
    assert!(
        run.stderr.contains("boot-timeline first_serial_byte"),
        "{}",
        run.stderr
    );
}

#[test]
fn elf_vmlinux_with_raw_initramfs_reaches_init() {
    boot(
        "elf_vmlinux_with_raw_initramfs_reaches_init",
        "vmlinux",
        false,
        512,
    );
}

/// The gzip initrd path is covered in the nested harness, where decompression is fast;
/// here a raw initramfs keeps the emulated boot to about two minutes.
#[test]
fn bzimage_with_raw_initramfs_reaches_init() {
    boot(
        "bzimage_with_raw_initramfs_reaches_init",
        "bzImage",
        false,
        256,
    );
}
