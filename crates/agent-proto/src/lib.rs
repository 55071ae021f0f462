//! The wire protocol between minivmm's host side (`agent-client`) and its guest agent
//! (`minivmm-agent`), shared by both so they cannot disagree.
//!
//! A connection carries one request: the host's first frame (version, exec,
//! write-file, read-file, set-up or power-off), then the frames of that exchange, then the
//! connection closes. Each frame is `u32` little-endian length of the rest, `u8`
//! kind, payload; structured payloads use a small binary encoding (little-endian
//! integers, `u32`-length-prefixed UTF-8 strings). Every length is checked against
//! the limits in [`limits`] before anything is allocated. `docs/agent-protocol.md`
//! is the full description.

mod codec;
mod error_reply;
mod frame;
pub mod limits;
mod setup;
mod types;

#[cfg(test)]
mod tests;

pub use codec::FrameError;
pub use error_reply::{ErrorCode, ErrorReply};
pub use frame::{write_data, Frame, Kind, ReadError, WriteError};
pub use setup::{MountRequest, SetupRequest};
pub use types::{ExecRequest, ExitStatus, Exited, Version, WindowSize, WriteFileRequest};

/// The protocol version this build speaks. It changes only when a change is not
/// backward compatible; the frame header and the version request and answer never
/// change, so any host can learn any agent's version.
pub const PROTOCOL_VERSION: u32 = 2;

/// The vsock port the agent listens on by default.
pub const DEFAULT_PORT: u32 = 52;
