//! Seccomp filters for minivmm's threads. Every thread that touches the guest gets its
//! own allow-list before the guest runs: the vCPU threads (KVM_RUN and the device
//! register models), the event-loop thread (device back ends, teardown), the devices'
//! own I/O threads (disk I/O), the shares' file servers, the control API's workers and
//! the command-line program's main thread (waiting and reporting). A syscall outside the
//! list raises SIGSYS; the handler names the thread and the syscall on stderr,
//! restores the terminal and ends the process with [`BAD_SYSCALL_EXIT`].
//!
//! The lists are in [`lists`]; docs/security.md explains each entry.

mod allocator;
mod lists;
mod sigsys;

pub use seccompiler::{BpfMap, BpfProgram};
pub use sigsys::{set_cleanup_hook, BAD_SYSCALL_EXIT};

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// A VMM thread kind, each with its own allow-list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ThreadRole {
    /// A vCPU thread: KVM_RUN and the device register models.
    Vcpu,
    /// The event-loop thread: device back ends (disk and tap I/O), console input,
    /// stopping the vCPUs and tearing the VM down.
    Events,
    /// The command-line program's main thread after the VM has started.
    Main,
    /// A device's own I/O thread (virtio-blk): waits on eventfds and does disk I/O.
    Io,
    /// A control API worker: serves HTTP on its Unix socket, writes snapshots.
    Api,
    /// A share's file server (virtio-fs): file-system calls relative to descriptors
    /// under the shared directory.
    Fs,
}

impl ThreadRole {
    /// Every role.
    pub const ALL: [ThreadRole; 6] = [
        ThreadRole::Vcpu,
        ThreadRole::Events,
        ThreadRole::Main,
        ThreadRole::Io,
        ThreadRole::Api,
        ThreadRole::Fs,
    ];

    /// The role's name, as in a custom filter file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Vcpu => "vcpu",
            Self::Events => "events",
            Self::Main => "main",
            Self::Io => "io",
            Self::Api => "api",
            Self::Fs => "fs",
        }
    }
}

/// Errors building or installing filters.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// A built-in list did not compile (a bug in [`lists`]).
    #[error("building the built-in {0} seccomp filter: {1}")]
    BuildDefault(&'static str, #[source] seccompiler::BackendError),
    /// The custom filter file could not be read.
    #[error("cannot read seccomp filter file {0}")]
    ReadFile(std::path::PathBuf, #[source] std::io::Error),
    /// The custom filter file is not valid seccompiler JSON.
    #[error("seccomp filter file {0}")]
    Compile(std::path::PathBuf, #[source] seccompiler::Error),
    /// The custom filter file names a thread minivmm does not have.
    #[error(
        "seccomp filter file {0}: unknown thread '{1}' (known: vcpu, events, main, io, api, fs)"
    )]
    UnknownThread(std::path::PathBuf, String),
    /// The kernel refused the filter.
    #[error("installing the {0} seccomp filter")]
    Install(&'static str, #[source] seccompiler::Error),
    /// A thread ended before it reported whether its filter is installed.
    #[error("the {0} thread ended before installing its seccomp filter")]
    ThreadGone(&'static str),
    /// The SIGSYS handler could not be registered.
    #[error("registering the SIGSYS handler")]
    Handler(#[source] vmm_sys_util::errno::Error),
}

/// What to confine the VMM's threads with.
#[derive(Clone, Debug, Default)]
pub enum SeccompPolicy {
    /// minivmm's built-in allow-lists (the default).
    #[default]
    Default,
    /// No filters (for debugging; the guest is then confined only by KVM).
    Off,
    /// Filters from a seccompiler JSON file, keyed by thread role ("vcpu", "events",
    /// "main"); roles the file leaves out keep the built-in list.
    Custom(Arc<BpfMap>),
}

impl SeccompPolicy {
    /// Compiles a seccompiler JSON filter file for this machine's architecture.
    pub fn from_json_file(path: &Path) -> Result<Self, SeccompError> {
        let file = std::fs::File::open(path).map_err(|e| SeccompError::ReadFile(path.into(), e))?;
        let map = seccompiler::compile_from_json(std::io::BufReader::new(file), lists::ARCH)
            .map_err(|e| SeccompError::Compile(path.into(), e))?;
        if let Some(name) = map
            .keys()
            .find(|k| !ThreadRole::ALL.iter().any(|r| r.name() == k.as_str()))
        {
            return Err(SeccompError::UnknownThread(path.into(), name.clone()));
        }
        Ok(Self::Custom(Arc::new(map)))
    }

    /// True unless filters are off.
    pub fn enabled(&self) -> bool {
        !matches!(self, Self::Off)
    }
}

/// Compiled filters, one per role; cheap to share between threads.
#[derive(Clone, Debug, Default)]
pub struct Filters {
    programs: BTreeMap<ThreadRole, Arc<BpfProgram>>,
}

impl Filters {
    /// Compiles `policy` (no filters at all for [`SeccompPolicy::Off`]) and, unless it
    /// is off, registers the SIGSYS reporter.
    pub fn new(policy: &SeccompPolicy) -> Result<Self, SeccompError> {
        let mut programs = BTreeMap::new();
        if !policy.enabled() {
            return Ok(Self { programs });
        }
        for role in ThreadRole::ALL {
            let custom = match policy {
                SeccompPolicy::Custom(map) => map.get(role.name()).cloned(),
                _ => None,
            };
            let program = match custom {
                Some(p) => p,
                None => lists::compile(role)?,
            };
            programs.insert(role, Arc::new(program));
        }
        sigsys::install_handler()?;
        allocator::keep_heaps_from_shrinking();
        Ok(Self { programs })
    }

    /// Installs `role`'s filter on the calling thread (a no-op when filters are off),
    /// recording `label` as the thread's name for the SIGSYS report.
    pub fn install(&self, role: ThreadRole, label: &str) -> Result<(), SeccompError> {
        let Some(program) = self.programs.get(&role) else {
            return Ok(());
        };
        sigsys::set_thread_label(label);
        seccompiler::apply_filter(program).map_err(|e| SeccompError::Install(role.name(), e))
    }

    /// True if these filters confine anything.
    pub fn enabled(&self) -> bool {
        !self.programs.is_empty()
    }
}

#[cfg(test)]
mod tests;
