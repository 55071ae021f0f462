//! The embedding API with the test guest on this host's KVM: several VMs in one
//! process, pause and resume, graceful and forced stops, the console stream.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test, as clippy.toml allows in unit tests

mod common;

use common::*;
use std::time::{Duration, Instant};
use vmm::{ConsoleOutput, ExitReason, VmBuilder};

fn guest(test: &str) -> VmBuilder {
    VmBuilder::new(test_guest())
        .cmdline(&format!("guest.test={test}"))
        .memory_mib(64)
        .console_stream()
}

#[test]
fn two_vms_in_one_process_run_and_exit_independently() {
    if !kvm_available("api: two VMs") {
        return;
    }
    let mut counter = guest("count").start().expect("start the counting VM");
    let mut hello = guest("hello").start().expect("start the second VM");
    let mut counter_console = counter.take_console().unwrap();
    let mut hello_console = hello.take_console().unwrap();
    let exit = hello.wait();
    assert_eq!(exit.reason, ExitReason::GuestReset);
    assert_eq!(exit.reason.exit_code(), 0);
    assert!(hello_console.text().contains("minivmm-test-guest: reset"));
    // The other VM was not disturbed: it keeps counting.
    assert!(counter.is_running());
    assert!(counter_console
        .wait_for("tick 3", Duration::from_secs(10))
        .is_some());
    assert!(
        !hello_console.text().contains("tick"),
        "consoles are separate"
    );
    counter.stop();
    let exit = counter.wait();
    assert_eq!(exit.reason, ExitReason::StopRequested);
}

