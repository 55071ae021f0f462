//! What can go wrong talking to the agent, each failure its own variant so the caller
//! can tell a guest that never came up, one that died, one that misbehaved and a
//! command that failed apart.

use agent_proto::{ErrorCode, FrameError, Kind};
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// An agent call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be connected (the VMM's vsock socket or the agent's Unix
    /// socket).
    #[error("connecting to {}", path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The VMM refused or failed the `CONNECT <port>` handshake (often: nothing
    /// listens on the port in the guest yet).
    #[error("vsock handshake for port {port} on {}", path.display())]
    Handshake {
        /// The VMM's vsock socket.
        path: PathBuf,
        /// The guest port.
        port: u32,
        /// What went wrong.
        #[source]
        source: HandshakeError,
    },
    /// The agent did not answer in time.
    #[error("the agent did not answer {waiting_for} within {after:?}")]
    AgentTimeout {
        /// What was awaited.
        waiting_for: &'static str,
        /// The time allowed.
        after: Duration,
        /// The last attempt's failure, for [`crate::AgentClient::wait_for_agent`].
        #[source]
        last: Option<Box<ClientError>>,
    },
    /// The connection closed before the exchange's final frame: the agent or the
    /// guest went away (a VM that exited means the guest died).
    #[error("the connection to the agent closed before {waiting_for}")]
    Disconnected {
        /// What was awaited.
        waiting_for: &'static str,
    },
    /// The agent sent something the protocol does not allow.
    #[error("the agent broke the protocol")]
    Protocol(#[from] ProtocolError),
    /// The agent answered with an error.
    #[error("the agent reported {code}: {message}")]
    Remote {
        /// Its code.
        code: ErrorCode,
        /// Its message.
        message: String,
    },
    /// The agent speaks another protocol version.
    #[error("the agent (version {agent_version}) speaks protocol {agent}, this host {host}")]
    IncompatibleAgent {
        /// The agent's protocol version.
        agent: u32,
        /// This host's.
        host: u32,
        /// The agent's own version.
        agent_version: String,
    },
    /// A command's output or a file passed the limit the caller set.
    #[error("{stream} passed the limit of {limit} bytes")]
    OutputLimit {
        /// Which: stdout, stderr or file.
        stream: &'static str,
        /// The limit.
        limit: u64,
    },
    /// The request breaks a protocol limit, so it was not sent.
    #[error("the request cannot be sent")]
    InvalidRequest(#[source] FrameError),
    /// Reading or writing the connection failed.
    #[error("{op} the agent connection")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Reading the caller's data for a file write failed.
    #[error("reading the data to write")]
    Source(#[source] io::Error),
}

/// A reply that breaks the protocol.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// A frame that does not decode.
    #[error("invalid frame")]
    Frame(#[from] FrameError),
    /// A valid frame where it does not belong.
    #[error("unexpected {got:?} frame while waiting for {waiting_for}")]
    Unexpected {
        /// The frame's kind.
        got: Kind,
        /// What was awaited.
        waiting_for: &'static str,
    },
    /// File data that does not add up to the announced size.
    #[error("file data of {received} bytes for an announced size of {announced}")]
    SizeMismatch {
        /// The announced size.
        announced: u64,
        /// The bytes received (so far).
        received: u64,
    },
}

/// The Firecracker-style `CONNECT <port>` handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// Sending the request failed.
    #[error("sending CONNECT")]
    Send(#[source] io::Error),
    /// Reading the answer failed.
    #[error("reading the answer")]
    Read(#[source] io::Error),
    /// The VMM closed the connection without an answer.
    #[error("the connection closed without an answer (is anything listening on the port?)")]
    Closed,
    /// The answer line is too long.
    #[error("the answer is longer than {0} bytes")]
    TooLong(usize),
    /// The answer is not `OK <port>`.
    #[error("unexpected answer {0:?}")]
    Refused(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
