//! [`VmPool`]: VMs prepared ahead of demand (KVM VM, memory slots, devices, kernel,
//! vCPU threads parked), so that a start is taking one and letting its vCPUs run. A
//! background thread prepares a new one for each taken.

use crate::error::VmmError;
use crate::handle::VmHandle;
use crate::prepare::PreparedVm;
use crate::vm_builder::VmBuilder;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// How long the refill thread waits after a failed preparation.
const FAILURE_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// What the pool makes each VM from: a fresh builder per VM (builders hold writers and
/// clocks that cannot be shared).
type Recipe = dyn Fn() -> VmBuilder + Send + Sync;

/// Counters of a pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Prepared VMs waiting now.
    pub ready: usize,
    /// VMs handed out prepared.
    pub taken_prepared: u64,
    /// VMs the pool had to build on demand (it was empty).
    pub built_on_demand: u64,
    /// Preparations that failed in the background (the last error is logged).
    pub failures: u64,
}

struct Shared {
    recipe: Box<Recipe>,
    size: usize,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    ready: VecDeque<PreparedVm>,
    stats: PoolStats,
    closing: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A pool of prepared VMs of one kind. Dropping it frees the VMs still waiting (their
/// guests never ran); VMs already taken live on as their handles decide.
pub struct VmPool {
    shared: Arc<Shared>,
    refill: Option<JoinHandle<()>>,
}

impl VmPool {
    /// Prepares `size` VMs from `recipe` before returning (so that a recipe that cannot
    /// work fails here, with the error `start()` would give), then keeps `size` ready.
    pub fn new(
        size: usize,
        recipe: impl Fn() -> VmBuilder + Send + Sync + 'static,
    ) -> Result<Self, VmmError> {
        let mut ready = VecDeque::with_capacity(size);
        for _ in 0..size {
            ready.push_back(recipe().prepare()?);
        }
        let shared = Arc::new(Shared {
            recipe: Box::new(recipe),
            size,
            state: Mutex::new(State {
                ready,
                ..State::default()
            }),
            changed: Condvar::new(),
        });
        let worker = shared.clone();
        let refill = std::thread::Builder::new()
            .name("minivmm-pool".into())
            .spawn(move || refill(&worker))
            .map_err(|e| VmmError::SpawnThread("pool refill", e))?;
        Ok(Self {
            shared,
            refill: Some(refill),
        })
    }

    /// Starts a VM: a prepared one if any is waiting (its vCPUs run at once), else one
    /// built now.
    pub fn start(&self) -> Result<VmHandle, VmmError> {
        let prepared = {
            let mut state = self.shared.lock();
            let vm = state.ready.pop_front();
            if vm.is_some() {
                state.stats.taken_prepared += 1;
            } else {
                state.stats.built_on_demand += 1;
            }
            vm
        };
        self.shared.changed.notify_all();
        match prepared {
            Some(vm) => Ok(vm.release()),
            None => (self.shared.recipe)().start(),
        }
    }

    /// The pool's counters.
    pub fn stats(&self) -> PoolStats {
        let state = self.shared.lock();
        PoolStats {
            ready: state.ready.len(),
            ..state.stats
        }
    }

    /// Waits until `size` VMs are prepared again (or the pool is closing).
    pub fn wait_full(&self) {
        let mut state = self.shared.lock();
        while state.ready.len() < self.shared.size && !state.closing {
            state = self
                .shared
                .changed
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// The refill thread: prepares a VM whenever fewer than `size` wait, outside the lock.
fn refill(shared: &Shared) {
    loop {
        {
            let mut state = shared.lock();
            while state.ready.len() >= shared.size && !state.closing {
                state = shared
                    .changed
                    .wait(state)
                    .unwrap_or_else(|p| p.into_inner());
            }
            if state.closing {
                return;
            }
        }
        let made = (shared.recipe)().prepare();
        let mut state = shared.lock();
        match made {
            Ok(vm) => state.ready.push_back(vm),
            Err(e) => {
                state.stats.failures += 1;
                log::error!("VM pool: cannot prepare a VM: {e}");
                // A recipe that keeps failing (the host ran out of something) must not
                // spin; `start()` still builds on demand meanwhile.
                drop(state);
                std::thread::sleep(FAILURE_BACKOFF);
                continue;
            }
        }
        drop(state);
        shared.changed.notify_all();
    }
}

impl Drop for VmPool {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.changed.notify_all();
        if let Some(t) = self.refill.take() {
            let _ = t.join();
        }
        // The waiting VMs' handles stop their parked vCPUs and free them.
        self.shared.lock().ready.clear();
    }
}
