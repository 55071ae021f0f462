//! [`VmController`]: a running VM's controls (pause, resume, snapshot, shutdown,
//! stop, status, metrics), cloneable and usable from any thread; the [`crate::VmHandle`]
//! holds one and the control API's threads each hold another.

use crate::control::{ControlSender, Request};
use crate::error::VmmError;
use crate::metrics::{Metrics, MetricsSource};
use crate::sandbox::Liveness;
use crate::snapshot::SnapshotSlot;
use crate::spec::VmSpec;
use crate::timeline::Timeline;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};
use vmm_sys_util::eventfd::EventFd;

/// How long a control request may wait for the event loop.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);
/// A snapshot writes guest memory before it answers (a second per GiB or so here): it
/// may take 120 s, or 60 s per GiB of guest memory where that is more.
fn snapshot_timeout(mem_size: u64) -> Duration {
    Duration::from_secs(120).max(Duration::from_secs(60 * mem_size.div_ceil(1 << 30)))
}

/// What a VM is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmState {
    /// Its vCPUs run the guest.
    Running,
    /// Its vCPUs are parked ([`VmController::pause`]).
    Paused,
    /// Paused, with a snapshot being written.
    Snapshotting,
    /// It has ended.
    Ended,
}

/// A VM's status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmStatus {
    /// What it is doing.
    pub state: VmState,
    /// The minivmm version running it.
    pub version: String,
    /// Its description (for a restored VM, the snapshot's, with this run's backends).
    pub spec: VmSpec,
    /// Boot milestones so far: name to milliseconds from the time origin.
    pub boot_timeline_ms: BTreeMap<String, f64>,
}

struct Inner {
    control: ControlSender,
    stop_evt: EventFd,
    snapshots: Option<SnapshotSlot>,
    /// Held by a pause, a resume or a snapshot: one at a time.
    ops: Mutex<()>,
    /// Set (with `ops` held) while a snapshot is being written: other requests are
    /// refused as busy rather than wait for it.
    in_snapshot: AtomicBool,
    paused: AtomicBool,
    live: Liveness,
    metrics: MetricsSource,
    spec: VmSpec,
    timeline: Timeline,
    filters: Arc<seccomp::Filters>,
}

/// A running VM's controls; clones control the same VM.
#[derive(Clone)]
pub struct VmController {
    inner: Arc<Inner>,
}

/// The parts a controller is made of.
pub(crate) struct ControllerParts {
    pub(crate) control: ControlSender,
    pub(crate) stop_evt: EventFd,
    pub(crate) snapshots: SnapshotSlot,
    pub(crate) live: Liveness,
    pub(crate) metrics: MetricsSource,
    pub(crate) spec: VmSpec,
    pub(crate) timeline: Timeline,
    pub(crate) filters: Arc<seccomp::Filters>,
}

impl VmController {
    pub(crate) fn new(p: ControllerParts) -> Self {
        Self {
            inner: Arc::new(Inner {
                control: p.control,
                stop_evt: p.stop_evt,
                snapshots: Some(p.snapshots),
                ops: Mutex::new(()),
                in_snapshot: AtomicBool::new(false),
                paused: AtomicBool::new(false),
                live: p.live,
                metrics: p.metrics,
                spec: p.spec,
                timeline: p.timeline,
                filters: p.filters,
            }),
        }
    }

    pub(crate) fn stop_evt(&self) -> &EventFd {
        &self.inner.stop_evt
    }

    pub(crate) fn live(&self) -> &Liveness {
        &self.inner.live
    }

    /// The seccomp filters of the VM's threads (the API's workers use them too).
    pub(crate) fn filters(&self) -> Arc<seccomp::Filters> {
        self.inner.filters.clone()
    }

    /// True until the VM has ended.
    pub fn is_alive(&self) -> bool {
        self.inner.live.alive()
    }

    /// Stops the VM now (no questions asked of the guest).
    pub fn stop(&self) {
        if let Err(e) = self.inner.stop_evt.write(1) {
            log::error!("cannot signal the VM to stop: {e}");
        }
    }

    /// Presses the ACPI power button (the guest shuts down if it listens for it).
    pub fn power_button(&self) -> Result<(), VmmError> {
        self.inner
            .control
            .call(Request::PowerButton, CONTROL_TIMEOUT)
    }

