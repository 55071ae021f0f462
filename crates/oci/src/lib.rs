//! The OCI runtime side of minivmm (issue 16, in progress): a container bundle read
//! into what its microVM needs ([`bundle`]) and the runtime's state directory
//! ([`state`]), as runc keeps it. The command line that containerd's shim calls
//! (`create`, `start`, `state`, `kill`, `delete`) is built on these.

pub mod bundle;
mod error;
pub mod state;

pub use bundle::{load, ContainerPlan, HostLimits, MountPlan, ProcessPlan};
pub use error::OciError;
pub use state::{Record, StateDir, Status};

#[cfg(test)]
mod tests;
