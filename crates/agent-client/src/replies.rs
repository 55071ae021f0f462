//! Decoding the agent's replies from any byte stream, trusting nothing: each
//! exchange's expected frames, bounded output, typed errors. The fuzz target drives
//! these on arbitrary bytes.

use crate::error::{ClientError, ProtocolError};
use crate::transport::is_timeout;
use agent_proto::{ExitStatus, Exited, Frame, ReadError, Version};
use std::io::{self, Read, Write};
use std::time::Duration;

/// What [`crate::AgentClient::exec`] collects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// How the command ended.
    pub status: ExitStatus,
    /// Whether the agent killed it for passing its timeout.
    pub timed_out: bool,
    /// Everything it wrote on stdout (or the terminal).
    pub stdout: Vec<u8>,
    /// Everything it wrote on stderr.
    pub stderr: Vec<u8>,
}

/// Reads reply frames from `R`, turning every failure into a [`ClientError`].
pub struct ReplyReader<R> {
    inner: R,
    /// The read timeout in force on the stream, named in timeout errors.
    pub timeout: Duration,
}

impl<R: Read> ReplyReader<R> {
    /// Reads from `inner`, whose read timeout (for error messages) is `timeout`.
    pub fn new(inner: R, timeout: Duration) -> Self {
        Self { inner, timeout }
    }

    /// The next frame; the end of the stream is [`ClientError::Disconnected`].
    pub fn next(&mut self, waiting_for: &'static str) -> Result<Frame, ClientError> {
        match Frame::read_from(&mut self.inner) {
            Ok(Some(f)) => Ok(f),
            Ok(None) | Err(ReadError::Truncated) => Err(ClientError::Disconnected { waiting_for }),
            Err(ReadError::Io(e)) => Err(io_error(e, waiting_for, self.timeout)),
            Err(ReadError::Invalid(e)) => Err(ProtocolError::Frame(e).into()),
        }
    }

    /// The version answer.
    pub fn version(&mut self) -> Result<Version, ClientError> {
        match self.next("the version answer")? {
            Frame::Version(v) => Ok(v),
            other => Err(unexpected(other, "the version answer")),
        }
    }

    /// An `Ok` answer.
    pub fn ok(&mut self, waiting_for: &'static str) -> Result<(), ClientError> {
        match self.next(waiting_for)? {
            Frame::Ok => Ok(()),
            other => Err(unexpected(other, waiting_for)),
        }
    }

    /// The `Started` answer to an exec request: the command's pid.
    pub fn started(&mut self) -> Result<u32, ClientError> {
        match self.next("the command to start")? {
            Frame::Started { pid } => Ok(pid),
            other => Err(unexpected(other, "the command to start")),
        }
    }

    /// A command's output and exit after `Started`; more than `limit` bytes on either
    /// stream is [`ClientError::OutputLimit`].
    pub fn exec_output(&mut self, limit: u64) -> Result<ExecOutput, ClientError> {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        loop {
            let (buf, data, stream) = match self.next("the command's exit")? {
                Frame::Stdout(d) => (&mut stdout, d, "stdout"),
                Frame::Stderr(d) => (&mut stderr, d, "stderr"),
                Frame::Exited(Exited { status, timed_out }) => {
                    return Ok(ExecOutput {
                        status,
                        timed_out,
                        stdout,
                        stderr,
                    })
                }
                other => return Err(unexpected(other, "the command's exit")),
            };
            if (buf.len() + data.len()) as u64 > limit {
                return Err(ClientError::OutputLimit { stream, limit });
            }
            buf.extend_from_slice(&data);
        }
    }

    /// A read-file answer written to `out`: the size (at most `limit`), data frames
    /// adding up to it, the end frame. Returns the size.
    pub fn file_to<W: Write + ?Sized>(
        &mut self,
        out: &mut W,
        limit: u64,
    ) -> Result<u64, ClientError> {
        let size = match self.next("the file's size")? {
            Frame::FileInfo { size } => size,
            other => return Err(unexpected(other, "the file's size")),
        };
        if size > limit {
            return Err(ClientError::OutputLimit {
                stream: "file",
                limit,
            });
        }
        let mut received: u64 = 0;
        loop {
            match self.next("the file's data")? {
                Frame::FileData(d) => {
                    received += d.len() as u64;
                    if received > size {
                        return Err(ProtocolError::SizeMismatch {
                            announced: size,
                            received,
                        }
                        .into());
                    }
                    out.write_all(&d).map_err(|source| ClientError::Io {
                        op: "storing a file read from",
                        source,
                    })?;
                }
                Frame::FileEnd if received == size => return Ok(size),
                Frame::FileEnd => {
                    return Err(ProtocolError::SizeMismatch {
                        announced: size,
                        received,
                    }
                    .into())
                }
                other => return Err(unexpected(other, "the file's data")),
            }
        }
    }
}

