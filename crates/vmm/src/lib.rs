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

pub mod api;
mod builder;
pub mod config;
mod console;
mod console_stream;
mod control;
mod controller;
mod error;
mod exit;
mod handle;
pub mod host;
mod memory;
mod memory_file;
pub mod metrics;
mod platform;
mod pool;
mod prepare;
mod runner;
pub mod sandbox;
pub mod snapshot;
pub mod spec;
mod teardown;
pub mod timeline;
mod validate;
mod virtio_devices;
mod vm_builder;

pub use boot::cmdline::{Preset, PresetChoice, DEFAULT_CMDLINE};
pub use config::{
    format_mac, parse_mac, parse_mem_size, ConsoleInput, ConsoleOutput, DiskConfig, FsConfig,
    NetConfig, VmConfig, VsockConfig,
};
pub use console_stream::{console_stream, ConsoleSink, ConsoleStream, CONSOLE_STREAM_LIMIT};
pub use controller::{VmController, VmState, VmStatus};
pub use error::{error_chain, VmmError};
pub use exit::{ExitReason, VmExit};
pub use handle::VmHandle;
pub use pool::{PoolStats, VmPool};
pub use prepare::PreparedVm;
pub use sandbox::{ExecOutput, ExecRequest, ExitStatus, Sandbox, SandboxError, Session};
pub use seccomp::{
    Filters as SeccompFilters, SeccompError, SeccompPolicy, ThreadRole as SeccompThread,
    BAD_SYSCALL_EXIT,
};
pub use spec::VmSpec;
pub use timeline::{BootEvent, Timeline};
pub use vcpu::VcpuExitReason;
/// Why a VM with a shared directory is not snapshotted.
pub use virtiofs::SNAPSHOT_REFUSED;
pub use vm_builder::VmBuilder;

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
    Ok(prepare::prepare(config, console, None)?.release())
}
