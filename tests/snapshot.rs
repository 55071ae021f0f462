//! Snapshots of a running test guest through the library: refused while it runs,
//! written whole once it is paused (a state file that parses and checks, the guest's
//! memory), and the VM runs on after it; restored in a new VM (or a new minivmm
//! process), the guest goes on where it stopped: the test guest's count, a virtio-blk
//! request stream, a Linux kernel mid-boot.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test, as clippy.toml allows in unit tests
#![cfg(target_arch = "x86_64")] // snapshots are x86_64-only for now

mod common;

use common::*;
use std::time::Duration;
use vmm::VmBuilder;

/// The test guest counting every 5 ms on its console, 64 MiB, started and seen to
/// print `marker`.
fn counting_vm(marker: &str) -> (vmm::VmHandle, vmm::ConsoleStream) {
    let mut vm = VmBuilder::new(test_guest())
        .cmdline("guest.test=count count.ms=5")
        .memory_mib(64)
        .console_stream()
        .start()
        .expect("start");
    let mut console = vm.take_console().unwrap();
    assert!(console.wait_for(marker, Duration::from_secs(10)).is_some());
    (vm, console)
}

#[test]
fn a_paused_vm_snapshots_into_a_directory_and_runs_on() {
    if !kvm_available("snapshot") {
        return;
    }
    let (vm, mut console) = counting_vm("tick 3");
    let dir = scratch("snapshot").join("snap");

    let err = vm.snapshot(&dir).unwrap_err().to_string();
    assert!(err.contains("pause the VM first"), "{err}");
    assert!(!dir.join("state").exists());

    vm.pause().unwrap();
    vm.snapshot(&dir).unwrap();
    let state = vmm::snapshot::read_state(&dir).unwrap();
    assert_eq!(state.vcpus.len(), 1);
    assert_eq!(state.spec.mem_size, 64 << 20);
    assert_eq!(
        state.spec.cmdline.as_deref(),
        Some("guest.test=count count.ms=5")
    );
    let total: u64 = state.memory.iter().map(|r| r.size).sum();
    assert_eq!(total, 64 << 20);
    let memory = std::fs::read(dir.join("memory")).unwrap();
    assert_eq!(memory.len() as u64, total);
    // The guest's code is in it: the vCPU runs in the test guest's image, which the
    // loader put in RAM, so the bytes at its RIP are not all zero.
    let rip = usize::try_from(state.vcpus[0].regs_rip()).unwrap();
    assert!(rip < memory.len(), "rip {rip:#x}");
    assert!(memory[rip..rip + 16].iter().any(|&b| b != 0));
    // The UART's line control the guest programmed (8 data bits) is in the state.
    assert_eq!(state.legacy.serial.line_control & 0x3, 0x3);

    // A second snapshot of the same pause is the same guest.
    let again = dir.with_file_name("snap2");
    vm.snapshot(&again).unwrap();
    assert_eq!(std::fs::read(again.join("memory")).unwrap(), memory);

    // One flipped bit in the state file: refused, naming the corruption.
    let mut bytes = std::fs::read(dir.join("state")).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(dir.join("state"), &bytes).unwrap();
    let err = vmm::snapshot::read_state(&dir).err().unwrap().to_string();
    assert!(err.contains("corrupt"), "{err}");

    vm.resume().unwrap();
    let next = console.wait_for("tick", Duration::from_secs(10));
    assert!(next.is_some(), "the guest runs on after its snapshot");
    vm.stop();
    let exit = vm.wait();
    assert_eq!(exit.reason, vmm::ExitReason::StopRequested);
}

/// The last complete `tick N` line of `text`, and what follows it (a line the guest
/// was in the middle of).
fn last_tick(text: &str) -> (u64, String) {
    let (done, partial) = text.rsplit_once('\n').unwrap_or(("", text));
    let n = done
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("tick ")?.parse().ok())
        .expect("a tick line");
    (n, partial.to_string())
}

