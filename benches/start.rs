//! Start, teardown, pool and many-at-once figures of the tiny test guest
//! (`cargo bench --bench start -- [--runs N] [--burst K] [--pool P]
//! [--peer-firecracker PATH] [--json FILE] [--svg FILE]`):
//!
//! - library: `start()` to guest exit to everything freed, per phase of minivmm's boot
//!   timeline (the host kernel's own VM teardown apart), and the CPU one start costs;
//! - pool: a start from a `VmPool` of prepared VMs, and what each prepared VM holds;
//! - process: exec to exit of `minivmm`, alternating with Firecracker when a peer binary
//!   is given (the same guest, memory and vCPU count);
//! - burst: K VMs at once, in this process and as K processes (and K Firecrackers).
//!
//! Exits 1 when a functional step fails (a VM that does not run, a peer that does not
//! boot), after printing what it measured.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test, as clippy.toml allows in unit tests

#[path = "shared/args.rs"]
mod args;
#[path = "shared/chart.rs"]
mod chart;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "start/density.rs"]
mod density;
#[path = "start/firecracker.rs"]
mod firecracker;
#[path = "shared/stats.rs"]
mod stats;

use firecracker::{Firecracker, GUEST_ARGS};
use stats::{cores, cpu_ms, kib, row, Stats};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vmm::{BootEvent, ExitReason, VmBuilder};

const MEM_MIB: u64 = 64;

struct Opts {
    runs: usize,
    burst: usize,
    pool: usize,
    peer: Option<PathBuf>,
    json: PathBuf,
    svg: PathBuf,
}

fn opts() -> Opts {
    let (value, number) = (args::value, args::number);
    let target = common::repo().join("target");
    Opts {
        runs: number("--runs", 30).max(1),
        burst: number("--burst", 50).max(1),
        pool: number("--pool", 4).max(1),
        peer: value("--peer-firecracker").map(PathBuf::from),
        json: value("--json").map_or(target.join("start-bench.json"), PathBuf::from),
        svg: value("--svg").map_or(target.join("start-bench.svg"), PathBuf::from),
    }
}

/// The figures, and the functional failures seen on the way.
#[derive(Default)]
struct Report {
    json: serde_json::Map<String, serde_json::Value>,
    bars: Vec<chart::Bar>,
    failures: Vec<String>,
}

impl Report {
    fn figure(&mut self, key: &str, label: &str, s: &Stats, peer: bool) {
        self.json.insert(key.into(), s.json());
        self.bars.push(chart::Bar {
            label: label.into(),
            median: s.median,
            min: s.min,
            max: s.max,
            peer,
        });
    }
}

