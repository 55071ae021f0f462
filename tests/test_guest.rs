//! The freestanding test guest on this host's /dev/kvm: exact serial output, memory
//! sizes, SMP description, console input, failure exits, signals, boot timeline.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test, as clippy.toml allows in unit tests

mod common;

use common::*;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);

/// RAM the e820 map reports for `mib` of guest memory: all of it minus the
/// EBDA..1 MiB hole (0x9fc00..0x100000 = 385 KiB).
fn e820_ram_kib(mib: u64) -> u64 {
    mib * 1024 - 385
}

fn guest_args(extra: &[&str]) -> Vec<String> {
    let guest = test_guest();
    let mut v = vec!["--kernel".to_string(), guest.display().to_string()];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn run_guest(extra: &[&str], stdin: &[u8]) -> Run {
    let args = guest_args(extra);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run_minivmm(&refs, stdin, DEADLINE)
}

#[test]
fn boots_and_resets_with_exact_output_at_128m_2g_and_4g() {
    if !kvm_available("boots_and_resets_with_exact_output_at_128m_2g_and_4g") {
        return;
    }
    // 4G is split around the MMIO gap: two memory slots, RAM above 4 GiB in the e820 map.
    for (mem, mib) in [("128M", 128), ("2G", 2048), ("4G", 4096)] {
        let run = run_guest(&["--mem", mem], b"");
        assert_eq!(run.status, Some(0), "mem {mem}: {}", run.stderr);
        assert_eq!(
            run.stdout,
            format!(
                "minivmm-test-guest: hello\nram_kib={}\nminivmm-test-guest: reset\n",
                e820_ram_kib(mib)
            )
        );
        assert_eq!(run.stderr, "", "a clean run prints nothing on stderr");
    }
}

#[test]
fn two_vcpus_appear_in_the_mp_table_with_their_apic_ids() {
    if !kvm_available("two_vcpus_appear_in_the_mp_table_with_their_apic_ids") {
        return;
    }
    for (cpus, ids) in [("2", "0,1"), ("4", "0,1,2,3")] {
        let run = run_guest(&["--cpus", cpus, "--cmdline", "guest.test=mptable"], b"");
        assert_eq!(run.status, Some(0), "{cpus} vCPUs: {}", run.stderr);
        for line in [
            format!("mptable: apic_ids={ids} cpus={cpus}\n"),
            "bsp: lapic_id=0 cpuid_apic_id=0\n".to_string(),
        ] {
            assert!(run.stdout.contains(&line), "{cpus} vCPUs: {}", run.stdout);
        }
        assert!(
            run.stdout.ends_with("minivmm-test-guest: reset\n"),
            "{cpus} vCPUs: {}",
            run.stdout
        );
    }
}

#[test]
fn acpi_tables_are_found_through_the_zero_page() {
    if !kvm_available("acpi_tables_are_found_through_the_zero_page") {
        return;
    }
    let run = run_guest(&["--cpus", "2", "--cmdline", "guest.test=acpi"], b"");
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.contains("acpi: rsdp=0xe0000 xsdt=FACP,APIC\n"),
        "{}",
        run.stdout
    );
}

#[test]
fn acpi_poweroff_ends_the_vm_with_status_0() {
    if !kvm_available("acpi_poweroff_ends_the_vm_with_status_0") {
        return;
    }
    let run = run_guest(
        &["--cmdline", "guest.test=poweroff", "--log-level", "info"],
        b"",
    );
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.ends_with("minivmm-test-guest: poweroff\n"),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("guest powered off"), "{}", run.stderr);
}

#[test]
fn console_input_reaches_the_guest() {
    if !kvm_available("console_input_reaches_the_guest") {
        return;
    }
    let run = run_guest(&["--cmdline", "guest.test=echo"], b"hello from the host\n");
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    assert!(
        run.stdout
            .contains("echo: ready\necho: hello from the host\n"),
        "{}",
        run.stdout
    );
}

