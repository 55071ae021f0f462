//! Figures out of samples: the printed table, the JSON file and the SVG plot.

use crate::stats::Stats;
use crate::Density;
use std::path::Path;

/// One start.
pub struct Sample {
    /// Exec to the marker line, if it came.
    pub marker_ms: Option<f64>,
    /// Exec to exit.
    pub exit_ms: f64,
    /// Peak RSS of the monitor process (minivmm, or the OCI runtime), KiB.
    pub rss_kib: u64,
    /// Guest memory the host held at the end (VMs), KiB.
    pub touched_kib: Option<u64>,
    /// The guest's boot-timer write on minivmm's timeline (VMs that write it), ms.
    pub boot_timer_ms: Option<f64>,
    /// Exited with status 0.
    pub ok: bool,
}

/// All starts of one workload.
pub struct Series {
    pub name: String,
    pub vm: bool,
    pub samples: Vec<Sample>,
}

impl Series {
    pub fn new(name: &str, vm: bool) -> Self {
        Self {
            name: name.to_string(),
            vm,
            samples: Vec::new(),
        }
    }

    pub fn push(&mut self, s: Sample) {
        self.samples.push(s);
    }

    fn stats(&self, f: impl Fn(&Sample) -> Option<f64>) -> Option<Stats> {
        Stats::of(self.samples.iter().filter_map(f).collect())
    }

    pub fn marker(&self) -> Option<Stats> {
        self.stats(|s| s.marker_ms)
    }
    pub fn exit(&self) -> Option<Stats> {
        self.stats(|s| Some(s.exit_ms))
    }
    pub fn rss(&self) -> Option<Stats> {
        self.stats(|s| Some(s.rss_kib as f64 / 1024.0))
    }
    pub fn boot_timer(&self) -> Option<Stats> {
        self.stats(|s| s.boot_timer_ms)
    }
    pub fn touched(&self) -> Option<Stats> {
        self.stats(|s| s.touched_kib.map(|k| k as f64 / 1024.0))
    }
    /// Runs that did not exit as expected or printed no marker.
    pub fn failures(&self) -> usize {
        self.samples
            .iter()
            .filter(|s| !s.ok || s.marker_ms.is_none())
            .count()
    }
}

fn row(name: &str, what: &str, unit: &str, s: Option<Stats>) {
    match s {
        Some(s) => println!(
            "{name:<16} {what:<22} median {:>10.2} {unit:<3} p90 {:>10.2}  min {:>10.2}  max {:>10.2}  (n={})",
            s.median, s.p90, s.min, s.max, s.n
        ),
        None => println!("{name:<16} {what:<22} -"),
    }
}

/// Prints every series and the VM/container ratios of the medians.
pub fn table(series: &[Series]) {
    for s in series {
        row(&s.name, "exec to marker", "ms", s.marker());
        row(&s.name, "exec to exit", "ms", s.exit());
        row(&s.name, "monitor peak RSS", "MiB", s.rss());
        if s.vm {
            row(&s.name, "guest memory touched", "MiB", s.touched());
            if s.boot_timer().is_some() {
                row(&s.name, "boot-timer write", "ms", s.boot_timer());
            }
        }
        if s.failures() > 0 {
            println!(
                "{:<16} {} of {} runs failed or printed no marker",
                s.name,
                s.failures(),
                s.samples.len()
            );
        }
    }
    let containers: Vec<&Series> = series.iter().filter(|s| !s.vm).collect();
    for vm in series.iter().filter(|s| s.vm) {
        for c in &containers {
            let ratio = |a: Option<Stats>, b: Option<Stats>| match (a, b) {
                (Some(a), Some(b)) if b.median > 0.0 => format!("{:.2}x", a.median / b.median),
                _ => "-".into(),
            };
            println!(
                "ratio {} / {}: marker {}, exit {}, monitor RSS {}",
                vm.name,
                c.name,
                ratio(vm.marker(), c.marker()),
                ratio(vm.exit(), c.exit()),
                ratio(vm.rss(), c.rss())
            );
        }
    }
}

/// Says which numbers this host limits and which are the VMM's own.
pub fn explain(emulated: bool) {
    println!("== reading these numbers");
    println!(
        "- vm-test-guest is the VMM's own cost: building the VM, loading a tiny kernel, the first \
         serial line, and (most of exec-to-exit) the host kernel's VM teardown."
    );
    if emulated {
        println!(
            "- this host's /dev/kvm is nested and emulates guest kernel code (PLATFORM.md): vm-linux \
             is bounded by that emulation (minutes, not milliseconds), and its marker is the console's \
             `Run /init` because guest user space cannot run here. Inside the nested harness (emulated \
             L1), Linux reaches user space in ~6 s of L1 time: `cargo bench --bench boot -- --nested`."
        );
    }
    println!(
        "- containers share the host kernel: their start is process, namespace and cgroup set-up by \
         the runtime; the monitor RSS is the runtime's own process."
    );
}

fn stats_json(s: Option<Stats>) -> serde_json::Value {
    s.map_or(serde_json::Value::Null, |s| s.json())
}

/// Writes every figure as JSON.
pub fn write_json(path: &Path, series: &[Series], density: &[Density]) -> Result<(), String> {
    let v = serde_json::json!({
        "series": series.iter().map(|s| serde_json::json!({
            "name": s.name,
            "vm": s.vm,
            "exec_to_marker_ms": stats_json(s.marker()),
            "exec_to_exit_ms": stats_json(s.exit()),
            "monitor_peak_rss_mib": stats_json(s.rss()),
            "guest_memory_touched_mib": stats_json(s.touched()),
            "boot_timer_write_ms": stats_json(s.boot_timer()),
            "failures": s.failures(),
        })).collect::<Vec<_>>(),
        "density": density.iter().map(|d| serde_json::json!({
            "name": d.name,
            "count": d.count,
            "ready": d.ready,
            "seconds_to_all_ready": d.seconds,
            "starts_per_second": d.ready as f64 / d.seconds.max(1e-9),
            "host_memory_kib_per_instance": d.kib_per_instance,
        })).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?;
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The exec-to-marker chart (median bar, min-max line, log scale), one bar per series;
/// containers in the peer colour.
pub fn write_svg(path: &Path, series: &[Series]) -> Result<(), String> {
    let bars: Vec<crate::chart::Bar> = series
        .iter()
        .filter_map(|s| {
            let m = s.marker()?;
            Some(crate::chart::Bar {
                label: s.name.clone(),
                median: m.median,
                min: m.min,
                max: m.max,
                peer: !s.vm,
            })
        })
        .collect();
    crate::chart::write(
        path,
        "exec to marker (ms, log scale): bar = median, line = min-max",
        &bars,
    )
}