#[test]
fn a_restored_vm_continues_its_count_in_a_new_vm() {
    if !kvm_available("snapshot restore") {
        return;
    }
    let dir = scratch("snapshot-restore").join("snap");
    let (n, partial) = snapshot_counting_guest(&dir);

    let mut restored = VmBuilder::restore(&dir)
        .expect("open the snapshot")
        .console_stream()
        .start()
        .expect("restore");
    let mut out = restored.take_console().unwrap();
    let first = out
        .wait_for("", Duration::from_secs(10))
        .expect("the restored guest prints");
    // No restart (the count goes on from where it was) and no gap (the line the
    // guest was writing is finished, then the next one).
    assert_eq!(
        format!("{partial}{first}"),
        format!("tick {}", n + 1),
        "before: {partial:?}, after: {first:?}"
    );
    let next = out.wait_for("tick", Duration::from_secs(10)).unwrap();
    assert_eq!(next, format!("tick {}", n + 2));

    // The clone is a new VM generation: its VMGenID (ACPI VM_GEN_COUNTER) differs
    // from the one the original booted with, which was set (not all zero). The clone
    // snapshots into the directory it was restored from, whose memory file it maps:
    // the new file replaces the old one without touching the mapping.
    let id = |d: &std::path::Path| {
        let memory = std::fs::read(d.join("memory")).unwrap();
        let at = arch::layout::VMGENID_ADDR as usize;
        memory[at..at + arch::layout::VMGENID_SIZE].to_vec()
    };
    let original = id(&dir);
    restored.pause().unwrap();
    restored.snapshot(&dir).unwrap();
    let clone = id(&dir);
    assert!(original.iter().any(|&b| b != 0), "{original:?}");
    assert_ne!(original, clone);
    restored.resume().unwrap();
    assert!(out.wait_for("tick", Duration::from_secs(10)).is_some());
    restored.stop();
    assert_eq!(restored.wait().reason, vmm::ExitReason::StopRequested);
    // And the replaced snapshot restores.
    let mut again = VmBuilder::restore(&dir)
        .unwrap()
        .console_stream()
        .start()
        .unwrap();
    let mut again_out = again.take_console().unwrap();
    assert!(again_out
        .wait_for("tick", Duration::from_secs(10))
        .is_some());
    again.stop();
    again.wait();
}

/// A paused count guest snapshotted into `dir`; the last complete tick and the
/// partial line after it.
fn snapshot_counting_guest(dir: &std::path::Path) -> (u64, String) {
    let (vm, mut console) = counting_vm("tick 5");
    vm.pause().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let last = last_tick(&console.text());
    vm.snapshot(dir).unwrap();
    vm.stop();
    vm.wait();
    last
}

/// A copy of snapshot `src` in `dst` whose state file is `state` and whose memory
/// file is the original's (a link) unless `memory` gives other bytes.
fn variant(src: &std::path::Path, dst: &std::path::Path, state: &[u8], memory: Option<&[u8]>) {
    std::fs::create_dir_all(dst).unwrap();
    std::fs::write(dst.join("state"), state).unwrap();
    match memory {
        Some(bytes) => std::fs::write(dst.join("memory"), bytes).unwrap(),
        None => std::os::unix::fs::symlink(src.join("memory"), dst.join("memory")).unwrap(),
    }
}

