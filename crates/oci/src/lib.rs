//! minivmm's OCI runtime (`minivmm-oci`): the command line containerd's runc shim
//! and Docker call (`create`, `start`, `state`, `kill`, `delete`, `features`), each
//! container in a microVM of its own. A bundle is read into what its VM needs
//! ([`bundle`]) and what its guest agent is asked ([`guest`]); [`state`] keeps
//! runc-like records between commands; the VMM process `create` leaves behind
//! ([`keeper`]) is the process the shim waits on, and its exit status is the
//! container's.

pub mod bundle;
pub mod commands;
mod error;
pub mod guest;
pub mod keeper;
pub mod log;
pub mod netns;
mod relay;
pub mod runtime_config;
pub mod signals;
pub mod state;

pub use bundle::{load, ContainerPlan, HostLimits, MountPlan, Network, ProcessPlan};
pub use error::OciError;
pub use state::{Record, StateDir, Status};

#[cfg(test)]
mod tests;
