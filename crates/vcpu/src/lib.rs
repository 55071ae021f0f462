//! vCPUs: the KVM_RUN loop of one vCPU thread, which hands port I/O and MMIO exits to
//! the buses and turns every other exit into a [`VcpuExitReason`] for the VMM.

mod arch;
mod counters;
mod exit;
mod kick;
pub mod snapshot;
mod state;
pub mod x86_insn;

pub use counters::ExitCounters;
pub use exit::{InternalErrorInfo, VcpuExitReason};
pub use kick::{install_kick_handler, kick_signal};
pub use state::RunState;

use devices::Bus;
use kvm_bindings::{KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN};
use kvm_ioctls::{VcpuExit, VcpuFd};
use std::sync::Arc;
use vm_memory::GuestMemoryMmap;

/// What a vCPU shares with the rest of the VMM.
#[derive(Clone)]
pub struct VcpuContext {
    /// Port I/O bus.
    pub io_bus: Bus,
    /// MMIO bus.
    pub mmio_bus: Bus,
    /// Guest memory, to read the faulting instruction on an emulation failure.
    pub memory: GuestMemoryMmap,
    /// Set by the VMM to park every vCPU or make it leave its loop.
    pub state: Arc<RunState>,
}

/// One vCPU and its run loop.
pub struct Vcpu {
    id: u8,
    fd: VcpuFd,
    ctx: VcpuContext,
    counters: Arc<ExitCounters>,
}

impl Vcpu {
    /// Wraps a configured vCPU.
    pub fn new(id: u8, fd: VcpuFd, ctx: VcpuContext) -> Self {
        Self {
            id,
            fd,
            ctx,
            counters: Arc::default(),
        }
    }

    /// This vCPU's exit counters.
    pub fn counters(&self) -> Arc<ExitCounters> {
        self.counters.clone()
    }

    /// The vCPU index.
    pub fn id(&self) -> u8 {
        self.id
    }

    /// Runs the guest until it stops, fails, or the VMM requests a stop (and kicks
    /// this thread with [`kick_signal`]); while the VMM requests a pause, the thread
    /// parks between KVM_RUN calls. `on_first_run` is called just before the first
    /// KVM_RUN.
    pub fn run(&mut self, on_first_run: impl FnOnce()) -> VcpuExitReason {
        let mut first = Some(on_first_run);
        let immediate_exit: *mut u8 = &mut self.fd.get_kvm_run().immediate_exit;
        // Registered before the first look at the flags, so that no kick is lost; the
        // guard ends before `self.fd` can be dropped.
        let _kicks = kick::ImmediateExitGuard::register(immediate_exit);
        loop {
            let (id, fd) = (self.id, &mut self.fd);
            self.ctx.state.park_and_serve(|job| job.serve(id, fd));
            if self.ctx.state.stop_requested() {
                return VcpuExitReason::Stopped;
            }
            if let Some(f) = first.take() {
                f();
            }
            let exit = match self.fd.run() {
                Ok(exit) => exit,
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    ExitCounters::count(&self.counters.interrupted);
                    self.fd.set_kvm_immediate_exit(0);
                    continue;
                }
                Err(e) => return VcpuExitReason::RunFailed(e.errno()),
            };
            match handle_exit(self.id, &self.ctx, &self.counters, exit) {
                Outcome::Continue => {}
                Outcome::Done(reason) => return reason,
                Outcome::TripleFault => {
                    let rip = arch::program_counter(&self.fd);
                    return VcpuExitReason::TripleFault { rip };
                }
                Outcome::InternalError => {
                    let info = exit::internal_error_info(&mut self.fd, &self.ctx.memory);
                    return VcpuExitReason::InternalError(info);
                }
            }
        }
    }
}

/// What the loop does after an exit.
enum Outcome {
    Continue,
    Done(VcpuExitReason),
    TripleFault,
    InternalError,
}

/// Handles one exit without touching the vCPU fd (the exit borrows it).
fn handle_exit(id: u8, ctx: &VcpuContext, counters: &ExitCounters, exit: VcpuExit) -> Outcome {
    let done = |r| Outcome::Done(r);
    ExitCounters::count(match &exit {
        VcpuExit::IoIn(..) => &counters.io_in,
        VcpuExit::IoOut(..) => &counters.io_out,
        VcpuExit::MmioRead(..) => &counters.mmio_read,
        VcpuExit::MmioWrite(..) => &counters.mmio_write,
        VcpuExit::Intr => &counters.interrupted,
        _ => &counters.other,
    });
    match exit {
        VcpuExit::IoIn(port, data) => {
            if !ctx.io_bus.read(u64::from(port), data) {
                log::trace!("vcpu{id}: unhandled port read at {port:#x}");
                data.fill(0xff);
            }
        }
        VcpuExit::IoOut(port, data) => {
            if !ctx.io_bus.write(u64::from(port), data) {
                log::trace!("vcpu{id}: unhandled port write at {port:#x}");
            }
        }
        VcpuExit::MmioRead(addr, data) => {
            if !ctx.mmio_bus.read(addr, data) {
                log::debug!("vcpu{id}: unhandled MMIO read at {addr:#x}");
                data.fill(0);
            }
        }
        VcpuExit::MmioWrite(addr, data) => {
            if !ctx.mmio_bus.write(addr, data) {
                log::debug!("vcpu{id}: unhandled MMIO write at {addr:#x}");
            }
        }
        VcpuExit::Hlt => return done(VcpuExitReason::Halted),
        VcpuExit::Shutdown => return Outcome::TripleFault,
        VcpuExit::SystemEvent(kind, _) => {
            return done(match kind {
                KVM_SYSTEM_EVENT_RESET => VcpuExitReason::Reset,
                KVM_SYSTEM_EVENT_SHUTDOWN => VcpuExitReason::PowerOff,
                other => VcpuExitReason::Unexpected(format!("system event {other}")),
            });
        }
        VcpuExit::FailEntry(reason, cpu) => return done(VcpuExitReason::FailEntry { reason, cpu }),
        VcpuExit::InternalError => return Outcome::InternalError,
        VcpuExit::Intr => {}
        other => return done(VcpuExitReason::Unexpected(format!("{other:?}"))),
    }
    Outcome::Continue
}
