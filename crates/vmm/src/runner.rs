//! Running a built VM: one thread per vCPU, one I/O thread per device that has its own
//! (virtio-blk), and an event-loop thread (event-manager) that feeds console input,
//! waits for the reasons to stop, then stops and joins every vCPU and I/O thread.

use crate::builder::Machine;
use crate::config::ConsoleInput;
use crate::console::{RawModeGuard, StdinInput};
use crate::control::{ControlReceiver, Request};
use crate::error::VmmError;
use crate::exit::{ExitReason, VmExit};
use crate::timeline::{BootEvent, Timeline};
use crate::virtio_devices::{QueueHandler, VirtioSlot};
use devices::virtio::WorkerRole;
use event_manager::{EventManager, EventOps, Events, MutEventSubscriber, SubscriberOps};
use seccomp::{Filters, SeccompError, ThreadRole};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vcpu::{RunState, VcpuExitReason};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vmm_sys_util::signal::Killable;

/// Event-loop wake-up interval, for retrying console input that did not fit.
const TICK_MS: i32 = 50;
/// How long stopping may take before a vCPU thread is abandoned.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long pausing may take before it is reported as failed.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(2);

type Subscriber = Arc<Mutex<dyn MutEventSubscriber + Send>>;

/// What the exit watcher saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    VcpuExited,
    GuestReset,
    GuestPowerOff,
    GuestPanic,
    StopRequested,
}

/// Watches the eventfds that end a VM.
struct ExitWatcher {
    fds: Vec<(EventFd, Cause)>,
    cause: Option<Cause>,
}

impl MutEventSubscriber for ExitWatcher {
    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        if let Some((evt, cause)) = self.fds.get(events.data() as usize) {
            let _ = evt.read();
            self.cause.get_or_insert(*cause);
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        for (i, (evt, _)) in self.fds.iter().enumerate() {
            if let Err(e) = ops.add(Events::with_data(evt, i as u32, EventSet::IN)) {
                log::error!("exit watcher: cannot watch eventfd: {e:?}");
            }
        }
    }
}

/// Everything the event-loop thread owns.
pub(crate) struct Running {
    machine_parts: MachineParts,
    vcpu_threads: Vec<JoinHandle<()>>,
    io: IoThreads,
    virtio: Vec<VirtioSlot>,
    reasons: Receiver<(u8, VcpuExitReason)>,
    watcher: Arc<Mutex<ExitWatcher>>,
    control: Arc<Mutex<ControlReceiver>>,
    console_input: ConsoleInput,
    timeline: Timeline,
    /// The command-line preset the guest booted with.
    preset: Option<boot::cmdline::Preset>,
    /// What a snapshot request needs.
    snapshot: crate::snapshot::SnapshotSource,
}

/// The parts of a machine that outlive the vCPU threads.
struct MachineParts {
    serial: Arc<Mutex<devices::serial::SerialDevice>>,
    state: Arc<RunState>,
    acpi_pm: Option<Arc<Mutex<devices::acpi_pm::AcpiPmDevice>>>,
    polled: Vec<Arc<Mutex<dyn devices::Polled>>>,
    _arch: crate::platform::ArchState,
    /// Before `memory`: fields drop in order, and the probe must let go first.
    memory_probe: crate::metrics::ProbeRelease,
    memory: vm_memory::GuestMemoryMmap,
    _vm_fd: kvm_ioctls::VmFd,
    teardown: Option<crate::teardown::TeardownHelper>,
}

/// What a spawned thread reports once it has (or has not) installed its filter.
type Confined = Result<(), SeccompError>;

/// Spawns thread `name`, which installs the seccomp filter of `role`, reports that on
/// `ready`, and runs `body` only if it is confined.
fn spawn_confined(
    name: String,
    role: ThreadRole,
    filters: &Arc<Filters>,
    ready: &Sender<Confined>,
    body: impl FnOnce() + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    let (filters, ready) = (filters.clone(), ready.clone());
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let installed = filters.install(role, &name);
            let confined = installed.is_ok();
            let _ = ready.send(installed);
            if confined {
                body();
            }
        })
}

/// Waits for `count` threads of [`spawn_confined`] to report; the first failure.
fn wait_confined(
    ready: &Receiver<Confined>,
    count: usize,
    what: &'static str,
) -> Result<(), VmmError> {
    for _ in 0..count {
        ready
            .recv()
            .unwrap_or(Err(SeccompError::ThreadGone(what)))?;
    }
    Ok(())
}

/// The devices' own I/O threads and the eventfd that stops them all.
struct IoThreads {
    threads: Vec<JoinHandle<()>>,
    stop: EventFd,
}

