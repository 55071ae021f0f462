//! minivmm's VMM library: build a KVM microVM from a plain [`VmConfig`], start it, and
//! get a [`VmHandle`] to wait for it or stop it.
//!
//! ```no_run
//! use vmm::{Vm, VmConfig};
//! let mut config = VmConfig::new("vmlinux");
//! config.initrd = Some("initramfs.cpio".into());
//! config.mem_size = 512 << 20;
//! let handle = Vm::start(config)?;
//! let exit = handle.wait();
//! println!("{} after {:?}", exit.reason, exit.timeline.get(vmm::BootEvent::Exit));
//! # Ok::<(), vmm::VmmError>(())
//! ```
//!
//! Threads: one per vCPU (`minivmm-vcpuN`) running KVM_RUN, and one event loop
//! (`minivmm-events`) that owns the VM, feeds console input and ends the VM.

mod builder;
pub mod config;
mod console;
mod error;
mod exit;
mod legacy;
mod memory;
mod runner;
pub mod timeline;
mod virtio_devices;

pub use boot::cmdline::{Preset, DEFAULT_CMDLINE};
pub use config::{
    parse_mac, parse_mem_size, ConsoleInput, ConsoleOutput, DiskConfig, NetConfig, VmConfig,
};
pub use error::VmmError;
pub use exit::{ExitReason, VmExit};
pub use timeline::{BootEvent, Timeline};
pub use vcpu::VcpuExitReason;

use std::os::fd::{AsRawFd, RawFd};
use std::thread::JoinHandle;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Entry point: builds and starts VMs.
pub struct Vm;

impl Vm {
    /// Builds the VM described by `config` and starts its vCPUs. Errors in the
    /// configuration, the kernel or the host are reported before anything runs.
    pub fn start(config: VmConfig) -> Result<VmHandle, VmmError> {
        vcpu::install_kick_handler().map_err(VmmError::KickHandler)?;
        let timeline = Timeline::new(config.time_origin);
        let console_input = config.console_input;
        let machine = builder::build(config, &timeline)?;
        let stop_evt = EventFd::new(EFD_NONBLOCK).map_err(VmmError::EventFd)?;
        let handle_evt = stop_evt.try_clone().map_err(VmmError::EventFd)?;
        let running = runner::launch(machine, stop_evt, console_input, timeline.clone())?;
        let thread = std::thread::Builder::new()
            .name("minivmm-events".into())
            .spawn(move || running.run())
            .map_err(|e| VmmError::SpawnThread("event loop", e))?;
        Ok(VmHandle {
            stop_evt: handle_evt,
            thread: Some(thread),
            timeline,
        })
    }
}

/// A running VM. Dropping it stops the VM and waits for its threads.
pub struct VmHandle {
    stop_evt: EventFd,
    thread: Option<JoinHandle<VmExit>>,
    timeline: Timeline,
}

impl VmHandle {
    /// Asks the VM to stop; [`VmHandle::wait`] then returns [`ExitReason::StopRequested`].
    pub fn stop(&self) {
        if let Err(e) = self.stop_evt.write(1) {
            log::error!("cannot signal the VM to stop: {e}");
        }
    }

    /// A descriptor that stops the VM when an 8-byte count is written to it; safe to
    /// use from a signal handler (write(2) is async-signal-safe).
    pub fn stop_fd(&self) -> RawFd {
        self.stop_evt.as_raw_fd()
    }

    /// The boot timeline so far.
    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    /// Waits until the VM ends.
    pub fn wait(mut self) -> VmExit {
        self.join()
    }

    fn join(&mut self) -> VmExit {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(exit)) => exit,
            Some(Err(_)) => VmExit {
                reason: ExitReason::Internal("the event loop thread panicked".into()),
                timeline: self.timeline.clone(),
            },
            None => VmExit {
                reason: ExitReason::Internal("the VM was already waited for".into()),
                timeline: self.timeline.clone(),
            },
        }
    }
}

impl Drop for VmHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop();
            let _ = self.join();
        }
    }
}