#[test]
fn console_log_file_gets_the_output() {
    if !kvm_available("console_log_file_gets_the_output") {
        return;
    }
    let dir = scratch("console-log");
    let log = dir.join("console.txt");
    let run = run_guest(&["--console-log", log.to_str().unwrap()], b"");
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, "");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("minivmm-test-guest: hello\n"), "{text}");
}

#[test]
fn triple_fault_is_a_clear_failure() {
    if !kvm_available("triple_fault_is_a_clear_failure") {
        return;
    }
    let run = run_guest(&["--cmdline", "guest.test=triplefault"], b"");
    assert_eq!(run.status, Some(1));
    assert!(
        run.stdout.ends_with("triple fault next\n"),
        "{}",
        run.stdout
    );
    assert_one_line_error(&run, "guest triple fault (KVM_EXIT_SHUTDOWN) at RIP 0x");
}

#[test]
fn emulation_failure_reports_suberror_rip_and_bytes() {
    if !kvm_available("emulation_failure_reports_suberror_rip_and_bytes") {
        return;
    }
    let run = run_guest(&["--cmdline", "guest.test=emulfail"], b"");
    assert_eq!(run.status, Some(1));
    // POPCNT r64, m64 is f3 48 0f b8 /r.
    assert_one_line_error(
        &run,
        "KVM internal error: suberror 1 (emulation failure), RIP 0x",
    );
    assert!(
        run.stderr.contains("instruction bytes [f3 48 0f b8"),
        "{}",
        run.stderr
    );
    // Booted without the emulated-kvm preset, the error names it (POPCNT is one of
    // the instructions it keeps a Linux guest off); booted with it, it does not.
    let hint = "cannot emulate popcnt (POPCNT): boot with --cmdline-preset emulated-kvm";
    let run = run_guest(
        &[
            "--cmdline",
            "guest.test=emulfail",
            "--cmdline-preset",
            "none",
        ],
        b"",
    );
    assert_one_line_error(&run, hint);
    let run = run_guest(
        &[
            "--cmdline",
            "guest.test=emulfail",
            "--cmdline-preset",
            "emulated-kvm",
        ],
        b"",
    );
    assert_one_line_error(&run, "KVM internal error: suberror 1 (emulation failure)");
    assert!(!run.stderr.contains("--cmdline-preset"), "{}", run.stderr);
}

#[test]
fn sigterm_stops_every_vcpu_and_exits() {
    if !kvm_available("sigterm_stops_every_vcpu_and_exits") {
        return;
    }
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let args = guest_args(&["--cpus", "2", "--cmdline", "guest.test=hang"]);
        let mut child = std::process::Command::new(MINIVMM)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until the guest says it hangs, then signal.
        let mut stdout = child.stdout.take().unwrap();
        let mut seen = String::new();
        let mut buf = [0u8; 256];
        while !seen.contains("hanging\n") {
            let n = std::io::Read::read(&mut stdout, &mut buf).unwrap();
            assert!(n > 0, "guest output ended early: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(child.id() as i32, sig) };
        let start = std::time::Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "minivmm did not stop on signal {sig}"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(status.code(), Some(128 + sig), "{stderr}");
        assert_eq!(stderr.trim(), format!("minivmm: stopped by signal {sig}"));
    }
}

#[test]
fn boot_timeline_lists_every_milestone_in_order() {
    if !kvm_available("boot_timeline_lists_every_milestone_in_order") {
        return;
    }
    let run = run_guest(&["--boot-timeline"], b"");
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    // The VMM's own phases, the guest's milestones, then the teardown phases.
    let names = [
        "seccomp_ready",
        "config_checked",
        "vm_created",
        "memory_mapped",
        "devices_attached",
        "kernel_loaded",
        "vcpus_configured",
        "threads_started",
        "released",
        "first_kvm_run",
        "first_serial_byte",
        "boot_timer",
        "exit_seen",
        "exit",
        "kvm_released",
        "freed",
    ];
    let mut last = 0.0f64;
    let mut lines = run.stderr_lines();
    // Then how much guest RAM the host held at the end: the test guest touches little.
    let touched = lines.pop().unwrap_or_default();
    let fields: Vec<&str> = touched.split_whitespace().collect();
    assert_eq!(
        fields.first(),
        Some(&"guest-memory-touched"),
        "{}",
        run.stderr
    );
    let kib: u64 = fields[1].parse().unwrap();
    assert!(kib > 0 && kib < 16 << 10, "{}", run.stderr);
    assert_eq!(lines.len(), names.len(), "{}", run.stderr);
    for (line, name) in lines.iter().zip(names) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[0], "boot-timeline");
        assert_eq!(fields[1], name, "{}", run.stderr);
        let ms: f64 = fields[2].parse().unwrap();
        assert!(ms >= last, "{}", run.stderr);
        last = ms;
    }
}