impl IoThreads {
    /// Spawns a confined thread for each device in `virtio` that has its own worker.
    fn spawn(virtio: &mut [VirtioSlot], filters: &Arc<Filters>) -> Result<Self, VmmError> {
        let mut io = Self {
            threads: Vec::new(),
            stop: EventFd::new(EFD_NONBLOCK).map_err(VmmError::EventFd)?,
        };
        let (ready_tx, ready_rx) = channel();
        for (index, slot) in virtio.iter_mut().enumerate() {
            let Some((worker, queue_evts)) = slot.worker.take() else {
                continue;
            };
            let stop = io.stop.try_clone().map_err(VmmError::EventFd)?;
            let name = format!("minivmm-{}{index}", worker.name());
            let role = match worker.role() {
                WorkerRole::BlockIo => ThreadRole::Io,
                WorkerRole::FileServer => ThreadRole::Fs,
            };
            let spawned = spawn_confined(name, role, filters, &ready_tx, move || {
                worker.run(queue_evts, stop)
            });
            match spawned {
                Ok(t) => io.threads.push(t),
                Err(e) => {
                    io.stop_all();
                    return Err(VmmError::SpawnThread("device I/O", e));
                }
            }
        }
        drop(ready_tx);
        if let Err(e) = wait_confined(&ready_rx, io.threads.len(), "device I/O") {
            io.stop_all();
            return Err(e);
        }
        Ok(io)
    }

    /// Stops and joins every I/O thread (one still in a slow request finishes it).
    fn stop_all(self) {
        if let Err(e) = self.stop.write(1) {
            log::error!("cannot stop the device I/O threads: {e}");
        }
        poll(STOP_TIMEOUT, || {
            self.threads.iter().all(|t| t.is_finished())
        });
        for t in self.threads {
            if t.is_finished() {
                let _ = t.join();
            } else {
                log::error!("a device I/O thread did not stop within {STOP_TIMEOUT:?}");
            }
        }
    }
}

/// Spawns the vCPU threads of `machine`, each confined by its seccomp filter and
/// parked until [`Running::release`], and the devices' I/O threads; returns what the
/// event loop needs.
pub(crate) fn launch(
    mut machine: Machine,
    stop_evt: EventFd,
    control: ControlReceiver,
    console_input: ConsoleInput,
    timeline: Timeline,
    filters: &Arc<Filters>,
) -> Result<Running, VmmError> {
    let io = IoThreads::spawn(&mut machine.virtio, filters)?;
    let exit_evt = EventFd::new(EFD_NONBLOCK).map_err(VmmError::EventFd)?;
    let (tx, reasons) = channel();
    let (ready_tx, ready_rx) = channel();
    let mut vcpu_threads = Vec::new();
    let state = machine.state;
    state.set_paused(true);
    for mut vcpu in machine.vcpus {
        let tx = tx.clone();
        let evt = exit_evt.try_clone().map_err(VmmError::EventFd)?;
        let t = timeline.clone();
        let id = vcpu.id();
        let name = format!("minivmm-vcpu{id}");
        let handle = spawn_confined(name, ThreadRole::Vcpu, filters, &ready_tx, move || {
            let reason = vcpu.run(|| {
                if id == 0 {
                    t.record(BootEvent::FirstKvmRun);
                }
            });
            log::debug!("vcpu{id} stopped: {reason}");
            let _ = tx.send((id, reason));
            let _ = evt.write(1);
        })
        .map_err(|e| VmmError::SpawnThread("vcpu", e));
        match handle {
            Ok(h) => vcpu_threads.push(h),
            Err(e) => {
                stop_threads(&state, vcpu_threads);
                io.stop_all();
                return Err(e);
            }
        }
    }
    drop(ready_tx);
    if let Err(e) = wait_confined(&ready_rx, vcpu_threads.len(), "vcpu") {
        stop_threads(&state, vcpu_threads);
        io.stop_all();
        return Err(e);
    }
    let snapshot = crate::snapshot::SnapshotSource {
        spec: machine.spec,
        legacy: machine.legacy,
        transports: machine.virtio.iter().map(|s| s.transport.clone()).collect(),
        msrs: machine.snapshot_msrs,
        out: Arc::default(),
    };
    let watcher = Arc::new(Mutex::new(ExitWatcher {
        fds: vec![
            (exit_evt, Cause::VcpuExited),
            (machine.reset_evt, Cause::GuestReset),
            (machine.poweroff_evt, Cause::GuestPowerOff),
            (machine.panic_evt, Cause::GuestPanic),
            (stop_evt, Cause::StopRequested),
        ],
        cause: None,
    }));
    Ok(Running {
        machine_parts: MachineParts {
            serial: machine.serial,
            state,
            acpi_pm: machine.acpi_pm,
            polled: machine.polled,
            _arch: machine._arch,
            memory: machine.memory,
            memory_probe: crate::metrics::ProbeRelease(machine.metrics.memory.clone()),
            _vm_fd: machine.vm_fd,
            teardown: machine.teardown,
        },
        vcpu_threads,
        io,
        virtio: machine.virtio,
        reasons,
        watcher,
        control: Arc::new(Mutex::new(control)),
        console_input,
        timeline,
        preset: machine.preset,
        snapshot,
    })
}

