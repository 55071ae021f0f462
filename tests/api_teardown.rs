//! Stopping or dropping a VM's handle ends it within a bounded time and leaves no
//! threads or descriptors behind (its own test binary: the counts are per process).

mod common;

use common::*;
use std::time::{Duration, Instant};
use vmm::VmBuilder;

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
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
    assert_eq!(fds(), fds_before, "descriptors leaked");
    assert_eq!(threads(), threads_before, "threads leaked");
}