/// With a terminal on stdin, minivmm switches it to raw mode while the guest runs and
/// restores it when it exits, here on SIGTERM and on a guest reset.
#[test]
fn terminal_is_raw_while_running_and_restored_on_exit() {
    if !kvm_available("terminal_is_raw_while_running_and_restored_on_exit") {
        return;
    }
    use std::process::Stdio;

    for (test, signal) in [("hang", Some(libc::SIGTERM)), ("echo", None)] {
        let (master_fd, slave_fd) = pty();
        let slave = &slave_fd;
        assert_ne!(lflag(slave) & libc::ICANON, 0, "a new pty starts canonical");
        let args = guest_args(&["--cmdline", &format!("guest.test={test}")]);
        let mut child = std::process::Command::new(MINIVMM)
            .args(&args)
            .stdin(Stdio::from(slave_fd.try_clone().unwrap()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let marker = if test == "hang" {
            "hanging\n"
        } else {
            "echo: ready\n"
        };
        read_until(&mut out, marker);
        assert_eq!(
            lflag(slave) & (libc::ICANON | libc::ECHO),
            0,
            "raw mode while the guest runs"
        );
        match signal {
            // SAFETY: signalling our own child.
            Some(sig) => unsafe {
                libc::kill(child.id() as i32, sig);
            },
            None => {
                let mut m = std::fs::File::from(master_fd.try_clone().unwrap());
                std::io::Write::write_all(&mut m, b"hi\r").unwrap();
            }
        }
        let status = child.wait().unwrap();
        assert!(
            status.code().is_some(),
            "minivmm died of a signal: {status}"
        );
        assert_ne!(
            lflag(slave) & libc::ICANON,
            0,
            "canonical mode restored after '{test}'"
        );
        assert_ne!(lflag(slave) & libc::ECHO, 0, "echo restored after '{test}'");
        drop(master_fd);
    }
}

/// The test guest's own virtio-blk driver: negotiation, a pattern written across eight
/// sectors, flush, read back, GET_ID, a request past the end (IOERR), an unknown type
/// (UNSUPP), and a write to a read-only disk, which the device itself refuses (IOERR)
/// because this driver ignores the RO feature. The host then checks the image bytes.
#[test]
fn virtio_blk_driven_by_the_test_guest() {
    if !kvm_available("virtio_blk_driven_by_the_test_guest") {
        return;
    }
    let dir = scratch("virtio-blk-guest");
    let rw = dir.join("rw.img");
    std::fs::File::create(&rw)
        .unwrap()
        .set_len(64 << 10)
        .unwrap();
    let ro = dir.join("ro.img");
    let ro_bytes: Vec<u8> = (0..4096u32).map(|i| (i * 31 % 256) as u8).collect();
    std::fs::write(&ro, &ro_bytes).unwrap();
    let rw_spec = format!("path={},id=guest-rw", rw.display());
    let ro_spec = format!("path={},readonly=on", ro.display());
    let run = run_guest(
        &[
            "--cmdline",
            "guest.test=blk",
            "--disk",
            &rw_spec,
            "--disk",
            &ro_spec,
        ],
        b"",
    );
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "minivmm-test-guest: hello\n\
         ram_kib=130687\n\
         blk0: capacity=128\n\
         blk0: write status=0 len=1\n\
         blk0: flush status=0 len=1\n\
         blk0: read status=0 len=4097\n\
         blk0: read back matches\n\
         blk0: get-id status=0 len=21\n\
         blk0: id=guest-rw\n\
         blk0: beyond-end status=1 len=1\n\
         blk0: unsupported status=2 len=1\n\
         blk1: read-only write status=1\n\
         minivmm-test-guest: reset\n"
    );
    // The guest's pattern is in sectors 2..10 of the file and nowhere else.
    let image = std::fs::read(&rw).unwrap();
    let pattern = |i: usize| ((i as u64 * 7 + 2 * 13) as u8) ^ 0x5a;
    assert!(image[..1024].iter().all(|b| *b == 0));
    assert!(image[1024..1024 + 4096]
        .iter()
        .enumerate()
        .all(|(i, b)| *b == pattern(i)));
    assert!(image[1024 + 4096..].iter().all(|b| *b == 0));
    assert_eq!(
        std::fs::read(&ro).unwrap(),
        ro_bytes,
        "the read-only image changed"
    );
}

/// The live (not zombie) processes other than `except` whose command line has `token`.
fn live_with(token: &str, except: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != except)
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .next();
            String::from_utf8_lossy(&cmdline).contains(token) && state != Some("Z")
        })
        .collect()
}

