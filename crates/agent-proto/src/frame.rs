//! Frames: the kinds, their payloads, and reading and writing them on a byte stream.
//!
//! A frame is `u32` little-endian length of the rest, `u8` kind, payload. The reader
//! checks the length against the kind's limit before it allocates the payload.

use crate::codec::{check_len, FrameError, Reader, Writer};
use crate::error_reply::ErrorReply;
use crate::limits::{HEADER_LEN, MAX_CONTROL_PAYLOAD, MAX_DATA_PAYLOAD, MAX_PATH_LEN};
use crate::setup::SetupRequest;
use crate::types::{
    check_signal, check_size, ExecRequest, Exited, Version, WindowSize, WriteFileRequest,
};
use std::io::{self, Read, Write};

/// The kind byte of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// Host: which version are you? Payload: `u32` host protocol version.
    VersionRequest = 0x01,
    /// Host: run a command. Payload: [`ExecRequest`].
    Exec = 0x02,
    /// Host: write a file. Payload: [`WriteFileRequest`].
    WriteFile = 0x03,
    /// Host: read a file. Payload: path string.
    ReadFile = 0x04,
    /// Host: sync and power off. No payload.
    PowerOff = 0x05,
    /// Host: make mounts and set the host name. Payload: [`SetupRequest`].
    Setup = 0x06,
    /// Host: bytes for the command's stdin. Data payload.
    StdinData = 0x10,
    /// Host: end of stdin. No payload.
    StdinClose = 0x11,
    /// Host: new terminal size. Payload: `u16` rows, `u16` cols.
    Resize = 0x12,
    /// Host: deliver a signal. Payload: `i32` signal number.
    Signal = 0x13,
    /// Either side: file content. Data payload.
    FileData = 0x14,
    /// Either side: end of file content. No payload.
    FileEnd = 0x15,
    /// Agent: version answer. Payload: [`Version`].
    Version = 0x80,
    /// Agent: the command started. Payload: `u32` pid.
    Started = 0x81,
    /// Agent: command output on stdout (or the terminal). Data payload.
    Stdout = 0x82,
    /// Agent: command output on stderr. Data payload.
    Stderr = 0x83,
    /// Agent: the command ended. Payload: [`Exited`].
    Exited = 0x84,
    /// Agent: the request succeeded. No payload.
    Ok = 0x85,
    /// Agent: a read-file answer's size. Payload: `u64`.
    FileInfo = 0x86,
    /// Agent: the request failed. Payload: [`ErrorReply`].
    Error = 0xff,
}

impl Kind {
    /// The kind for a byte, if the protocol has one.
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0x01 => Self::VersionRequest,
            0x02 => Self::Exec,
            0x03 => Self::WriteFile,
            0x04 => Self::ReadFile,
            0x05 => Self::PowerOff,
            0x06 => Self::Setup,
            0x10 => Self::StdinData,
            0x11 => Self::StdinClose,
            0x12 => Self::Resize,
            0x13 => Self::Signal,
            0x14 => Self::FileData,
            0x15 => Self::FileEnd,
            0x80 => Self::Version,
            0x81 => Self::Started,
            0x82 => Self::Stdout,
            0x83 => Self::Stderr,
            0x84 => Self::Exited,
            0x85 => Self::Ok,
            0x86 => Self::FileInfo,
            0xff => Self::Error,
            _ => return None,
        })
    }

    /// Whether the kind carries raw data (and so has the larger payload limit).
    pub fn is_data(self) -> bool {
        matches!(
            self,
            Self::StdinData | Self::Stdout | Self::Stderr | Self::FileData
        )
    }

    /// The most payload bytes a frame of this kind may have.
    pub fn max_payload(self) -> usize {
        if self.is_data() {
            MAX_DATA_PAYLOAD
        } else {
            MAX_CONTROL_PAYLOAD
        }
    }
}

