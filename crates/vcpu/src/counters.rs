//! Per-vCPU exit counters, read by the VMM's metrics while the vCPU runs.

use std::sync::atomic::{AtomicU64, Ordering};

/// How often one vCPU left KVM_RUN, by kind of exit.
#[derive(Debug, Default)]
pub struct ExitCounters {
    /// Port reads.
    pub io_in: AtomicU64,
    /// Port writes.
    pub io_out: AtomicU64,
    /// MMIO reads.
    pub mmio_read: AtomicU64,
    /// MMIO writes.
    pub mmio_write: AtomicU64,
    /// Returns to the VMM with no guest exit: a signal (a kick, a pause) or KVM's
    /// immediate exit.
    pub interrupted: AtomicU64,
    /// Every other exit (halt, shutdown, system events, failures).
    pub other: AtomicU64,
}

impl ExitCounters {
    /// Name and value of each counter.
    pub fn values(&self) -> [(&'static str, u64); 6] {
        let v = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("io_in", v(&self.io_in)),
            ("io_out", v(&self.io_out)),
            ("mmio_read", v(&self.mmio_read)),
            ("mmio_write", v(&self.mmio_write)),
            ("interrupted", v(&self.interrupted)),
            ("other", v(&self.other)),
        ]
    }

    pub(crate) fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