/// With --async-teardown on, a helper process holds the VM's KVM descriptor and
/// nothing else of minivmm's (no tap, image or eventfd) while the VM runs, and ends
/// after minivmm does, which exits at once.
#[test]
fn async_teardown_hands_the_vm_to_a_helper_that_ends_after_minivmm() {
    if !kvm_available("async_teardown_hands_the_vm_to_a_helper_that_ends_after_minivmm") {
        return;
    }
    let token = format!("teardown.test={}", std::process::id());
    let args = guest_args(&[
        "--async-teardown",
        "on",
        "--cmdline",
        &format!("guest.test=hang {token}"),
    ]);
    let mut child = std::process::Command::new(MINIVMM)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let seen = read_until(&mut stdout, "hanging\n");
    assert!(seen.contains("hanging"), "{seen}");
    let helpers = live_with(&token, child.id());
    assert_eq!(helpers.len(), 1, "one helper process: {helpers:?}");
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", helpers[0]))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|p| p.display().to_string())
        .collect();
    assert!(fds.iter().any(|f| f == "anon_inode:kvm-vm"), "{fds:?}");
    assert_eq!(
        fds.len(),
        2,
        "the VM and its lifeline, nothing else: {fds:?}"
    );
    assert!(fds.iter().any(|f| f.starts_with("pipe:")), "{fds:?}");
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGTERM));
    wait_until(
        "the teardown helper to end",
        Duration::from_secs(10),
        || live_with(&token, 0).is_empty(),
    );
}

/// The CMOS clock as the guest reads it (on the vCPU thread, under its seccomp filter):
/// the host's UTC time, and the update-ended flag the event loop sets each second.
#[test]
fn the_guest_reads_the_host_clock_from_the_cmos_and_sees_its_updates() {
    if !kvm_available("the_guest_reads_the_host_clock_from_the_cmos_and_sees_its_updates") {
        return;
    }
    let run = run_guest(&["--cmdline", "guest.test=rtc"], b"");
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    let line = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("rtc: 20"))
        .unwrap_or_else(|| panic!("no date line: {}", run.stdout));
    // "YY-MM-DD HH:MM:SS" after the century's "20": seconds since the epoch by `date`,
    // against the host's clock now (the guest read it a moment ago).
    let epoch = |args: &[&str]| -> i64 {
        let out = std::process::Command::new("date")
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    let guest = epoch(&["-u", "-d", &format!("20{line}"), "+%s"]);
    let host = epoch(&["-u", "+%s"]);
    assert!(
        (0..60).contains(&(host - guest)),
        "guest clock 20{line} ({guest}), host {host}"
    );
    assert!(
        run.stdout.contains("rtc: update-ended flag=1"),
        "{}",
        run.stdout
    );
}
