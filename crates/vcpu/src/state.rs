//! What the VMM tells its vCPU threads: keep running, park (pause), or stop. Stopping
//! and pausing both kick the threads out of KVM_RUN (see [`crate::kick_signal`]); a
//! paused thread waits on a condition variable until it is resumed or stopped.

use crate::snapshot::SaveJob;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Shared run state of one VM's vCPUs.
#[derive(Debug, Default)]
pub struct RunState {
    stop: AtomicBool,
    paused: Mutex<bool>,
    wake: Condvar,
    parked: AtomicUsize,
    /// Work for parked vCPU threads (saving their state), if any.
    job: Mutex<Option<Arc<SaveJob>>>,
}

impl RunState {
    /// A state that lets vCPUs run.
    pub fn new() -> Self {
        Self::default()
    }

    fn paused_guard(&self) -> MutexGuard<'_, bool> {
        self.paused.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells every vCPU to leave its loop (parked ones too).
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
        let _guard = self.paused_guard();
        self.wake.notify_all();
    }

    /// True once a stop was requested.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Asks vCPUs to park (`true`) or releases them (`false`).
    pub fn set_paused(&self, paused: bool) {
        *self.paused_guard() = paused;
        if !paused {
            self.wake.notify_all();
        }
    }

    /// True while a pause is requested.
    pub fn pause_requested(&self) -> bool {
        *self.paused_guard()
    }

    /// How many vCPU threads are parked now.
    pub fn parked(&self) -> usize {
        self.parked.load(Ordering::Acquire)
    }

    /// Called by a vCPU thread outside KVM_RUN: waits while a pause is requested and
    /// no stop is.
    pub fn park_while_paused(&self) {
        self.park_and_serve(|_| {});
    }

    /// As [`RunState::park_while_paused`], and while parked, runs `serve` once on each
    /// job [`RunState::post_job`] hands out (the thread's part of it: its own vCPU).
    pub fn park_and_serve(&self, mut serve: impl FnMut(&SaveJob)) {
        let mut paused = self.paused_guard();
        if !*paused || self.stop_requested() {
            return;
        }
        self.parked.fetch_add(1, Ordering::AcqRel);
        let mut served: Option<Arc<SaveJob>> = None;
        while *paused && !self.stop_requested() {
            let job = self.job.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(job) = job.filter(|j| !served.as_ref().is_some_and(|s| Arc::ptr_eq(s, j))) {
                drop(paused);
                serve(&job);
                served = Some(job);
                paused = self.paused_guard();
                continue;
            }
            paused = self.wake.wait(paused).unwrap_or_else(|p| p.into_inner());
        }
        self.parked.fetch_sub(1, Ordering::AcqRel);
    }

    /// Hands `job` to every parked vCPU thread (each serves it once), replacing any
    /// earlier one.
    pub fn post_job(&self, job: Arc<SaveJob>) {
        *self.job.lock().unwrap_or_else(|p| p.into_inner()) = Some(job);
        let _guard = self.paused_guard();
        self.wake.notify_all();
    }

    /// Withdraws the posted job.
    pub fn clear_job(&self) {
        *self.job.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn wait_until(f: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !f() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    #[test]
    fn parked_threads_wait_for_resume_or_stop() {
        let state = Arc::new(RunState::new());
        state.park_while_paused(); // not paused: returns at once
        state.set_paused(true);
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let s = state.clone();
                std::thread::spawn(move || s.park_while_paused())
            })
            .collect();
        assert!(wait_until(|| state.parked() == 3));
        assert!(threads.iter().all(|t| !t.is_finished()));
        state.set_paused(false);
        assert!(wait_until(|| threads.iter().all(|t| t.is_finished())));
        assert_eq!(state.parked(), 0);

        state.set_paused(true);
        let s = state.clone();
        let t = std::thread::spawn(move || s.park_while_paused());
        assert!(wait_until(|| state.parked() == 1));
        state.request_stop();
        assert!(wait_until(|| t.is_finished()));
        assert!(state.stop_requested());
    }
}