/// Kicks every unfinished vCPU thread out of KVM_RUN.
fn kick(threads: &[JoinHandle<()>]) {
    let signal = vcpu::kick_signal();
    for t in threads.iter().filter(|t| !t.is_finished()) {
        let _ = t.kill(signal);
    }
}

/// Polls `done` until it holds or `timeout` passes, sleeping briefly between looks
/// (a few microseconds first: a kicked vCPU leaves KVM_RUN within that).
fn poll(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(5);
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(1));
    }
}

/// Requests a stop and kicks every vCPU thread once (the kick sets `immediate_exit`,
/// so none can miss it), then joins them.
fn stop_threads(state: &RunState, threads: Vec<JoinHandle<()>>) {
    state.request_stop();
    kick(&threads);
    poll(STOP_TIMEOUT, || threads.iter().all(|t| t.is_finished()));
    for t in threads {
        if t.is_finished() {
            let _ = t.join();
        } else {
            log::error!("a vCPU thread did not stop within {STOP_TIMEOUT:?}; abandoning it");
        }
    }
}

impl Running {
    /// Lets the parked vCPUs run the guest.
    pub(crate) fn release(state: &RunState) {
        state.set_paused(false);
    }

    /// The vCPUs' run state.
    pub(crate) fn state(&self) -> Arc<RunState> {
        self.machine_parts.state.clone()
    }

    /// Where snapshot requests and their answers meet the handle.
    pub(crate) fn snapshot_slot(&self) -> crate::snapshot::SnapshotSlot {
        self.snapshot.out.clone()
    }

    /// Stops the vCPUs of a VM that never ran (its event loop could not start).
    pub(crate) fn abandon(self, why: String) -> VmExit {
        stop_threads(&self.machine_parts.state, self.vcpu_threads);
        self.io.stop_all();
        VmExit {
            reason: ExitReason::Internal(why),
            timeline: self.timeline,
            guest_memory_touched: 0,
        }
    }

    /// Puts the terminal in raw mode if the guest reads stdin (before the guest runs).
    pub(crate) fn raw_mode(&self) -> Option<RawModeGuard> {
        (self.console_input == ConsoleInput::Stdin).then(RawModeGuard::new)
    }

    /// Runs the event loop until the VM ends; then stops every vCPU and, by dropping
    /// `_raw`, restores the terminal.
    pub(crate) fn run(mut self, _raw: Option<RawModeGuard>) -> VmExit {
        let virtio = std::mem::take(&mut self.virtio);
        // The event manager holds the devices: it outlives the vCPU threads (which
        // reach them through the bus) so that devices end on this thread, whose
        // allow-list covers what they do then (vsock removes its socket file).
        let mut devices = Vec::new();
        let cause = self.event_loop(virtio, &mut devices);
        self.timeline.record(BootEvent::ExitSeen);
        stop_threads(&self.machine_parts.state, self.vcpu_threads);
        self.io.stop_all();
        drop(devices);
        self.machine_parts
            .serial
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .flush();
        let reason = match cause {
            Ok(Cause::GuestReset) => ExitReason::GuestReset,
            Ok(Cause::GuestPowerOff) => ExitReason::GuestPowerOff,
            Ok(Cause::GuestPanic) => ExitReason::GuestPanic,
            Ok(Cause::StopRequested) => ExitReason::StopRequested,
            Ok(Cause::VcpuExited) => first_reason(&self.reasons, self.preset),
            Err(what) => ExitReason::Internal(what),
        };
        self.timeline.record(BootEvent::Exit);
        let guest_memory_touched = crate::memory::resident_bytes(&self.machine_parts.memory);
        // The VM's memory, devices and descriptors go now, before the handle sees the
        // exit, so that a VM that has ended holds nothing.
        let MachineParts {
            memory,
            memory_probe,
            _vm_fd,
            teardown,
            ..
        } = self.machine_parts;
        drop(memory_probe);
        drop(self.watcher);
        drop(self.control);
        // Closing the VM's last descriptor is the host kernel's teardown (in-kernel
        // devices, memory slots, SRCU grace periods); the memory goes after it, when
        // KVM no longer maps it. With async teardown the helper process holds the last
        // one, and closes it once told (the lifeline) after this.
        drop(_vm_fd);
        drop(teardown);
        self.timeline.record(BootEvent::KvmReleased);
        drop(memory);
        self.timeline.record(BootEvent::Freed);
        VmExit {
            reason,
            timeline: self.timeline,
            guest_memory_touched,
        }
    }

