//! minivmm's guest agent: serves the host's requests (run a command, write or read a
//! file, make a container's mounts, report its version, power off) over vsock, one request per connection, with
//! the protocol of the `agent-proto` crate (`docs/agent-protocol.md`).
//!
//! The server ([`serve`]) is generic over its [`Listener`], so host tests run it on a
//! Unix socket. As the guest's PID 1 the agent also mounts the API file systems and
//! reaps orphans ([`init`], [`reaper`]).

mod conn;
mod exec;
mod files;
pub mod init;
pub mod logger;
pub mod pty;
pub mod reaper;
mod server;
mod setup;
pub mod spawn;
pub mod vsock;

pub use server::{handle, serve, Listener, PowerOff, ServeError, ServerConfig};
pub use vsock::{VsockError, VsockListener};