fn guest() -> VmBuilder {
    VmBuilder::new(common::test_guest())
        .cmdline(GUEST_ARGS)
        .memory_mib(MEM_MIB)
        .console_stream()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs one VM to its end; returns (start returned, hello line, wait returned) in ms
/// since `t0`, and the exit.
fn lifecycle(
    t0: Instant,
    vm: Result<vmm::VmHandle, vmm::VmmError>,
) -> Result<(f64, f64, f64, vmm::VmExit), String> {
    let mut vm = vm.map_err(|e| format!("start failed: {e}"))?;
    let started = ms(t0.elapsed());
    let mut console = vm.take_console().ok_or("no console stream")?;
    let hello = console.wait_for("minivmm-test-guest: hello", Duration::from_secs(30));
    let ready = ms(t0.elapsed());
    let exit = vm.wait();
    let returned = ms(t0.elapsed());
    if hello.is_none() || exit.reason != ExitReason::GuestReset {
        return Err(format!("the test guest did not run: {}", exit.reason));
    }
    Ok((started, ready, returned, exit))
}

/// The library's start-to-freed path, phase by phase.
fn library(o: &Opts, r: &mut Report) -> Option<f64> {
    println!(
        "== library: VmBuilder::start() of the test guest, {MEM_MIB} MiB, {} runs (ms)",
        o.runs
    );
    let phases: [(&str, BootEvent, BootEvent); 12] = [
        (
            "  seccomp filters",
            BootEvent::SeccompReady,
            BootEvent::SeccompReady,
        ),
        (
            "  config checked",
            BootEvent::SeccompReady,
            BootEvent::ConfigChecked,
        ),
        (
            "  KVM VM created",
            BootEvent::ConfigChecked,
            BootEvent::VmCreated,
        ),
        (
            "  memory mapped",
            BootEvent::VmCreated,
            BootEvent::MemoryMapped,
        ),
        (
            "  devices attached",
            BootEvent::MemoryMapped,
            BootEvent::DevicesAttached,
        ),
        (
            "  kernel loaded",
            BootEvent::DevicesAttached,
            BootEvent::KernelLoaded,
        ),
        (
            "  vCPUs configured",
            BootEvent::KernelLoaded,
            BootEvent::VcpusConfigured,
        ),
        (
            "  threads started",
            BootEvent::VcpusConfigured,
            BootEvent::ThreadsStarted,
        ),
        (
            "  guest runs (emulated here)",
            BootEvent::Released,
            BootEvent::ExitSeen,
        ),
        (
            "  vCPUs stopped and joined",
            BootEvent::ExitSeen,
            BootEvent::Exit,
        ),
        (
            "  host kernel's VM teardown",
            BootEvent::Exit,
            BootEvent::KvmReleased,
        ),
        (
            "  guest memory unmapped",
            BootEvent::KvmReleased,
            BootEvent::Freed,
        ),
    ];
    let mut columns: Vec<Vec<f64>> = vec![Vec::new(); phases.len()];
    let (mut started, mut ready, mut freed, mut vmm_own) = (vec![], vec![], vec![], vec![]);
    let cpu0 = cpu_ms(libc::RUSAGE_SELF);
    for _ in 0..o.runs {
        let builder = guest(); // outside the timed part (it finds the guest's file)
        let t0 = Instant::now();
        let (s, h, w, exit) = match lifecycle(t0, builder.time_origin(t0).start()) {
            Ok(v) => v,
            Err(e) => {
                r.failures.push(format!("library: {e}"));
                return None;
            }
        };
        let t = &exit.timeline;
        let at = |e: BootEvent| t.get(e).map_or(f64::NAN, ms);
        for (i, (_, from, to)) in phases.iter().enumerate() {
            let start = if from == to { 0.0 } else { at(*from) };
            columns[i].push(at(*to) - start);
        }
        started.push(s);
        ready.push(h);
        freed.push(w);
        let guest_ms = at(BootEvent::ExitSeen) - at(BootEvent::Released);
        let kernel_ms = at(BootEvent::KvmReleased) - at(BootEvent::Exit);
        vmm_own.push(w - guest_ms - kernel_ms);
    }
    let cpu_per_start = (cpu_ms(libc::RUSAGE_SELF) - cpu0) / o.runs as f64;
    let stats = |v: Vec<f64>| Stats::of(v).unwrap();
    row("start() returned", "ms", &stats(started.clone()));
    row("guest's first line", "ms", &stats(ready.clone()));
    row(
        "wait() returned: exited and freed",
        "ms",
        &stats(freed.clone()),
    );
    for ((name, ..), v) in phases.iter().zip(columns) {
        row(name, "ms", &stats(v));
    }
    let own = stats(vmm_own);
    row("the VMM's own: all but guest and host kernel", "ms", &own);
    println!("CPU per start-to-freed: {cpu_per_start:.2} ms (this process, all threads)");
    r.figure(
        "library_start_returned_ms",
        "library: start() returned",
        &stats(started),
        false,
    );
    r.figure(
        "library_start_to_freed_ms",
        "library: start to exit to freed",
        &stats(freed),
        false,
    );
    r.figure(
        "library_vmm_own_ms",
        "library: VMM's own time of that",
        &own,
        false,
    );
    r.json
        .insert("library_cpu_ms_per_start".into(), cpu_per_start.into());
    Some(cpu_per_start)
}

/// Starts from a pool of prepared VMs, and what each prepared VM holds.
fn pool(o: &Opts, r: &mut Report) {
    println!(
        "== pool: VmPool of {} prepared VMs (KVM VM, memory, kernel, vCPU threads parked)",
        o.pool
    );
    let (rss0, avail0) = (
        kib("/proc/self/status", "VmRSS:"),
        kib("/proc/meminfo", "MemAvailable:"),
    );
    let pool = match vmm::VmPool::new(o.pool, guest) {
        Ok(p) => p,
        Err(e) => return r.failures.push(format!("pool: {e}")),
    };
    let (rss1, avail1) = (
        kib("/proc/self/status", "VmRSS:"),
        kib("/proc/meminfo", "MemAvailable:"),
    );
    let per_rss = rss1.saturating_sub(rss0) as f64 / o.pool as f64;
    let per_host = avail0.saturating_sub(avail1) as f64 / o.pool as f64;
    println!("memory per prepared VM: {per_rss:.0} KiB of this process's RSS, {per_host:.0} KiB of the host's available memory (kernel side included; noisy)");
    let (mut take, mut ready) = (Vec::new(), Vec::new());
    for _ in 0..o.runs {
        pool.wait_full();
        let t0 = Instant::now();
        match lifecycle(t0, pool.start()) {
            Ok((s, h, ..)) => {
                take.push(s);
                ready.push(h);
            }
            Err(e) => return r.failures.push(format!("pool: {e}")),
        }
    }
    let stats = pool.stats();
    if stats.built_on_demand > 0 || stats.failures > 0 {
        r.failures.push(format!("pool: {stats:?}"));
    }
    let (take, ready) = (Stats::of(take).unwrap(), Stats::of(ready).unwrap());
    row("pool.start() returned (the VMM's time)", "ms", &take);
    row("guest's first line", "ms", &ready);
    r.figure("pool_start_ms", "pool: start() returned", &take, false);
    r.figure(
        "pool_first_line_ms",
        "pool: guest's first line",
        &ready,
        false,
    );
    r.json
        .insert("pool_rss_kib_per_prepared_vm".into(), per_rss.into());
    r.json
        .insert("pool_host_kib_per_prepared_vm".into(), per_host.into());
}

fn minivmm() -> Command {
    let mut c = Command::new(common::MINIVMM);
    c.arg("--kernel").arg(common::test_guest()).args([
        "--mem",
        &format!("{MEM_MIB}M"),
        "--cmdline",
        GUEST_ARGS,
    ]);
    c
}

/// Exec to exit of one process; `None` if it failed.
fn exec_to_exit(mut c: Command) -> Option<f64> {
    let t0 = Instant::now();
    let out = c.stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    (out.status.success() && text.contains("minivmm-test-guest: reset")).then(|| ms(t0.elapsed()))
}

/// Exec to exit, alternating: minivmm, minivmm with async teardown, and the peer when
/// given; returns minivmm's CPU per process.
fn process(o: &Opts, peer: Option<&Firecracker>, r: &mut Report) -> f64 {
    println!(
        "== process: exec to exit of the test guest, {MEM_MIB} MiB, 1 vCPU, {} runs each, alternating",
        o.runs
    );
    type Make<'a> = Box<dyn Fn() -> Command + 'a>;
    let mut kinds: Vec<(&str, &str, Make, bool)> = vec![
        ("minivmm", "process_minivmm_ms", Box::new(minivmm), false),
        (
            "minivmm --async-teardown on",
            "process_minivmm_async_teardown_ms",
            Box::new(|| {
                let mut c = minivmm();
                c.args(["--async-teardown", "on"]);
                c
            }),
            false,
        ),
    ];
    if let Some(fc) = peer {
        kinds.push((
            "firecracker",
            "process_firecracker_ms",
            Box::new(|| fc.command()),
            true,
        ));
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    let mut cpu = 0.0;
    for _ in 0..o.runs {
        for (k, (name, _, make, _)) in kinds.iter().enumerate() {
            let c0 = cpu_ms(libc::RUSAGE_CHILDREN);
            let Some(t) = exec_to_exit(make()) else {
                r.failures.push(format!(
                    "process: {name} did not run the guest to its reset"
                ));
                return 0.0;
            };
            if k == 0 {
                cpu += cpu_ms(libc::RUSAGE_CHILDREN) - c0;
            }
            times[k].push(t);
        }
    }
    let medians: Vec<f64> = times
        .iter()
        .map(|t| Stats::of(t.clone()).map_or(f64::NAN, |s| s.median))
        .collect();
    for ((name, key, _, is_peer), t) in kinds.iter().zip(times) {
        let s = Stats::of(t).unwrap();
        row(name, "ms", &s);
        r.figure(key, &format!("process: {name} exec to exit"), &s, *is_peer);
    }
    if peer.is_some() {
        let fc = medians[medians.len() - 1];
        for ((name, ..), m) in kinds.iter().zip(&medians).take(2) {
            println!("ratio {name} / firecracker (medians): {:.2}", m / fc);
        }
    } else {
        println!("firecracker: no --peer-firecracker PATH given; left out");
    }
    println!(
        "note: with async teardown the host kernel destroys the VM in a helper process after minivmm has exited; Firecracker (and minivmm by default) wait for it"
    );
    let per = cpu / o.runs as f64;
    println!("CPU per minivmm process: {per:.2} ms");
    r.json.insert("process_cpu_ms".into(), per.into());
    per
}

/// K at once, three ways.
fn bursts(o: &Opts, peer: Option<&Firecracker>, one: (f64, f64), r: &mut Report) {
    let k = o.burst;
    println!("== burst: {k} VMs started at once, {} cores", cores());
    let mut all = Vec::new();
    let mut run =
        |b: Result<density::Burst, String>, one_cpu: f64, key: &str, peer: bool, r: &mut Report| {
            match b {
                Ok(b) => {
                    b.print();
                    if one_cpu > 0.0 {
                        let bound = k as f64 * one_cpu / cores() as f64;
                        println!(
                    "{:<46} all exited in {:.2} x (K x one start's CPU / cores = {bound:.1} ms)",
                    "",
                    b.all_done_ms / bound
                );
                    }
                    let s = Stats::of(vec![b.all_ready_ms]).unwrap();
                    r.figure(key, &format!("{}: all {k} ready", b.name), &s, peer);
                    all.push(b.json());
                }
                Err(e) => r.failures.push(format!("burst: {e}")),
            }
        };
    run(
        density::in_process("in one process", k, guest),
        one.0,
        "burst_in_process_ms",
        false,
        r,
    );
    run(
        density::processes("minivmm processes", k, minivmm),
        one.1,
        "burst_processes_ms",
        false,
        r,
    );
    match peer {
        Some(fc) => run(
            density::processes("firecracker processes", k, || fc.command()),
            0.0,
            "burst_firecracker_ms",
            true,
            r,
        ),
        None => println!("firecracker processes: no --peer-firecracker PATH given; left out"),
    }
    r.json.insert("bursts".into(), all.into());
}

fn main() {
    let o = opts();
    if !common::kvm_available("start bench") {
        return;
    }
    let mut r = Report::default();
    let peer = match &o.peer {
        Some(path) => match Firecracker::prepare(
            path,
            &common::test_guest(),
            MEM_MIB,
            &common::scratch("start-bench"),
        ) {
            Ok(fc) => Some(fc),
            Err(e) => {
                r.failures.push(format!("peer: {e}"));
                None
            }
        },
        None => {
            println!("peer: no --peer-firecracker PATH given; Firecracker's figures are left out");
            None
        }
    };
    let lib_cpu = library(&o, &mut r).unwrap_or(0.0);
    pool(&o, &mut r);
    let proc_cpu = process(&o, peer.as_ref(), &mut r);
    bursts(&o, peer.as_ref(), (lib_cpu, proc_cpu), &mut r);
    if common::host_emulates_guest_code() {
        println!("note: this host's KVM emulates guest code; the guest's own run time and the host kernel's teardown are larger here than on hardware virtualization");
    }
    let json = serde_json::Value::Object(std::mem::take(&mut r.json));
    let written = std::fs::write(&o.json, serde_json::to_string_pretty(&json).unwrap())
        .map_err(|e| format!("cannot write {}: {e}", o.json.display()))
        .and_then(|()| chart::write(&o.svg, "test guest: start, teardown, pool, 50 at once (ms, log scale; bar = median, line = min-max)", &r.bars));
    match written {
        Ok(()) => println!("wrote {} and {}", o.json.display(), o.svg.display()),
        Err(e) => r.failures.push(e),
    }
    if !r.failures.is_empty() {
        for f in &r.failures {
            eprintln!("start bench FAILED: {f}");
        }
        std::process::exit(1);
    }
}
