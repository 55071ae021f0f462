//! Order statistics of a sample, and reading this process's resource figures.
#![allow(dead_code)] // shared by several benches; each uses part

/// Median, p90, p99, min and max of a sample.
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    pub median: f64,
    pub p90: f64,
    pub p99: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Stats {
    /// The statistics of `v` (`None` when empty).
    pub fn of(mut v: Vec<f64>) -> Option<Self> {
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let at = |p: f64| v[(((v.len() - 1) as f64) * p).round() as usize];
        Some(Self {
            median: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            min: v[0],
            max: v[v.len() - 1],
            n: v.len(),
        })
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({"median": self.median, "p90": self.p90, "p99": self.p99,
            "min": self.min, "max": self.max, "n": self.n})
    }
}

/// Prints one figure line.
pub fn row(name: &str, unit: &str, s: &Stats) {
    println!(
        "{name:<46} median {:>9.3} {unit:<3} p90 {:>9.3}  p99 {:>9.3}  min {:>9.3}  max {:>9.3}  (n={})",
        s.median, s.p90, s.p99, s.min, s.max, s.n
    );
}

/// CPU time (user + system, ms) of this process (`RUSAGE_SELF`) or of its waited-for
/// children (`RUSAGE_CHILDREN`).
pub fn cpu_ms(who: libc::c_int) -> f64 {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct we own.
    unsafe { libc::getrusage(who, &mut u) };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    ms(u.ru_utime) + ms(u.ru_stime)
}

/// A field of /proc/self/status or /proc/meminfo, in KiB.
pub fn kib(file: &str, field: &str) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| {
            let line = t.lines().find(|l| l.starts_with(field))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// CPUs this process may run on.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
