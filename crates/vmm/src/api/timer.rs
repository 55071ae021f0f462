//! The API's stop timer: after `PUT /v1/vm/shutdown` pressed the power button, the VM
//! is stopped once the grace period ends, unless it has ended by then. One thread waits
//! for it, so no connection's worker is held for the grace period.

use crate::controller::VmController;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Plan {
    /// When to stop the VM (the earliest asked for).
    deadline: Option<Instant>,
    cancelled: bool,
}

/// A deadline shared between the workers that set it and the thread that acts on it.
#[derive(Default)]
pub(super) struct StopTimer {
    plan: Mutex<Plan>,
    changed: Condvar,
}

impl StopTimer {
    /// Stops the VM after `grace` (or earlier, if an earlier stop is planned).
    pub(super) fn stop_after(&self, grace: Duration) {
        let mut plan = self.plan.lock().unwrap_or_else(|p| p.into_inner());
        let at = Instant::now() + grace;
        plan.deadline = Some(plan.deadline.map_or(at, |d| d.min(at)));
        self.changed.notify_all();
    }

    /// Ends the timer thread.
    pub(super) fn cancel(&self) {
        self.plan
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .cancelled = true;
        self.changed.notify_all();
    }

    /// The timer thread's body.
    pub(super) fn run(&self, vm: &VmController) {
        let mut plan = self.plan.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if plan.cancelled {
                return;
            }
            let now = Instant::now();
            plan = match plan.deadline {
                None => self.changed.wait(plan).unwrap_or_else(|p| p.into_inner()),
                Some(at) if at <= now => {
                    plan.deadline = None;
                    if vm.is_alive() {
                        log::info!("api: the guest did not power off in time; stopping it");
                        vm.stop();
                    }
                    plan
                }
                // Woken early by a VM that ended: nothing to wait for.
                Some(_) if !vm.is_alive() => {
                    plan.deadline = None;
                    plan
                }
                Some(at) => {
                    let wait = (at - now).min(Duration::from_millis(50));
                    self.changed
                        .wait_timeout(plan, wait)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }
}
