//! Starting a VM in two steps: [`prepare`] does everything up to the guest's first
//! instruction (KVM VM, memory slots, devices, kernel, vCPU threads spawned, confined
//! and parked, the event loop running); [`PreparedVm::release`] lets the vCPUs run.
//! `start()` is both at once; [`crate::VmPool`] keeps prepared VMs ahead of demand.

use crate::console_stream::ConsoleStream;
use crate::controller::{ControllerParts, VmController};
use crate::error::VmmError;
use crate::handle::VmHandle;
use crate::sandbox::Liveness;
use crate::timeline::{BootEvent, Timeline};
use crate::{builder, control, runner, VmConfig};
use seccomp::{Filters, ThreadRole};
use std::sync::Arc;
use vcpu::RunState;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// A VM built and ready to run, its vCPUs parked before their first KVM_RUN. Dropping
/// it frees the VM without running the guest.
pub struct PreparedVm {
    handle: VmHandle,
    state: Arc<RunState>,
}

impl PreparedVm {
    /// Lets the vCPUs run the guest; the VM is then what `start()` returns.
    pub fn release(self) -> VmHandle {
        self.handle.timeline().record(BootEvent::Released);
        runner::Running::release(&self.state);
        self.handle
    }

    /// The boot timeline so far (everything up to `threads_started`).
    pub fn timeline(&self) -> &Timeline {
        self.handle.timeline()
    }
}

/// Builds the VM described by `config` and spawns its threads, leaving the vCPUs parked.
pub(crate) fn prepare(
    config: VmConfig,
    console: Option<ConsoleStream>,
    restore: Option<&crate::snapshot::Restore>,
) -> Result<PreparedVm, VmmError> {
    vcpu::install_kick_handler().map_err(VmmError::KickHandler)?;
    let timeline = Timeline::new(config.time_origin);
    let filters = Arc::new(Filters::new(&config.seccomp)?);
    if filters.enabled() {
        seccomp::set_cleanup_hook(crate::console::restore_terminal_after_fault);
    }
    timeline.record(BootEvent::SeccompReady);
    let console_input = config.console_input;
    let vsock_socket = config.spec.vsock.as_ref().map(|v| v.socket.clone());
    let start = match restore {
        None => builder::Start::Boot,
        Some(r) => builder::Start::Restore {
            state: &r.state,
            memory: &r.memory,
        },
    };
    let machine = builder::build_machine(config, &timeline, start)?;
    let (spec, metrics) = (machine.spec.clone(), machine.metrics.clone());
    let live = Liveness::new();
    let thread_live = live.clone();
    let stop_evt = EventFd::new(EFD_NONBLOCK).map_err(VmmError::EventFd)?;
    let handle_evt = stop_evt.try_clone().map_err(VmmError::EventFd)?;
    let (control, control_rx) = control::control_channel()?;
    let api_filters = filters.clone();
    let running = runner::launch(
        machine,
        stop_evt,
        control_rx,
        console_input,
        timeline.clone(),
        &filters,
    )?;
    let state = running.state();
    let snapshot_slot = running.snapshot_slot();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("minivmm-events".into())
        .spawn(move || {
            let exit = match filters.install(ThreadRole::Events, "minivmm-events") {
                Ok(()) => {
                    let raw = running.raw_mode();
                    let _ = ready_tx.send(Ok(()));
                    running.run(raw)
                }
                Err(e) => {
                    let why = e.to_string();
                    let _ = ready_tx.send(Err(e));
                    running.abandon(why)
                }
            };
            thread_live.ended();
            exit
        })
        .map_err(|e| VmmError::SpawnThread("event loop", e))?;
    let controller = VmController::new(ControllerParts {
        control,
        stop_evt: handle_evt,
        snapshots: snapshot_slot,
        live,
        metrics,
        spec,
        timeline: timeline.clone(),
        filters: api_filters,
    });
    let handle = VmHandle::new(controller, thread, timeline, console, vsock_socket);
    match ready_rx.recv() {
        Ok(Ok(())) => {
            handle.timeline().record(BootEvent::ThreadsStarted);
            Ok(PreparedVm { handle, state })
        }
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(seccomp::SeccompError::ThreadGone("event loop").into()),
    }
}