/// The error for a frame that is not the awaited one: the agent's own error answer,
/// or a protocol violation.
pub fn unexpected(frame: Frame, waiting_for: &'static str) -> ClientError {
    match frame {
        Frame::Error(e) => ClientError::Remote {
            code: e.code,
            message: e.message,
        },
        other => ProtocolError::Unexpected {
            got: other.kind(),
            waiting_for,
        }
        .into(),
    }
}

/// Classifies a failed read or write of the connection.
pub fn io_error(e: io::Error, waiting_for: &'static str, timeout: Duration) -> ClientError {
    if is_timeout(&e) {
        return ClientError::AgentTimeout {
            waiting_for,
            after: timeout,
            last: None,
        };
    }
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::NotConnected => ClientError::Disconnected { waiting_for },
        _ => ClientError::Io {
            op: "reading",
            source: e,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_proto::{ErrorCode, ErrorReply};

    fn wire(frames: &[Frame]) -> Vec<u8> {
        frames.iter().flat_map(|f| f.encode().unwrap()).collect()
    }

    fn rr(bytes: &[u8]) -> ReplyReader<&[u8]> {
        ReplyReader::new(bytes, Duration::ZERO)
    }

    #[test]
    fn collects_exec_output() {
        let w = wire(&[
            Frame::Stdout(b"a".to_vec()),
            Frame::Stderr(b"b".to_vec()),
            Frame::Stdout(b"c".to_vec()),
            Frame::Exited(Exited {
                status: ExitStatus::Code(3),
                timed_out: false,
            }),
        ]);
        let out = rr(&w).exec_output(10).unwrap();
        assert_eq!(out.stdout, b"ac");
        assert_eq!(out.stderr, b"b");
        assert_eq!(out.status, ExitStatus::Code(3));
    }

    #[test]
    fn output_past_the_limit_fails() {
        let w = wire(&[Frame::Stdout(vec![0; 6]), Frame::Stdout(vec![0; 6])]);
        assert!(matches!(
            rr(&w).exec_output(10),
            Err(ClientError::OutputLimit {
                stream: "stdout",
                limit: 10
            })
        ));
    }

    #[test]
    fn early_end_is_disconnected_and_errors_are_remote() {
        let w = wire(&[Frame::Stdout(b"x".to_vec())]);
        assert!(matches!(
            rr(&w).exec_output(10),
            Err(ClientError::Disconnected { .. })
        ));
        let w = wire(&[Frame::Error(ErrorReply::new(ErrorCode::NotFound, "nope"))]);
        assert!(matches!(
            rr(&w).started(),
            Err(ClientError::Remote {
                code: ErrorCode::NotFound,
                ..
            })
        ));
        let w = wire(&[Frame::Ok]);
        assert!(matches!(
            rr(&w).version(),
            Err(ClientError::Protocol(ProtocolError::Unexpected { .. }))
        ));
    }

    #[test]
    fn file_answers_must_add_up() {
        let mut out = Vec::new();
        let w = wire(&[
            Frame::FileInfo { size: 3 },
            Frame::FileData(b"ab".to_vec()),
            Frame::FileData(b"c".to_vec()),
            Frame::FileEnd,
        ]);
        assert_eq!(rr(&w).file_to(&mut out, 3).unwrap(), 3);
        assert_eq!(out, b"abc");
        assert!(matches!(
            rr(&w).file_to(&mut Vec::new(), 2),
            Err(ClientError::OutputLimit { stream: "file", .. })
        ));
        let short = wire(&[Frame::FileInfo { size: 3 }, Frame::FileEnd]);
        assert!(matches!(
            rr(&short).file_to(&mut Vec::new(), 3),
            Err(ClientError::Protocol(ProtocolError::SizeMismatch { .. }))
        ));
        let long = wire(&[Frame::FileInfo { size: 1 }, Frame::FileData(b"ab".to_vec())]);
        assert!(matches!(
            rr(&long).file_to(&mut Vec::new(), 3),
            Err(ClientError::Protocol(ProtocolError::SizeMismatch { .. }))
        ));
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        assert!(matches!(
            rr(&[0, 0, 0, 0, 0]).version(),
            Err(ClientError::Protocol(ProtocolError::Frame(_)))
        ));
        assert!(matches!(
            rr(&[0xff, 0xff, 0xff, 0x7f, 0x82]).exec_output(1 << 30),
            Err(ClientError::Protocol(ProtocolError::Frame(_)))
        ));
    }
}
