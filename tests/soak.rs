//! Soak: 200 boots of the test guest in one process through the library API, then 200
//! minivmm processes, on this host's KVM. Nothing may accumulate: the process's
//! threads and descriptors return to the same count after every VM, its resident
//! memory stops growing after a warm-up, and every minivmm process looks the same.
//! The figures are printed. One test function, so nothing else runs in this process.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test, as clippy.toml allows in unit tests

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vmm::{ExitReason, VmBuilder};

const BOOTS: usize = 200;
/// Boots before resident memory is compared (allocator arenas and caches settle).
const WARM_UP: usize = 20;
/// Most resident-memory growth allowed between the end of the warm-up and the last
/// boot: a leak of even 8 KiB per boot would pass 1.4 MiB over 180 boots.
const RSS_SLACK_KIB: u64 = 1024;
/// Longest wait for a figure to settle (a joined thread leaving /proc, a child's
/// set-up finishing): generous, the waits end as soon as it has.
const SETTLE: Duration = Duration::from_secs(30);

/// Resident set size (VmRSS) of `pid` in KiB.
fn rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Threads of `pid`, not counting KVM's own worker (checked on its own).
fn threads(pid: &str) -> usize {
    thread_counts(pid).0
}

fn fds(pid: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// True once process `pid` holds an epoll descriptor.
fn has_epoll(pid: &str) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|d| {
        d.filter_map(Result::ok).any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|l| l.to_string_lossy() == "anon_inode:[eventpoll]")
        })
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sample {
    rss_kib: u64,
    threads: usize,
    fds: usize,
}

fn sample(pid: &str) -> Sample {
    Sample {
        rss_kib: rss_kib(pid),
        threads: threads(pid),
        fds: fds(pid),
    }
}

fn print_samples(what: &str, samples: &[Sample]) {
    for i in [0, 9, 19, 49, 99, 149, 199] {
        if let Some(s) = samples.get(i) {
            println!(
                "soak {what}: after {:>3}: rss {:>6} KiB, threads {}, fds {}",
                i + 1,
                s.rss_kib,
                s.threads,
                s.fds
            );
        }
    }
}

fn in_process() {
    let guest = test_guest();
    poll_until(SETTLE, || thread_counts("self").1 == 0);
    let kvm_before = thread_counts("self").1;
    let before = sample("self");
    let start = Instant::now();
    let mut samples = Vec::with_capacity(BOOTS);
    for i in 0..BOOTS {
        let mut vm = VmBuilder::new(&guest)
            .memory_mib(32)
            .console_stream()
            .start()
            .unwrap_or_else(|e| panic!("boot {i}: {e}"));
        let mut console = vm.take_console().unwrap();
        let exit = vm.wait();
        assert_eq!(exit.reason, ExitReason::GuestReset, "boot {i}");
        assert!(
            console.text().contains("minivmm-test-guest: reset"),
            "boot {i}"
        );
        drop(console);
        // The VM's threads leave /proc a moment after they are joined: sample once
        // the counts are back; if they are not by the deadline, stop here and let
        // the checks below report this boot.
        let settled = poll_until(SETTLE, || {
            threads("self") == before.threads && fds("self") == before.fds
        });
        samples.push(sample("self"));
        if !settled {
            break;
        }
    }
    let elapsed = start.elapsed();
    println!(
        "soak in-process: {BOOTS} boots in {:.2} s ({:.1} ms each); before: rss {} KiB, \
         threads {}, fds {}",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0 / BOOTS as f64,
        before.rss_kib,
        before.threads,
        before.fds
    );
    print_samples("in-process", &samples);
    for (i, s) in samples.iter().enumerate() {
        assert_eq!(s.threads, before.threads, "threads after boot {}", i + 1);
        assert_eq!(s.fds, before.fds, "descriptors after boot {}", i + 1);
    }
    assert_eq!(
        samples.len(),
        BOOTS,
        "threads and descriptors did not settle within {SETTLE:?} after boot {}",
        samples.len()
    );
    poll_until(SETTLE, || thread_counts("self").1 <= kvm_before);
    assert_eq!(
        thread_counts("self").1,
        kvm_before,
        "KVM's per-VM workers outlived their VMs"
    );
    let warm = samples[WARM_UP - 1].rss_kib;
    let peak = samples[WARM_UP..]
        .iter()
        .map(|s| s.rss_kib)
        .max()
        .unwrap_or(0);
    let last = samples[BOOTS - 1].rss_kib;
    println!(
        "soak in-process: rss after warm-up {warm} KiB, peak after it {peak} KiB, last {last} KiB"
    );
    assert!(
        last <= warm + RSS_SLACK_KIB,
        "resident memory grew from {warm} to {last} KiB over {} boots",
        BOOTS - WARM_UP
    );
}