/// One frame, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// See [`Kind::VersionRequest`].
    VersionRequest {
        /// The host's protocol version.
        protocol: u32,
    },
    /// See [`Kind::Exec`].
    Exec(ExecRequest),
    /// See [`Kind::WriteFile`].
    WriteFile(WriteFileRequest),
    /// See [`Kind::ReadFile`].
    ReadFile {
        /// Absolute path of the file.
        path: String,
    },
    /// See [`Kind::PowerOff`].
    PowerOff,
    /// See [`Kind::Setup`].
    Setup(SetupRequest),
    /// See [`Kind::StdinData`].
    StdinData(Vec<u8>),
    /// See [`Kind::StdinClose`].
    StdinClose,
    /// See [`Kind::Resize`].
    Resize(WindowSize),
    /// See [`Kind::Signal`].
    Signal(i32),
    /// See [`Kind::FileData`].
    FileData(Vec<u8>),
    /// See [`Kind::FileEnd`].
    FileEnd,
    /// See [`Kind::Version`].
    Version(Version),
    /// See [`Kind::Started`].
    Started {
        /// The command's process id in the guest.
        pid: u32,
    },
    /// See [`Kind::Stdout`].
    Stdout(Vec<u8>),
    /// See [`Kind::Stderr`].
    Stderr(Vec<u8>),
    /// See [`Kind::Exited`].
    Exited(Exited),
    /// See [`Kind::Ok`].
    Ok,
    /// See [`Kind::FileInfo`].
    FileInfo {
        /// The file's size in bytes.
        size: u64,
    },
    /// See [`Kind::Error`].
    Error(ErrorReply),
}