#[test]
fn pause_stops_the_guest_and_resume_continues_it() {
    if !kvm_available("api: pause") {
        return;
    }
    let mut vm = guest("count count.ms=5").start().expect("start");
    let mut console = vm.take_console().unwrap();
    assert!(console
        .wait_for("tick 3", Duration::from_secs(10))
        .is_some());
    // How long three ticks take on this host: the paused guest is watched for many
    // times that, so a guest that kept running would show it even on a slow host.
    let ticking = Instant::now();
    assert!(
        console
            .wait_for("tick 6", Duration::from_secs(30))
            .is_some(),
        "no ticks before pause:\n{}",
        console.text()
    );
    let three_ticks = ticking.elapsed();
    let watch = (three_ticks * 30).clamp(Duration::from_millis(300), Duration::from_secs(15));
    // pause() returns once every vCPU is parked, and the serial device writes to the
    // stream on the vCPU's own thread: nothing may arrive after this point.
    vm.pause().expect("pause");
    let at_pause = console.text();
    std::thread::sleep(watch);
    assert_eq!(
        console.text(),
        at_pause,
        "the guest ran while paused (watched for {watch:?})"
    );
    let last: u64 = at_pause
        .lines()
        .filter_map(|l| l.strip_prefix("tick ")?.trim().parse().ok())
        .max()
        .unwrap();
    vm.resume().expect("resume");
    let want = format!("tick {}", last + 3);
    assert!(
        console.wait_for(&want, Duration::from_secs(10)).is_some(),
        "no progress after resume:\n{}",
        console.text()
    );
    // Pausing twice, resuming twice, and stopping a paused VM all work.
    vm.pause().expect("pause again");
    vm.pause().expect("pause while paused");
    let start = Instant::now();
    vm.stop();
    let exit = vm.wait();
    assert_eq!(exit.reason, ExitReason::StopRequested);
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn shutdown_presses_the_power_button_then_forces() {
    if !kvm_available("api: shutdown") {
        return;
    }
    // A guest that listens to the power button powers off.
    let mut vm = guest("pwrbtn").start().expect("start");
    let mut console = vm.take_console().unwrap();
    assert!(console
        .wait_for("pwrbtn: armed", Duration::from_secs(10))
        .is_some());
    let exit = vm.shutdown(Duration::from_secs(10));
    assert_eq!(exit.reason, ExitReason::GuestPowerOff, "{}", console.text());
    assert!(console.text().contains("pwrbtn: pressed, powering off"));

    // One that enabled the button but does not act on it is stopped after the grace
    // period.
    let mut vm = guest("pwrbtn pwrbtn.ignore=1").start().expect("start");
    let mut console = vm.take_console().unwrap();
    assert!(console
        .wait_for("pwrbtn: armed", Duration::from_secs(10))
        .is_some());
    let start = Instant::now();
    let exit = vm.shutdown(Duration::from_millis(300));
    assert_eq!(exit.reason, ExitReason::StopRequested);
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert!(start.elapsed() < Duration::from_secs(6));

    // One that never enabled it (no ACPI driver) is stopped at once.
    let mut vm = guest("count").start().expect("start");
    let mut console = vm.take_console().unwrap();
    assert!(console
        .wait_for("tick 1", Duration::from_secs(10))
        .is_some());
    let start = Instant::now();
    let exit = vm.shutdown(Duration::from_secs(30));
    assert_eq!(exit.reason, ExitReason::StopRequested);
    assert!(start.elapsed() < Duration::from_secs(6));
}

#[test]
fn a_vm_with_a_share_runs_but_refuses_snapshots() {
    if !kvm_available("api: share") {
        return;
    }
    let dir = scratch("api-share");
    let share = dir.join("share");
    std::fs::create_dir_all(&share).unwrap();
    let mut vm = guest("count")
        .share(vmm::FsConfig::new("work", &share))
        .start()
        .expect("start with a share");
    let mut console = vm.take_console().unwrap();
    assert!(console
        .wait_for("tick 2", Duration::from_secs(10))
        .is_some());
    vm.pause().unwrap();
    let snap = dir.join("snap");
    let err = vm.snapshot(&snap).unwrap_err().to_string();
    assert!(err.contains("cannot be snapshotted"), "{err}");
    assert!(!snap.exists(), "nothing written for a refused snapshot");
    vm.resume().unwrap();
    assert!(console
        .wait_for("tick 4", Duration::from_secs(10))
        .is_some());
    vm.stop();
    assert_eq!(vm.wait().reason, ExitReason::StopRequested);
}

#[test]
fn console_output_can_go_to_a_caller_writer() {
    if !kvm_available("api: writer") {
        return;
    }
    let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let vm = VmBuilder::new(test_guest())
        .console(ConsoleOutput::Writer(Box::new(Shared(buf.clone()))))
        .start()
        .expect("start");
    let exit = vm.wait();
    assert_eq!(exit.reason, ExitReason::GuestReset);
    let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
    assert!(text.starts_with("minivmm-test-guest: hello\n"), "{text}");
    assert!(exit.timeline.get(vmm::BootEvent::FirstSerialByte).is_some());
}

#[test]
fn errors_come_back_before_anything_runs() {
    let err = VmBuilder::new("/nonexistent/vmlinux")
        .start()
        .err()
        .unwrap();
    assert!(err.to_string().contains("/nonexistent/vmlinux"), "{err}");
}

#[test]
fn a_pool_hands_out_prepared_vms_and_refills() {
    if !kvm_available("api: pool") {
        return;
    }
    let pool = vmm::VmPool::new(2, || guest("hello")).expect("prepare the pool");
    assert_eq!(pool.stats().ready, 2);
    for round in 0..3 {
        let mut vm = pool.start().expect("start from the pool");
        let mut console = vm.take_console().unwrap();
        let exit = vm.wait();
        assert_eq!(exit.reason, ExitReason::GuestReset, "round {round}");
        assert!(console.text().contains("minivmm-test-guest: reset"));
        let t = &exit.timeline;
        // Prepared ahead: the threads were up before the VM was released.
        let (started, released) = (
            t.get(vmm::BootEvent::ThreadsStarted).unwrap(),
            t.get(vmm::BootEvent::Released).unwrap(),
        );
        assert!(started <= released, "round {round}: {t}");
        assert!(t.get(vmm::BootEvent::FirstKvmRun).unwrap() >= released);
        pool.wait_full();
    }
    let stats = pool.stats();
    assert_eq!(stats.ready, 2);
    assert_eq!(stats.taken_prepared, 3, "{stats:?}");
    assert_eq!(stats.built_on_demand + stats.failures, 0, "{stats:?}");
}

#[test]
fn a_pool_whose_recipe_cannot_work_fails_when_made() {
    if !kvm_available("api: pool error") {
        return;
    }
    let err = vmm::VmPool::new(1, || VmBuilder::new("/nonexistent/kernel"))
        .err()
        .expect("a pool of VMs with no kernel");
    assert!(err.to_string().contains("/nonexistent/kernel"), "{err}");
}

/// HugePages_Total, HugePages_Free and HugePages_Rsvd from /proc/meminfo.
fn huge_page_counts() -> (u64, u64, u64) {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let field = |name: &str| -> u64 {
        let line = text.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (
        field("HugePages_Total:"),
        field("HugePages_Free:"),
        field("HugePages_Rsvd:"),
    )
}

#[test]
fn huge_page_memory_is_reserved_while_the_vm_runs_and_returned_after() {
    if !kvm_available("api: huge pages") {
        return;
    }
    const PAGES: u64 = 32; // 64 MiB of 2 MiB pages
    let sysctl = "/proc/sys/vm/nr_hugepages";
    let before = std::fs::read_to_string(sysctl).unwrap();
    let (total, free, _) = huge_page_counts();
    let wanted = total - free + PAGES;
    if std::fs::write(sysctl, wanted.to_string()).is_err() {
        skip("api: huge pages", "cannot reserve huge pages (needs root)");
        return;
    }
    let run = || -> Result<(), String> {
        let (_, free, _) = huge_page_counts();
        if free < PAGES {
            return Err(format!("the kernel reserved only {free} huge pages"));
        }
        let mut vm = guest("count")
            .hugepages(true)
            .start()
            .map_err(|e| e.to_string())?;
        let mut console = vm.take_console().unwrap();
        let ticked = console.wait_for("tick 2", Duration::from_secs(10));
        // Every page is the VM's while it runs: faulted in (no longer free) or
        // reserved for it.
        let (_, free_now, rsvd_now) = huge_page_counts();
        vm.stop();
        let exit = vm.wait();
        if ticked.is_none() || exit.reason != ExitReason::StopRequested {
            return Err(format!("the guest did not run: {:?}", exit.reason));
        }
        if free - free_now + rsvd_now != PAGES {
            return Err(format!(
                "{PAGES} huge pages expected in use, saw free {free} -> {free_now}, reserved {rsvd_now}"
            ));
        }
        let (_, free_after, rsvd_after) = huge_page_counts();
        if (free_after, rsvd_after) != (free, 0) {
            return Err(format!(
                "huge pages not returned: free {free_after} of {free}, reserved {rsvd_after}"
            ));
        }
        Ok(())
    };
    let outcome = run();
    std::fs::write(sysctl, before.trim()).unwrap();
    outcome.unwrap();
}
