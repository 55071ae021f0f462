//! microVM start against container start, on the same machine, in one run
//! (`cargo bench --bench vs_container -- [--runs N] [--linux N] [--density K]
//! [--json FILE] [--svg FILE]`).
//!
//! Alternates N starts of each workload:
//! - `vm-test-guest`: minivmm with the freestanding test guest; marker = its hello line.
//! - `vm-linux` (with `--linux N`): minivmm with the resources/ Linux guest; marker =
//!   the console milestone `Run /init` (this host's KVM emulates guest kernel code, so
//!   Linux cannot reach user space here; the nested harness measures that:
//!   `cargo bench --bench boot -- --nested`).
//! - `runc` (and `crun` where it runs): an OCI bundle the bench builds (busybox rootfs)
//!   whose process prints a marker and exits.
//!
//! For each: exec to marker, exec to exit, peak RSS of the monitor process (minivmm or
//! the runtime, by wait4), and for VMs the guest memory actually touched. Then density:
//! K of each started at once, start rate and host memory per instance.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test, as clippy.toml allows in unit tests

#[path = "shared/args.rs"]
mod args;
#[path = "shared/chart.rs"]
mod chart;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "vs_container/report.rs"]
mod report;
#[path = "vs_container/runtime.rs"]
mod runtime;
#[path = "shared/stats.rs"]
mod stats;

use common::{
    guest_initramfs, guest_kernel, host_emulates_guest_code, scratch, test_guest, MINIVMM,
};
use report::Series;
use runtime::{measure, Oci};
use std::path::PathBuf;
use std::process::Command;

struct Opts {
    runs: usize,
    linux: usize,
    density: usize,
    json: PathBuf,
    svg: PathBuf,
}

fn opts() -> Opts {
    let value = args::value;
    let target = common::repo().join("target");
    Opts {
        runs: args::number("--runs", 20),
        linux: args::number("--linux", 0),
        density: args::number("--density", 20),
        json: value("--json").map_or(target.join("vs-container.json"), PathBuf::from),
        svg: value("--svg").map_or(target.join("vs-container.svg"), PathBuf::from),
    }
}

fn vm_test_guest() -> Command {
    let mut c = Command::new(MINIVMM);
    c.args([
        "--kernel",
        test_guest().to_str().unwrap(),
        "--mem",
        "128M",
        "--boot-timeline",
    ]);
    c
}

fn main() {
    let o = opts();
    if !common::kvm_available("vs_container bench") {
        return;
    }
    let dir = scratch("vs-container");
    let mut runtimes = Vec::new();
    for name in ["runc", "crun"] {
        match Oci::prepare(name, &dir) {
            Ok(rt) => runtimes.push(rt),
            Err(why) => println!("note: {name} left out: {why}"),
        }
    }
    let mut series: Vec<Series> = vec![Series::new("vm-test-guest", true)];
    series.extend(runtimes.iter().map(|rt| Series::new(rt.name, false)));

    println!(
        "== start to marker and exit, {} runs each, alternating (ms; RSS of the monitor process)",
        o.runs
    );
    let linux = if o.linux > 0 {
        linux_command(&dir)
    } else {
        None
    };
    // Where this host's KVM emulates guest kernel code, the Linux figure is that
    // emulation's time, not the VMM's: the name says so.
    let linux_name = if host_emulates_guest_code() {
        "vm-linux (guest code emulated by this host's KVM)"
    } else {
        "vm-linux"
    };
    let mut linux_series = Series::new(linux_name, true);
    for i in 0..o.runs.max(o.linux) {
        if i < o.runs {
            let s = measure(vm_test_guest(), "minivmm-test-guest: hello");
            series[0].push(s);
            for (k, rt) in runtimes.iter().enumerate() {
                let s = measure(rt.command(&format!("mvb-{i}"), false), runtime::MARKER);
                series[k + 1].push(s);
            }
        }
        if let (true, Some(make)) = (i < o.linux, &linux) {
            // Where KVM emulates guest kernel code init cannot run: the kernel panics
            // and minivmm reports it (pvpanic), exit 1. Elsewhere /init reboots: 0.
            let expected = i32::from(host_emulates_guest_code());
            linux_series.push(runtime::measure_expecting(
                make(),
                "Run /init as init process",
                expected,
            ));
        }
    }
    if !linux_series.samples.is_empty() {
        series.push(linux_series);
    }
    report::table(&series);
    let density = density(&o, &runtimes);
    report::explain(host_emulates_guest_code());
    let written = report::write_json(&o.json, &series, &density)
        .and_then(|()| report::write_svg(&o.svg, &series));
    if written.is_ok() {
        println!("wrote {} and {}", o.json.display(), o.svg.display());
    }
    // After the figures: a run that failed is a failed bench, not a slow one.
    let mut failed: Vec<String> = written.err().into_iter().collect();
    failed.extend(series.iter().filter(|s| s.failures() > 0).map(|s| {
        format!(
            "{}: {} of {} runs failed or printed no marker",
            s.name,
            s.failures(),
            s.samples.len()
        )
    }));
    failed.extend(density.iter().filter(|d| d.ready < d.count).map(|d| {
        format!(
            "{}: {} of {} started at once printed their marker",
            d.name, d.ready, d.count
        )
    }));
    if !failed.is_empty() {
        for why in &failed {
            eprintln!("vs_container bench FAILED: {why}");
        }
        std::process::exit(1);
    }
}