/// Reading a frame from a stream failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The stream failed.
    #[error("reading a frame")]
    Io(#[source] io::Error),
    /// The stream ended inside a frame.
    #[error("the stream ended inside a frame")]
    Truncated,
    /// The bytes are not a valid frame.
    #[error("invalid frame")]
    Invalid(#[from] FrameError),
}

/// Writing a frame to a stream failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The stream failed.
    #[error("writing a frame")]
    Io(#[source] io::Error),
    /// The frame breaks a limit, so it was not sent.
    #[error("invalid frame")]
    Invalid(#[from] FrameError),
}

impl Frame {
    /// The frame's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Self::VersionRequest { .. } => Kind::VersionRequest,
            Self::Exec(_) => Kind::Exec,
            Self::WriteFile(_) => Kind::WriteFile,
            Self::ReadFile { .. } => Kind::ReadFile,
            Self::PowerOff => Kind::PowerOff,
            Self::Setup(_) => Kind::Setup,
            Self::StdinData(_) => Kind::StdinData,
            Self::StdinClose => Kind::StdinClose,
            Self::Resize(_) => Kind::Resize,
            Self::Signal(_) => Kind::Signal,
            Self::FileData(_) => Kind::FileData,
            Self::FileEnd => Kind::FileEnd,
            Self::Version(_) => Kind::Version,
            Self::Started { .. } => Kind::Started,
            Self::Stdout(_) => Kind::Stdout,
            Self::Stderr(_) => Kind::Stderr,
            Self::Exited(_) => Kind::Exited,
            Self::Ok => Kind::Ok,
            Self::FileInfo { .. } => Kind::FileInfo,
            Self::Error(_) => Kind::Error,
        }
    }

    /// Encodes the whole frame (header and payload) after checking every limit.
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        let mut buf = vec![0u8; HEADER_LEN];
        let mut w = Writer::new(&mut buf);
        match self {
            Self::VersionRequest { protocol } => w.u32(*protocol),
            Self::Exec(req) => req.encode(&mut w)?,
            Self::WriteFile(req) => req.encode(&mut w)?,
            Self::Setup(req) => req.encode(&mut w)?,
            Self::ReadFile { path } => {
                crate::codec::check_str("read_file.path", path, MAX_PATH_LEN)?;
                w.str(path);
            }
            Self::StdinData(d) | Self::FileData(d) | Self::Stdout(d) | Self::Stderr(d) => {
                check_len("data", d.len(), MAX_DATA_PAYLOAD)?;
                w.bytes(d);
            }
            Self::Resize(ws) => ws.encode(&mut w),
            Self::Signal(sig) => {
                check_signal("signal", *sig)?;
                w.i32(*sig);
            }
            Self::Version(v) => v.encode(&mut w)?,
            Self::Started { pid } => w.u32(*pid),
            Self::Exited(e) => e.encode(&mut w)?,
            Self::FileInfo { size } => {
                check_size("file_info.size", *size)?;
                w.u64(*size);
            }
            Self::Error(e) => e.encode(&mut w)?,
            Self::PowerOff | Self::StdinClose | Self::FileEnd | Self::Ok => {}
        }
        let kind = self.kind();
        let len = buf.len() - HEADER_LEN;
        if len > kind.max_payload() {
            return Err(FrameError::PayloadTooLarge {
                kind,
                len,
                max: kind.max_payload(),
            });
        }
        // len + 1 <= MAX_DATA_PAYLOAD + 1, far below u32::MAX.
        buf[..4].copy_from_slice(&((len + 1) as u32).to_le_bytes());
        buf[4] = kind as u8;
        Ok(buf)
    }

    /// Decodes a payload of the kind byte `kind`.
    pub fn decode(kind: u8, payload: &[u8]) -> Result<Self, FrameError> {
        let kind = Kind::from_u8(kind).ok_or(FrameError::UnknownKind(kind))?;
        check_payload_len(kind, payload.len())?;
        let mut r = Reader::new(kind, payload);
        let frame = match kind {
            Kind::VersionRequest => Self::VersionRequest {
                protocol: r.u32("version_request.protocol")?,
            },
            Kind::Exec => Self::Exec(ExecRequest::decode(&mut r)?),
            Kind::WriteFile => Self::WriteFile(WriteFileRequest::decode(&mut r)?),
            Kind::ReadFile => Self::ReadFile {
                path: r.str("read_file.path", MAX_PATH_LEN)?,
            },
            Kind::PowerOff => Self::PowerOff,
            Kind::Setup => Self::Setup(SetupRequest::decode(&mut r)?),
            Kind::StdinData => Self::StdinData(r.rest()),
            Kind::StdinClose => Self::StdinClose,
            Kind::Resize => Self::Resize(WindowSize::decode(&mut r)?),
            Kind::Signal => {
                let sig = r.i32("signal")?;
                check_signal("signal", sig)?;
                Self::Signal(sig)
            }
            Kind::FileData => Self::FileData(r.rest()),
            Kind::FileEnd => Self::FileEnd,
            Kind::Version => Self::Version(Version::decode(&mut r)?),
            Kind::Started => Self::Started {
                pid: r.u32("started.pid")?,
            },
            Kind::Stdout => Self::Stdout(r.rest()),
            Kind::Stderr => Self::Stderr(r.rest()),
            Kind::Exited => Self::Exited(Exited::decode(&mut r)?),
            Kind::Ok => Self::Ok,
            Kind::FileInfo => {
                let size = r.u64("file_info.size")?;
                check_size("file_info.size", size)?;
                Self::FileInfo { size }
            }
            Kind::Error => Self::Error(ErrorReply::decode(&mut r)?),
        };
        r.finish()?;
        Ok(frame)
    }

    /// Reads one frame. `Ok(None)` when the stream ends cleanly before a header;
    /// [`ReadError::Truncated`] when it ends inside one. The payload is allocated only
    /// after its length passed the kind's limit.
    pub fn read_from<R: Read + ?Sized>(r: &mut R) -> Result<Option<Self>, ReadError> {
        let mut header = [0u8; HEADER_LEN];
        if !read_exact_or_eof(r, &mut header)? {
            return Ok(None);
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if len == 0 {
            return Err(FrameError::EmptyFrame.into());
        }
        let kind_byte = header[4];
        let kind = Kind::from_u8(kind_byte).ok_or(FrameError::UnknownKind(kind_byte))?;
        let payload_len = len - 1;
        check_payload_len(kind, payload_len)?;
        let mut payload = vec![0u8; payload_len];
        match r.read_exact(&mut payload) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(ReadError::Truncated),
            Err(e) => return Err(ReadError::Io(e)),
        }
        Ok(Some(Self::decode(kind_byte, &payload)?))
    }

    /// Encodes the frame and writes it with one `write_all`.
    pub fn write_to<W: Write + ?Sized>(&self, w: &mut W) -> Result<(), WriteError> {
        let buf = self.encode()?;
        w.write_all(&buf).map_err(WriteError::Io)
    }
}

/// Writes a data frame of `kind` around `data` without copying it into a frame
/// buffer: header, then the bytes. `data` must fit [`MAX_DATA_PAYLOAD`].
pub fn write_data<W: Write + ?Sized>(w: &mut W, kind: Kind, data: &[u8]) -> Result<(), WriteError> {
    if !kind.is_data() {
        return Err(FrameError::InvalidValue {
            field: "data kind",
            value: i64::from(kind as u8),
        }
        .into());
    }
    check_payload_len(kind, data.len())?;
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(&((data.len() + 1) as u32).to_le_bytes());
    header[4] = kind as u8;
    w.write_all(&header).map_err(WriteError::Io)?;
    w.write_all(data).map_err(WriteError::Io)
}

fn check_payload_len(kind: Kind, len: usize) -> Result<(), FrameError> {
    if len > kind.max_payload() {
        return Err(FrameError::PayloadTooLarge {
            kind,
            len,
            max: kind.max_payload(),
        });
    }
    Ok(())
}

/// Fills `buf`; `Ok(false)` if the stream ended before the first byte.
fn read_exact_or_eof<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> Result<bool, ReadError> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(ReadError::Truncated),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
    Ok(true)
}
