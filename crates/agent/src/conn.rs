//! One host connection's sending side, shared by the threads that serve it, and the
//! helpers for answering an error and closing.

use agent_proto::{write_data, ErrorCode, ErrorReply, Frame, Kind, WriteError};
use std::error::Error;
use std::io::{self, Read};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long the host gets to close its side after an error before the agent closes.
const LINGER: Duration = Duration::from_secs(1);

/// Most bytes the agent reads and drops while lingering.
const LINGER_BYTES: usize = 4 << 20;

/// Sends whole frames on a connection; any thread may send, frames never interleave.
#[derive(Clone)]
pub struct FrameWriter {
    stream: Arc<Mutex<UnixStream>>,
}

impl FrameWriter {
    /// A writer on its own handle of `stream`.
    pub fn new(stream: &UnixStream) -> io::Result<Self> {
        Ok(Self {
            stream: Arc::new(Mutex::new(stream.try_clone()?)),
        })
    }

    /// Sends one frame.
    pub fn send(&self, frame: &Frame) -> Result<(), WriteError> {
        let buf = frame.encode()?;
        let mut s = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        io::Write::write_all(&mut *s, &buf).map_err(WriteError::Io)
    }

    /// Sends one data frame of `kind` around `data` (at most the data limit).
    pub fn send_data(&self, kind: Kind, data: &[u8]) -> Result<(), WriteError> {
        let mut s = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        write_data(&mut *s, kind, data)
    }

    /// Sends an error answer, logging (not returning) a failure to send it.
    pub fn error(&self, code: ErrorCode, message: impl Into<String>) {
        let reply = ErrorReply::new(code, message);
        log::debug!("answering error {}: {}", reply.code, reply.message);
        if let Err(e) = self.send(&Frame::Error(reply)) {
            log::debug!("sending an error answer: {}", chain(&e));
        }
    }
}

/// An error and its sources on one line: `a: b: c`.
pub fn chain(e: &dyn Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        s.push_str(": ");
        s.push_str(&src.to_string());
        cur = src.source();
    }
    s
}

/// The protocol code for an I/O error.
pub fn io_code(e: &io::Error) -> ErrorCode {
    match e.kind() {
        io::ErrorKind::NotFound => ErrorCode::NotFound,
        io::ErrorKind::PermissionDenied => ErrorCode::PermissionDenied,
        _ => ErrorCode::Io,
    }
}

/// Ends a connection after an error answer: stops sending, then reads and drops what
/// the host still sends for a moment (bounded), so the answer is not lost to a reset.
pub fn linger_and_close(mut stream: UnixStream) {
    let _ = stream.shutdown(Shutdown::Write);
    if stream.set_read_timeout(Some(LINGER)).is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    let mut dropped = 0;
    while dropped < LINGER_BYTES {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => dropped += n,
        }
    }
}