/// How to start the resources/ Linux guest, if its kernel is there.
fn linux_command(dir: &std::path::Path) -> Option<impl Fn() -> Command> {
    let kernel = guest_kernel("vs_container linux")?.join("vmlinux");
    let initrd = guest_initramfs(dir, false);
    Some(move || {
        let mut c = Command::new(MINIVMM);
        c.args(["--kernel", kernel.to_str().unwrap()]).args([
            "--initrd",
            initrd.to_str().unwrap(),
            "--mem",
            "256M",
            "--boot-timeline",
        ]);
        if host_emulates_guest_code() {
            c.args(["--cmdline-preset", "emulated-kvm"]);
        }
        c
    })
}

/// Start-rate and memory figures of K instances at once.
pub struct Density {
    /// Workload name.
    pub name: String,
    /// Instances started.
    pub count: usize,
    /// Instances that printed their marker.
    pub ready: usize,
    /// From the first exec to the last marker.
    pub seconds: f64,
    /// Host memory (RSS of every process of an instance) per instance, KiB.
    pub kib_per_instance: u64,
}

fn density(o: &Opts, runtimes: &[Oci]) -> Vec<Density> {
    println!("== density: {} started at once", o.density);
    let mut out = Vec::new();
    let vm = |_: usize| {
        let mut c = vm_test_guest();
        c.args(["--cmdline", "guest.test=count count.ms=1000"]);
        c
    };
    let vm_stop = |_: usize, child: &std::process::Child| {
        // SAFETY: signals a child this bench started.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    };
    out.push(runtime::density(
        "vm-test-guest",
        o.density,
        vm,
        vm_stop,
        "minivmm-test-guest: hello",
    ));
    for rt in runtimes {
        let start = |i: usize| rt.command(&format!("mvd-{i}"), true);
        let stop = |i: usize, _: &std::process::Child| rt.kill(&format!("mvd-{i}"));
        out.push(runtime::density(
            rt.name,
            o.density,
            start,
            stop,
            runtime::MARKER,
        ));
        rt.cleanup(o.density);
    }
    for d in &out {
        println!(
            "{:<16} {:>3}/{:<3} ready in {:>8.1} ms  {:>7.1} starts/s  {:>8} KiB host memory each",
            d.name,
            d.ready,
            d.count,
            d.seconds * 1000.0,
            d.ready as f64 / d.seconds.max(1e-9),
            d.kib_per_instance
        );
    }
    out
}