    /// Runs the event loop; the device subscribers are left in `devices` for the
    /// caller to drop.
    fn event_loop(
        &self,
        virtio: Vec<VirtioSlot>,
        devices: &mut Vec<Subscriber>,
    ) -> Result<Cause, String> {
        devices.extend(
            virtio
                .into_iter()
                .map(|slot| Arc::new(Mutex::new(QueueHandler::new(slot))) as Subscriber),
        );
        let mut em =
            EventManager::<Subscriber>::new().map_err(|e| format!("event manager: {e:?}"))?;
        em.add_subscriber(self.watcher.clone());
        em.add_subscriber(self.control.clone());
        for device in devices.iter() {
            em.add_subscriber(device.clone());
        }
        let stdin = match self.console_input {
            ConsoleInput::Stdin => {
                let input = Arc::new(Mutex::new(StdinInput::new(
                    self.machine_parts.serial.clone(),
                )));
                Some((em.add_subscriber(input.clone()), input))
            }
            ConsoleInput::None => None,
        };
        loop {
            em.run_with_timeout(TICK_MS)
                .map_err(|e| format!("event loop: {e:?}"))?;
            for device in &self.machine_parts.polled {
                device.lock().unwrap_or_else(|p| p.into_inner()).poll();
            }
            // Console output waits for a newline; a partial line (a prompt) is written
            // out here, at most one tick after the guest printed it.
            self.machine_parts
                .serial
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .flush();
            if let Some((id, input)) = &stdin {
                if let Ok(mut ops) = em.event_ops(*id) {
                    input
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .tick(&mut ops);
                }
            }
            if let Some(cause) = self.watcher.lock().unwrap_or_else(|p| p.into_inner()).cause {
                return Ok(cause);
            }
            let requests = self
                .control
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            for (request, reply) in requests {
                let _ = reply.send(self.handle(request));
            }
        }
    }

    /// Carries out a handle's request.
    fn handle(&self, request: Request) -> Result<(), String> {
        let state = &self.machine_parts.state;
        match request {
            Request::Pause => {
                state.set_paused(true);
                kick(&self.vcpu_threads);
                let threads = &self.vcpu_threads;
                let parked =
                    || state.parked() >= threads.iter().filter(|t| !t.is_finished()).count();
                if poll(PAUSE_TIMEOUT, parked) {
                    log::debug!("vCPUs parked");
                    Ok(())
                } else {
                    state.set_paused(false);
                    Err(format!("vCPUs did not park within {PAUSE_TIMEOUT:?}"))
                }
            }
            Request::Resume => {
                state.set_paused(false);
                Ok(())
            }
            Request::Snapshot => {
                let live = self
                    .vcpu_threads
                    .iter()
                    .filter(|t| !t.is_finished())
                    .count();
                if live < self.vcpu_threads.len() {
                    return Err("a vCPU has stopped; the VM is ending".into());
                }
                if !state.pause_requested() || state.parked() < live {
                    return Err("pause the VM first".into());
                }
                let parts = &self.machine_parts;
                self.snapshot
                    .collect(&parts._vm_fd, state, live, &parts.memory)
            }
            Request::PowerButton => {
                let Some(pm) = &self.machine_parts.acpi_pm else {
                    return Err("this platform has no ACPI power button".into());
                };
                let mut pm = pm.lock().unwrap_or_else(|p| p.into_inner());
                if pm.press_power_button() {
                    Ok(())
                } else {
                    Err("the guest has not enabled the ACPI power button".into())
                }
            }
        }
    }
}

/// The reason of the first vCPU that stopped on its own. A guest that booted without
/// a preset and failed on an instruction the host cannot emulate is told which
/// preset avoids it.
fn first_reason(
    reasons: &Receiver<(u8, VcpuExitReason)>,
    preset: Option<boot::cmdline::Preset>,
) -> ExitReason {
    reasons
        .try_iter()
        .find(|(_, r)| *r != VcpuExitReason::Stopped)
        .map(|(id, r)| {
            let hint = preset
                .is_none()
                .then(|| crate::platform::emulation_failure_hint(&r))
                .flatten();
            ExitReason::from_vcpu(id, r, hint)
        })
        .unwrap_or(ExitReason::StopRequested)
}
