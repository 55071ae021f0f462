//! The error answer: a numeric code the host can act on and a message for people.

use crate::codec::{check_str, FrameError, Reader, Writer};
use crate::limits::MAX_MESSAGE_LEN;
use std::fmt;

/// What went wrong, as a number the host can act on. Codes this build does not know
/// decode as [`ErrorCode::Other`], so newer agents stay readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// A frame the agent could not decode (code 1).
    BadFrame,
    /// A frame kind the agent does not know (code 2): a newer host's request.
    UnknownKind,
    /// A known frame where the connection's state allows none (code 3).
    UnexpectedFrame,
    /// A well-formed request the agent cannot serve as asked (code 4): a relative
    /// path, stdin data without streamed stdin...
    InvalidRequest,
    /// A command, file or directory that does not exist (code 5).
    NotFound,
    /// The operation was not permitted (code 6).
    PermissionDenied,
    /// The command could not be started (code 7) for another reason.
    SpawnFailed,
    /// A file operation failed (code 8).
    Io,
    /// A file is larger than the protocol's limit (code 9).
    FileTooLarge,
    /// The agent serves too many connections (code 10).
    Busy,
    /// The agent failed internally (code 11).
    Internal,
    /// A code this build does not know.
    Other(u32),
}

impl ErrorCode {
    /// The code on the wire.
    pub fn to_u32(self) -> u32 {
        match self {
            Self::BadFrame => 1,
            Self::UnknownKind => 2,
            Self::UnexpectedFrame => 3,
            Self::InvalidRequest => 4,
            Self::NotFound => 5,
            Self::PermissionDenied => 6,
            Self::SpawnFailed => 7,
            Self::Io => 8,
            Self::FileTooLarge => 9,
            Self::Busy => 10,
            Self::Internal => 11,
            Self::Other(c) => c,
        }
    }

    /// The code for a wire number.
    pub fn from_u32(code: u32) -> Self {
        match code {
            1 => Self::BadFrame,
            2 => Self::UnknownKind,
            3 => Self::UnexpectedFrame,
            4 => Self::InvalidRequest,
            5 => Self::NotFound,
            6 => Self::PermissionDenied,
            7 => Self::SpawnFailed,
            8 => Self::Io,
            9 => Self::FileTooLarge,
            10 => Self::Busy,
            11 => Self::Internal,
            c => Self::Other(c),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Other(c) => write!(f, "code {c}"),
            known => write!(f, "{known:?} ({})", known.to_u32()),
        }
    }
}

/// An error answer: a code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    /// What went wrong.
    pub code: ErrorCode,
    /// Details, at most [`MAX_MESSAGE_LEN`] bytes.
    pub message: String,
}

impl ErrorReply {
    /// An error answer; a message over the limit is cut at a character boundary.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let mut message: String = message.into().replace('\0', " ");
        if message.len() > MAX_MESSAGE_LEN {
            let mut end = MAX_MESSAGE_LEN;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        Self { code, message }
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> Result<(), FrameError> {
        check_str("error.message", &self.message, MAX_MESSAGE_LEN)?;
        w.u32(self.code.to_u32());
        w.str(&self.message);
        Ok(())
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, FrameError> {
        Ok(Self {
            code: ErrorCode::from_u32(r.u32("error.code")?),
            message: r.str("error.message", MAX_MESSAGE_LEN)?,
        })
    }
}
