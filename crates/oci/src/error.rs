//! The runtime's errors: each one line, naming the bundle field, container or file.

use std::path::PathBuf;

/// Why a runtime command failed.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The bundle directory cannot be used.
    #[error("bundle {0}: {1}")]
    Bundle(PathBuf, String),
    /// `config.json` cannot be read or is not an OCI runtime spec.
    #[error("config {0}: {1}")]
    Config(PathBuf, String),
    /// A field of the spec is missing or holds something minivmm cannot honour.
    #[error("config.json: {0} {1}")]
    Field(&'static str, String),
    /// A container ID with characters runc does not allow (or empty, or too long).
    #[error("invalid container id '{0}': use letters, digits, '_', '+', '-' and '.'")]
    BadId(String),
    /// `create` of an ID in use.
    #[error("container with id '{0}' already exists")]
    Exists(String),
    /// A command on an ID the state directory does not know.
    #[error("container '{0}' does not exist")]
    NotFound(String),
    /// A command the container's state does not allow (`start` twice, `delete` of a
    /// running container without `--force`).
    #[error("container '{0}' is {1}: {2}")]
    WrongState(String, &'static str, &'static str),
    /// The state directory or a container's state file cannot be read or written.
    #[error("state {0}: {1}")]
    State(PathBuf, String),
    /// The runtime's own configuration (kernel, initramfs) is missing or unusable.
    #[error("runtime configuration {0}: {1}")]
    Runtime(PathBuf, String),
    /// A signal name or number `kill` does not know.
    #[error("unknown signal '{0}'")]
    BadSignal(String),
    /// Starting, signalling or stopping the container's VMM process failed.
    #[error("{0}: {1}")]
    Process(&'static str, String),
    /// The container's VM failed (boot, agent, set-up).
    #[error("container VM: {0}")]
    Vm(String),
    /// The VMM process's own report of why it could not create the container (already
    /// one of these errors, as text).
    #[error("{0}")]
    Reported(String),
}
