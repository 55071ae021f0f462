//! Moving files: write-file (the agent replaces the target atomically) and
//! read-file (bounded by the client's file limit), streamed in data frames.

use crate::error::{ClientError, Result};
use crate::replies::io_error;
use crate::AgentClient;
use agent_proto::limits::MAX_DATA_PAYLOAD;
use agent_proto::{write_data, Frame, Kind, WriteFileRequest};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

impl AgentClient {
    /// Writes `data` to the absolute `path` in the guest with permission bits
    /// `mode`, replacing any file there atomically.
    pub fn write_file(&self, path: &str, mode: u32, data: &[u8]) -> Result<()> {
        self.write_file_from(path, mode, data.len() as u64, data)
    }

    /// Like [`AgentClient::write_file`], streaming exactly `size` bytes from `src`
    /// (a shorter source is [`ClientError::Source`] and leaves the target untouched).
    pub fn write_file_from<R: Read>(
        &self,
        path: &str,
        mode: u32,
        size: u64,
        mut src: R,
    ) -> Result<()> {
        let req = WriteFileRequest {
            path: path.into(),
            mode,
            size,
        };
        let mut s = self.request(&Frame::WriteFile(req))?;
        let sent = send_content(&mut s, size, &mut src, self.io_timeout);
        match sent {
            Ok(()) => self.replies(&s).ok("the write-file answer"),
            // The agent may have refused early (no such directory...): its answer
            // explains the failed send better than the send error.
            Err(Sent::Connection(e)) => match self.replies(&s).ok("the write-file answer") {
                Err(remote @ ClientError::Remote { .. }) => Err(remote),
                _ => Err(e),
            },
            // Closing without the end frame makes the agent drop the temporary file.
            Err(Sent::Source(e)) => Err(ClientError::Source(e)),
        }
    }

    /// Reads the regular file at the absolute `path` in the guest (at most the
    /// client's file limit, else [`ClientError::OutputLimit`]).
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.read_file_to(path, &mut out)?;
        Ok(out)
    }

    /// Streams the file at `path` into `out`; returns its size.
    pub fn read_file_to<W: Write + ?Sized>(&self, path: &str, out: &mut W) -> Result<u64> {
        let s = self.request(&Frame::ReadFile { path: path.into() })?;
        self.replies(&s).file_to(out, self.file_limit)
    }
}

enum Sent {
    Connection(ClientError),
    Source(io::Error),
}

fn send_content<R: Read>(
    s: &mut UnixStream,
    size: u64,
    src: &mut R,
    timeout: Duration,
) -> Result<(), Sent> {
    let mut buf = vec![0u8; MAX_DATA_PAYLOAD.min(usize::try_from(size).unwrap_or(usize::MAX))];
    let mut left = size;
    let conn = |e: io::Error| Sent::Connection(io_error(e, "the file data to be sent", timeout));
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match src.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(Sent::Source(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the source ended {left} bytes short"),
                )))
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Sent::Source(e)),
        };
        write_data(s, Kind::FileData, &buf[..n]).map_err(|e| match e {
            agent_proto::WriteError::Io(e) => conn(e),
            agent_proto::WriteError::Invalid(e) => Sent::Connection(ClientError::InvalidRequest(e)),
        })?;
        left -= n as u64;
    }
    Frame::FileEnd.write_to(s).map_err(|e| match e {
        agent_proto::WriteError::Io(e) => conn(e),
        agent_proto::WriteError::Invalid(e) => Sent::Connection(ClientError::InvalidRequest(e)),
    })
}