#[test]
fn minivmm_restore_continues_and_refuses_bad_snapshots() {
    if !kvm_available("minivmm --restore") {
        return;
    }
    let base = scratch("snapshot-cli");
    let dir = base.join("snap");
    let (n, partial) = snapshot_counting_guest(&dir);
    let d = dir.to_str().unwrap();

    let run = run_minivmm(&["--restore", d], b"", Duration::from_secs(3));
    let first = run.stdout.lines().next().unwrap_or("");
    assert_eq!(
        format!("{partial}{first}"),
        format!("tick {}", n + 1),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    assert!(run.stdout.contains(&format!("tick {}\n", n + 2)));

    // Flags that describe a VM do not go with a snapshot, which describes its own.
    let run = run_minivmm(
        &["--restore", d, "--mem", "1G"],
        b"",
        Duration::from_secs(10),
    );
    assert_one_line_error(&run, "--mem");
    // Backends are this VM's own, but as many as the guest knows.
    let run = run_minivmm(
        &["--restore", d, "--disk", "path=/dev/null"],
        b"",
        Duration::from_secs(10),
    );
    assert_one_line_error(&run, "has 0 disks; 1 were given");

    let state = std::fs::read(dir.join("state")).unwrap();
    let memory_len = std::fs::metadata(dir.join("memory")).unwrap().len() as usize;
    let mut flipped = state.clone();
    flipped[state.len() / 2] ^= 0x01;
    let mut header = snapshot::Header::decode(&state).unwrap();
    header.origin.version = "0.0.1".into();
    let mut old_version = header.encode().to_vec();
    old_version.extend_from_slice(&state[snapshot::HEADER_LEN..]);
    let short_memory = vec![0u8; memory_len - 4096];
    // (name, state file, memory file (None: the good one), what the error says)
    type Case<'a> = (&'a str, &'a [u8], Option<&'a [u8]>, &'a str);
    let cases: [Case; 4] = [
        ("truncated", &state[..state.len() / 2], None, "truncated"),
        ("flipped", &flipped, None, "corrupt"),
        (
            "old-version",
            &old_version,
            None,
            "written by minivmm 0.0.1",
        ),
        (
            "short-memory",
            &state,
            Some(&short_memory),
            "bytes; the state file describes",
        ),
    ];
    for (name, state, memory, says) in cases {
        let bad = base.join(name);
        variant(&dir, &bad, state, memory);
        let run = run_minivmm(
            &["--restore", bad.to_str().unwrap()],
            b"",
            Duration::from_secs(10),
        );
        assert_one_line_error(&run, says);
        assert!(run.stdout.is_empty(), "{name}: nothing ran: {}", run.stdout);
    }
    let run = run_minivmm(
        &["--restore", base.join("missing").to_str().unwrap()],
        b"",
        Duration::from_secs(10),
    );
    assert_one_line_error(&run, "No such file");
}

/// The number in the last complete "blk-stream: N ok" line of `text`.
fn last_round(text: &str) -> u64 {
    let (done, _) = text.rsplit_once('\n').unwrap_or(("", text));
    done.lines()
        .rev()
        .find_map(|l| {
            l.trim()
                .strip_prefix("blk-stream: ")?
                .strip_suffix(" ok")?
                .parse()
                .ok()
        })
        .expect("a blk-stream line")
}

#[test]
fn a_virtio_blk_request_stream_goes_on_after_a_restore() {
    if !kvm_available("snapshot blk stream") {
        return;
    }
    let base = scratch("snapshot-blk");
    let image = base.join("disk.img");
    std::fs::write(&image, vec![0u8; 64 * 512]).unwrap();
    let mut vm = VmBuilder::new(test_guest())
        .cmdline("guest.test=blk-stream")
        .memory_mib(64)
        .disk(vmm::DiskConfig::new(&image))
        .console_stream()
        .start()
        .expect("start");
    let mut console = vm.take_console().unwrap();
    assert!(console
        .wait_for("blk-stream: 300 ok", Duration::from_secs(20))
        .is_some());
    // Paused mid-stream: requests in flight are served before the state is taken.
    vm.pause().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let n = last_round(&console.text());
    let dir = base.join("snap");
    vm.snapshot(&dir).unwrap();
    vm.stop();
    vm.wait();

    // The same image (the original is gone): the guest goes on writing and reading
    // back, and every round still matches.
    let mut restored = VmBuilder::restore(&dir)
        .expect("open the snapshot")
        .console_stream()
        .start()
        .expect("restore");
    let mut out = restored.take_console().unwrap();
    for k in 1..=3 {
        let line = out
            .wait_for("blk-stream:", Duration::from_secs(20))
            .unwrap_or_else(|| panic!("no blk-stream line after the restore: {}", out.text()));
        assert_eq!(
            line,
            format!("blk-stream: {} ok", n + 100 * k),
            "{}",
            out.text()
        );
    }
    restored.stop();
    restored.wait();
}

/// A Linux guest snapshotted mid-boot (20 s in where this host emulates guest code and
/// the boot takes minutes; right after its first console line elsewhere), restored in a
/// new VM: the kernel goes on from where it was, without starting over, to `Run /init`.
#[test]
fn a_linux_guest_snapshotted_mid_boot_reaches_init_after_a_restore() {
    let Some(kernel_dir) = linux_guest("snapshot mid-boot Linux") else {
        return;
    };
    let dir = scratch("snapshot-linux");
    let initrd = guest_initramfs(&dir, false);
    let emulated = host_emulates_guest_code();
    let mut vm = VmBuilder::new(kernel_dir.join("vmlinux"))
        .initrd(&initrd)
        .memory_mib(256)
        .console_stream()
        .start()
        .expect("boot");
    let mut console = vm.take_console().unwrap();
    assert!(console
        .wait_for("Linux version", Duration::from_secs(120))
        .is_some());
    if emulated {
        std::thread::sleep(Duration::from_secs(20));
    }
    vm.pause().unwrap();
    let before = console.text();
    assert!(
        !before.contains("Run /init"),
        "the boot reached /init before the snapshot:\n{before}"
    );
    let snap = dir.join("snap");
    vm.snapshot(&snap).unwrap();
    vm.stop();
    vm.wait();
    let last = before
        .lines()
        .rfind(|l| l.starts_with('['))
        .unwrap_or_default();
    println!("snapshot taken after: {last}");

    let mut restored = VmBuilder::restore(&snap)
        .expect("open the snapshot")
        .console_stream()
        .start()
        .expect("restore");
    let mut out = restored.take_console().unwrap();
    let init = out.wait_for("Run /init as init process", Duration::from_secs(480));
    let text = out.text();
    assert!(init.is_some(), "no Run /init after the restore:\n{text}");
    assert!(
        !text.contains("Linux version"),
        "the restored guest started over:\n{text}"
    );
    // Its first line continues the saved boot: the kernel's clock goes on from there.
    let stamp =
        |l: &str| -> Option<f64> { l.strip_prefix('[')?.split(']').next()?.trim().parse().ok() };
    let first = text
        .lines()
        .find_map(stamp)
        .expect("a kernel line after the restore");
    let saved = stamp(last).expect("a kernel line before the snapshot");
    assert!(first >= saved, "restored at {first} s, saved at {saved} s");
    let exit = restored.wait_timeout(Duration::from_secs(120));
    assert!(exit.is_some(), "the restored guest did not stop");
}