    /// Presses the power button, waits up to `grace` for the VM to end, and stops it if
    /// it has not. Returns whether the guest shut down by itself.
    pub fn shutdown(&self, grace: Duration) -> bool {
        match self.power_button() {
            Ok(()) => {
                let deadline = Instant::now() + grace;
                while self.inner.live.alive() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(2));
                }
                if !self.inner.live.alive() {
                    return true;
                }
                log::info!("the guest did not shut down within {grace:?}; stopping it");
            }
            Err(e) => log::info!("graceful shutdown not possible ({e}); stopping the VM"),
        }
        self.stop();
        false
    }

    /// The right to pause, resume or snapshot: waits for another pause or resume,
    /// refuses while a snapshot is being written.
    fn exclusive(&self, what: &'static str) -> Result<MutexGuard<'_, ()>, VmmError> {
        loop {
            if self.inner.in_snapshot.load(Ordering::Acquire) {
                return Err(VmmError::Busy(what, "a snapshot is being taken"));
            }
            match self.inner.ops.try_lock() {
                Ok(g) => return Ok(g),
                Err(TryLockError::Poisoned(p)) => return Ok(p.into_inner()),
                Err(TryLockError::WouldBlock) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }

    /// True while a snapshot is being written.
    pub fn snapshotting(&self) -> bool {
        self.inner.in_snapshot.load(Ordering::Acquire)
    }

    /// Parks every vCPU (the guest stops executing; devices and console stay).
    /// Returns once all are parked. Refused while a snapshot is being written.
    pub fn pause(&self) -> Result<(), VmmError> {
        let _one = self.exclusive("pause")?;
        self.inner.control.call(Request::Pause, CONTROL_TIMEOUT)?;
        self.inner.paused.store(true, Ordering::Release);
        Ok(())
    }

    /// Releases the vCPUs parked by [`VmController::pause`]. Refused while a snapshot
    /// is being written.
    pub fn resume(&self) -> Result<(), VmmError> {
        let _one = self.exclusive("resume")?;
        self.inner.control.call(Request::Resume, CONTROL_TIMEOUT)?;
        self.inner.paused.store(false, Ordering::Release);
        Ok(())
    }

    /// Writes a snapshot of the paused VM into `dir` (created if missing): its state
    /// file and guest memory (see [`crate::snapshot`]). The VM stays paused. Refused
    /// while the VM runs, while another snapshot is being taken, for a VM with a
    /// shared directory (virtio-fs), and on hosts or guests a snapshot cannot cover
    /// (aarch64, AMX state).
    pub fn snapshot(&self, dir: &Path) -> Result<(), VmmError> {
        let Some(slot) = &self.inner.snapshots else {
            return Err(VmmError::NotRunning);
        };
        if !self.inner.spec.shares.is_empty() {
            return Err(VmmError::Refused(
                "snapshot",
                virtiofs::SNAPSHOT_REFUSED.into(),
            ));
        }
        let _one = self.exclusive("snapshot")?;
        self.inner.in_snapshot.store(true, Ordering::Release);
        let timeout = snapshot_timeout(self.inner.spec.mem_size);
        let result = crate::snapshot::take(dir, slot, || {
            self.inner.control.call(Request::Snapshot, timeout)
        });
        self.inner.in_snapshot.store(false, Ordering::Release);
        result
    }

    /// True while the vCPUs are parked by [`VmController::pause`].
    pub fn is_paused(&self) -> bool {
        self.inner.paused.load(Ordering::Acquire)
    }

    /// What the VM is doing, its description and its boot milestones.
    pub fn status(&self) -> VmStatus {
        let state = if !self.inner.live.alive() {
            VmState::Ended
        } else if self.inner.in_snapshot.load(Ordering::Acquire) {
            VmState::Snapshotting
        } else if self.is_paused() {
            VmState::Paused
        } else {
            VmState::Running
        };
        VmStatus {
            state,
            version: env!("CARGO_PKG_VERSION").into(),
            spec: self.inner.spec.clone(),
            boot_timeline_ms: self
                .inner
                .timeline
                .snapshot()
                .into_iter()
                .map(|(e, t)| (e.name().to_string(), t.as_secs_f64() * 1e3))
                .collect(),
        }
    }

    /// vCPU exits, device counters and memory, now.
    pub fn metrics(&self) -> Metrics {
        self.inner.metrics.read()
    }
}

#[cfg(test)]
mod tests {
    use super::snapshot_timeout;
    use std::time::Duration;

    #[test]
    fn the_snapshot_limit_grows_with_guest_memory() {
        assert_eq!(snapshot_timeout(128 << 20), Duration::from_secs(120));
        assert_eq!(snapshot_timeout(2 << 30), Duration::from_secs(120));
        assert_eq!(snapshot_timeout(16 << 30), Duration::from_secs(960));
    }
}
