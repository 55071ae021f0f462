//! minivmm's VMM library: describe a KVM microVM, start it, and hold a [`VmHandle`]
//! to watch, pause, stop or wait for it. Several VMs can run in one process; each
//! owns its threads, descriptors and memory, and dropping its handle frees them.
//!
//! ```no_run
//! use std::time::Duration;
//! use vmm::VmBuilder;
//! let mut vm = VmBuilder::new("vmlinux")
//!     .initrd("initramfs.cpio")
//!     .memory_mib(512)
//!     .console_stream()
//!     .start()?;
//! let mut console = vm.take_console().unwrap();
//! let line = console.wait_for("login:", Duration::from_secs(10));
//! let exit = vm.shutdown(Duration::from_secs(5)); // power button, then forced
//! println!("{line:?}; {} (exit code {})", exit.reason, exit.reason.exit_code());
//! print!("{}", exit.timeline);
//! # Ok::<(), vmm::VmmError>(())
//! ```
//!
//! Threads: one per vCPU (`minivmm-vcpuN`) running KVM_RUN, and one event loop
//! (`minivmm-events`) that owns the VM, runs the devices, feeds console input,
//! carries out the handle's requests and ends the VM. Each installs its seccomp
//! allow-list before the guest runs ([`SeccompPolicy`], on by default); the embedding
//! program's own threads are left alone.

mod builder;
pub mod config;
mod console;
mod console_stream;
mod control;
mod error;
mod exit;
mod handle;
pub mod host;
mod memory;
mod platform;
mod runner;
pub mod timeline;
mod validate;
mod virtio_devices;
mod vm_builder;

pub use boot::cmdline::{Preset, PresetChoice, DEFAULT_CMDLINE};
pub use config::{
    parse_mac, parse_mem_size, ConsoleInput, ConsoleOutput, DiskConfig, NetConfig, VmConfig,
};
pub use console_stream::{console_stream, ConsoleSink, ConsoleStream, CONSOLE_STREAM_LIMIT};
pub use error::VmmError;
pub use exit::{ExitReason, VmExit};
pub use handle::VmHandle;
pub use seccomp::{
    Filters as SeccompFilters, SeccompError, SeccompPolicy, ThreadRole as SeccompThread,
    BAD_SYSCALL_EXIT,
};
pub use timeline::{BootEvent, Timeline};
pub use vcpu::VcpuExitReason;
pub use vm_builder::VmBuilder;

use seccomp::{Filters, ThreadRole};
use std::sync::Arc;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Entry point for a complete [`VmConfig`]; [`VmBuilder`] is the step-by-step way.
pub struct Vm;

impl Vm {
    /// Builds the VM described by `config` and starts its vCPUs. Errors in the
    /// configuration, the kernel or the host are reported before anything runs.
    pub fn start(config: VmConfig) -> Result<VmHandle, VmmError> {
        start(config, None)
    }
}

fn start(config: VmConfig, console: Option<ConsoleStream>) -> Result<VmHandle, VmmError> {
    vcpu::install_kick_handler().map_err(VmmError::KickHandler)?;
    let filters = Arc::new(Filters::new(&config.seccomp)?);
    if filters.enabled() {
        seccomp::set_cleanup_hook(console::restore_terminal_after_fault);
    }
    let timeline = Timeline::new(config.time_origin);
    let console_input = config.console_input;
    let machine = builder::build(config, &timeline)?;
    let stop_evt = EventFd::new(EFD_NONBLOCK).map_err(VmmError::EventFd)?;
    let handle_evt = stop_evt.try_clone().map_err(VmmError::EventFd)?;
    let (control, control_rx) = control::control_channel()?;
    let running = runner::launch(
        machine,
        stop_evt,
        control_rx,
        console_input,
        timeline.clone(),
        &filters,
    )?;
    let state = running.state();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("minivmm-events".into())
        .spawn(
            move || match filters.install(ThreadRole::Events, "minivmm-events") {
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
            },
        )
        .map_err(|e| VmmError::SpawnThread("event loop", e))?;
    let handle = VmHandle::new(handle_evt, control, thread, timeline, console);
    match ready_rx.recv() {
        Ok(Ok(())) => {
            runner::Running::release(&state);
            Ok(handle)
        }
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(seccomp::SeccompError::ThreadGone("event loop").into()),
    }
}
