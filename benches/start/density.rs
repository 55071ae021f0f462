//! Many VMs started at once: in this process (one thread each, released together) and
//! as separate processes (minivmm, or the Firecracker peer). Each is ready when its
//! hello line arrives; the figures are per-VM start latency, the time until all were
//! ready and all had exited, the CPU they used, and starts per second per core.

use crate::stats::{cores, cpu_ms, Stats};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

/// What one burst of `count` starts showed.
pub struct Burst {
    pub name: String,
    /// Start to ready (hello line) of each VM, ms.
    pub ready: Stats,
    /// Until every VM was ready, ms.
    pub all_ready_ms: f64,
    /// Until every VM had exited and was freed, ms.
    pub all_done_ms: f64,
    /// CPU time the burst used (user + system, all threads or children), ms.
    pub cpu_ms: f64,
    pub count: usize,
}

impl Burst {
    /// Starts per second per core, until all were ready.
    pub fn rate_per_core(&self) -> f64 {
        self.count as f64 / (self.all_ready_ms / 1e3) / cores() as f64
    }

    /// Wall time to all done against the CPU time spread over every core: 1.0 means
    /// nothing serialized the starts beyond the CPU they needed.
    pub fn serialization(&self) -> f64 {
        self.all_done_ms / (self.cpu_ms / cores() as f64)
    }

    pub fn print(&self) {
        crate::stats::row(&format!("{}: start to ready", self.name), "ms", &self.ready);
        println!(
            "{:<46} all ready {:.1} ms, all exited {:.1} ms, CPU {:.1} ms ({:.2} ms per VM); {:.1} starts/s/core; wall / (CPU / {} cores) = {:.2}",
            self.name,
            self.all_ready_ms,
            self.all_done_ms,
            self.cpu_ms,
            self.cpu_ms / self.count as f64,
            self.rate_per_core(),
            cores(),
            self.serialization()
        );
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name, "count": self.count, "start_to_ready_ms": self.ready.json(),
            "all_ready_ms": self.all_ready_ms, "all_exited_ms": self.all_done_ms,
            "cpu_ms": self.cpu_ms, "starts_per_second_per_core": self.rate_per_core(),
            "wall_over_cpu_per_core": self.serialization(),
        })
    }
}

/// `count` VMs of `make` started together from their own threads of this process.
pub fn in_process(
    name: &str,
    count: usize,
    make: impl Fn() -> vmm::VmBuilder + Send + Sync + 'static,
) -> Result<Burst, String> {
    let make = Arc::new(make);
    let barrier = Arc::new(Barrier::new(count));
    // Time zero: when the first thread is released (the others may be scheduled later;
    // that wait is part of their start latency).
    let origin = Arc::new(OnceLock::new());
    let cpu0 = cpu_ms(libc::RUSAGE_SELF);
    let threads: Vec<_> = (0..count)
        .map(|_| {
            let (make, barrier, origin) = (make.clone(), barrier.clone(), origin.clone());
            std::thread::spawn(move || -> Result<(Instant, Instant), String> {
                let builder = make();
                barrier.wait();
                origin.get_or_init(Instant::now);
                let mut vm = builder.start().map_err(|e| e.to_string())?;
                let mut console = vm.take_console().ok_or("no console stream")?;
                let hello = console.wait_for("minivmm-test-guest: hello", Duration::from_secs(30));
                let ready = Instant::now();
                let exit = vm.wait();
                if hello.is_none() || exit.reason != vmm::ExitReason::GuestReset {
                    return Err(format!("a VM did not run: {}", exit.reason));
                }
                Ok((ready, Instant::now()))
            })
        })
        .collect();
    let mut times = Vec::new();
    for t in threads {
        times.push(t.join().map_err(|_| "a start thread panicked")??);
    }
    let origin = *origin.get().ok_or("no thread started")?;
    let mut ready = Vec::new();
    let mut done = Vec::new();
    for (r, d) in times {
        ready.push((r - origin).as_secs_f64() * 1e3);
        done.push((d - origin).as_secs_f64() * 1e3);
    }
    finish(name, count, ready, done, cpu_ms(libc::RUSAGE_SELF) - cpu0)
}

/// `count` processes of `command` started at once; each prints the hello line.
pub fn processes(name: &str, count: usize, command: impl Fn() -> Command) -> Result<Burst, String> {
    let cpu0 = cpu_ms(libc::RUSAGE_CHILDREN);
    let origin = Instant::now();
    let mut watchers = Vec::new();
    for _ in 0..count {
        let mut child = command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{name}: cannot spawn: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        watchers.push(std::thread::spawn(
            move || -> Result<(Instant, Instant), String> {
                let mut ready = None;
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if ready.is_none() && line.contains("minivmm-test-guest: hello") {
                        ready = Some(Instant::now());
                    }
                }
                let status = child.wait().map_err(|e| e.to_string())?;
                match ready {
                    Some(r) if status.success() => Ok((r, Instant::now())),
                    _ => Err(format!(
                        "a process printed no hello line or failed ({status})"
                    )),
                }
            },
        ));
    }
    let mut ready = Vec::new();
    let mut done = Vec::new();
    for w in watchers {
        let (r, d) = w.join().map_err(|_| "a watcher panicked")??;
        ready.push((r - origin).as_secs_f64() * 1e3);
        done.push((d - origin).as_secs_f64() * 1e3);
    }
    finish(
        name,
        count,
        ready,
        done,
        cpu_ms(libc::RUSAGE_CHILDREN) - cpu0,
    )
}

fn finish(
    name: &str,
    count: usize,
    ready: Vec<f64>,
    done: Vec<f64>,
    cpu: f64,
) -> Result<Burst, String> {
    let all_ready_ms = ready.iter().copied().fold(0.0, f64::max);
    let all_done_ms = done.iter().copied().fold(0.0, f64::max);
    Ok(Burst {
        name: name.to_string(),
        ready: Stats::of(ready).ok_or("no VM started")?,
        all_ready_ms,
        all_done_ms,
        cpu_ms: cpu,
        count,
    })
}