/// One minivmm process running the `hang` guest: its figures while the guest runs,
/// its peak RSS (KiB) and exit status after SIGTERM.
fn one_process(guest: &str) -> (Sample, u64, i32) {
    let mut child = Command::new(MINIVMM)
        .args([
            "--kernel",
            guest,
            "--mem",
            "32M",
            "--cmdline",
            "guest.test=hang",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    read_until(&mut out, "hanging");
    let pid = child.id();
    // The guest may print before the event loop has made its epoll descriptor, the
    // last thing set-up creates: sample once that exists.
    wait_until(
        &format!("minivmm {pid}'s event loop to start (an epoll descriptor)"),
        SETTLE,
        || has_epoll(&pid.to_string()),
    );
    let s = sample(&pid.to_string());
    // SAFETY: signalling our own child, then reaping it with wait4 into locals.
    let (status, usage) = unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
        let mut status = 0;
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(
            libc::wait4(pid as i32, &mut status, 0, &mut usage),
            pid as i32
        );
        (status, usage)
    };
    std::mem::forget(child); // already reaped
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (s, usage.ru_maxrss as u64, code)
}

fn processes() {
    let guest = test_guest();
    let guest = guest.to_str().unwrap();
    let before = sample("self");
    let start = Instant::now();
    let mut samples = Vec::with_capacity(BOOTS);
    let mut peaks = Vec::with_capacity(BOOTS);
    for i in 0..BOOTS {
        let (s, peak, code) = one_process(guest);
        assert_eq!(code, 143, "process {i} exit status");
        samples.push(s);
        peaks.push(peak);
    }
    let elapsed = start.elapsed();
    let after = sample("self");
    println!(
        "soak processes: {BOOTS} runs in {:.2} s; test process before/after: fds {}/{}, \
         threads {}/{}",
        elapsed.as_secs_f64(),
        before.fds,
        after.fds,
        before.threads,
        after.threads
    );
    print_samples("process", &samples);
    let mut sorted = peaks.clone();
    sorted.sort_unstable();
    println!(
        "soak processes: peak RSS min {} KiB, median {} KiB, max {} KiB",
        sorted[0],
        sorted[BOOTS / 2],
        sorted[BOOTS - 1]
    );
    let first = samples[0];
    for (i, s) in samples.iter().enumerate() {
        assert_eq!(s.threads, first.threads, "threads of process {}", i + 1);
        assert_eq!(s.fds, first.fds, "descriptors of process {}", i + 1);
    }
    assert_eq!(first.threads, 3, "main, event loop, one vCPU");
    assert!(
        sorted[BOOTS - 1] <= sorted[BOOTS / 2] + RSS_SLACK_KIB,
        "a process's peak RSS strayed: {sorted:?}"
    );
    assert_eq!(after.fds, before.fds, "the test process leaked descriptors");
}

#[test]
fn two_hundred_boots_in_process_and_as_processes_leave_nothing_behind() {
    if !kvm_available("two_hundred_boots_in_process_and_as_processes_leave_nothing_behind") {
        return;
    }
    in_process();
    processes();
}
