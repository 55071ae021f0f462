//! Stopping or dropping a VM's handle ends it within a bounded time and leaves no
//! threads, descriptors or taps behind (its own test binary, one test: the counts are
//! per process).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test, as clippy.toml allows in unit tests

mod common;

use common::*;
use std::time::{Duration, Instant};
use vmm::VmBuilder;

/// How long what a VM leaves (threads, descriptors, a tap) may take to go once it has
/// ended: generous, the checks return as soon as it has gone.
const SETTLE: Duration = Duration::from_secs(30);

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// This process's own threads (KVM's per-VM worker is checked on its own).
fn threads() -> usize {
    thread_counts("self").0
}

/// This process's threads that belong to a VM (`minivmm-events`, `minivmm-vcpuN`).
fn vm_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with("minivmm-"))
        })
        .count()
}

fn counting_vm() -> (vmm::VmHandle, vmm::ConsoleStream) {
    let mut vm = VmBuilder::new(test_guest())
        .cmdline("guest.test=count")
        .memory_mib(64)
        .console_stream()
        .start()
        .expect("start");
    let mut console = vm.take_console().unwrap();
    assert!(console
        .wait_for("tick 1", Duration::from_secs(10))
        .is_some());
    (vm, console)
}

#[test]
fn stop_and_drop_end_the_vm_and_leak_nothing() {
    if !kvm_available("api teardown") {
        return;
    }
    // One VM first: the process-wide signal handler and the test guest build are done.
    drop(counting_vm());
    // Its threads leave /proc, and its KVM worker ends, a moment after it: the
    // figures below are taken once they have.
    wait_until("the first VM's threads to leave /proc", SETTLE, || {
        vm_threads() == 0
    });
    poll_until(SETTLE, || thread_counts("self").1 == 0);
    let kvm_before = thread_counts("self").1;
    let (fds_before, threads_before) = (fds(), threads());
    for round in 0..3 {
        let (vm, _console) = counting_vm();
        assert!(threads() >= threads_before + 2, "a vCPU and the event loop");
        let start = Instant::now();
        if round % 2 == 0 {
            vm.stop();
            let exit = vm.wait();
            assert_eq!(exit.reason, vmm::ExitReason::StopRequested);
        } else {
            drop(vm);
        }
        let took = start.elapsed();
        println!("round {round}: ended in {took:?}");
        assert!(took < Duration::from_secs(5), "took {took:?}");
    }
    // A joined thread leaves /proc a moment after join returns, and KVM's worker a
    // moment after its VM's last descriptor closes: wait for that, then compare.
    poll_until(SETTLE, || {
        fds() == fds_before && threads() == threads_before
    });
    assert_eq!(fds(), fds_before, "descriptors leaked");
    assert_eq!(threads(), threads_before, "threads leaked");
    poll_until(SETTLE, || thread_counts("self").1 <= kvm_before);
    assert_eq!(thread_counts("self").1, kvm_before, "KVM workers left");
    // In the same test: the counts above are per process.
    dropped_pool_frees_its_prepared_vms(fds_before, threads_before);
    created_tap_goes_with_the_handle();
    poll_until(SETTLE, || fds() == fds_before);
    assert_eq!(fds(), fds_before, "descriptors leaked by the VM with a tap");
}

/// A tap the VM created (create=on) goes away with its handle.
fn created_tap_goes_with_the_handle() {
    let name = "mvt-api0";
    let mut net = vmm::NetConfig::new(name);
    net.create = true;
    let vm = match VmBuilder::new(test_guest())
        .cmdline("guest.test=hang")
        .memory_mib(64)
        .console(vmm::ConsoleOutput::Null)
        .net(net)
        .start()
    {
        Ok(vm) => vm,
        Err(e) if e.to_string().contains("Operation not permitted") => {
            skip("tap teardown", format!("no CAP_NET_ADMIN here ({e})"));
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let sys = std::path::Path::new("/sys/class/net").join(name);
    assert!(sys.exists());
    drop(vm);
    poll_until(SETTLE, || !sys.exists());
    assert!(!sys.exists(), "{name} outlived its VM");
}

/// A pool's prepared VMs (threads parked, guest never run) go with the pool.
fn dropped_pool_frees_its_prepared_vms(fds_before: usize, threads_before: usize) {
    let recipe = || {
        VmBuilder::new(test_guest())
            .cmdline("guest.test=hello")
            .memory_mib(64)
            .console(vmm::ConsoleOutput::Null)
    };
    let pool = vmm::VmPool::new(3, recipe).expect("pool");
    assert!(
        vm_threads() >= 6,
        "3 prepared VMs: a vCPU and an event loop each"
    );
    let vm = pool.start().expect("start from the pool");
    assert_eq!(vm.wait().reason, vmm::ExitReason::GuestReset);
    pool.wait_full();
    drop(pool);
    poll_until(SETTLE, || {
        fds() == fds_before && threads() == threads_before
    });
    assert_eq!(fds(), fds_before, "descriptors leaked by the pool");
    assert_eq!(threads(), threads_before, "threads leaked by the pool");
}
