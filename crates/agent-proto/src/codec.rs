//! The payload encoding: little-endian integers, length-prefixed strings and byte
//! strings, one-byte booleans and option tags. [`Reader`] checks every length against
//! the bytes left and the field's limit before it copies anything; [`FrameError`]
//! names what was wrong.

use crate::frame::Kind;

/// A frame or payload that breaks the protocol: a length past a limit, a truncated or
/// over-long payload, a value out of range. Decoding returns it for untrusted input;
/// encoding returns it for a request that could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The header's length was 0, so the frame has no kind byte.
    #[error("frame length 0 leaves no room for the kind byte")]
    EmptyFrame,
    /// The kind byte names no kind of this protocol version.
    #[error("unknown frame kind {0:#04x}")]
    UnknownKind(u8),
    /// The payload is longer than its kind allows.
    #[error("{kind:?} payload of {len} bytes exceeds the limit of {max}")]
    PayloadTooLarge {
        /// The frame's kind.
        kind: Kind,
        /// The announced payload length.
        len: usize,
        /// The kind's limit.
        max: usize,
    },
    /// The payload ended in the middle of a field.
    #[error("{kind:?} payload ends inside field {field}")]
    Truncated {
        /// The frame's kind.
        kind: Kind,
        /// The field being read.
        field: &'static str,
    },
    /// Bytes were left after the last field.
    #[error("{kind:?} payload has {extra} bytes after its last field")]
    TrailingBytes {
        /// The frame's kind.
        kind: Kind,
        /// How many bytes were left.
        extra: usize,
    },
    /// A string or list is longer than its field allows.
    #[error("field {field} has length {len}, over the limit of {max}")]
    FieldTooLong {
        /// The field.
        field: &'static str,
        /// The announced or given length.
        len: u64,
        /// The field's limit.
        max: u64,
    },
    /// A string is not UTF-8.
    #[error("field {field} is not UTF-8")]
    NotUtf8 {
        /// The field.
        field: &'static str,
    },
    /// A string holds a NUL byte (it becomes a C string in the guest).
    #[error("field {field} contains a NUL byte")]
    NulByte {
        /// The field.
        field: &'static str,
    },
    /// A field holds a value outside its range (a boolean other than 0 or 1, an exit
    /// code over 255, a signal over 64, an empty argv...).
    #[error("field {field} has an invalid value {value}")]
    InvalidValue {
        /// The field.
        field: &'static str,
        /// The value, as a number where it is one.
        value: i64,
    },
}

/// Appends payload fields to a buffer.
pub(crate) struct Writer<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(buf: &'a mut Vec<u8>) -> Self {
        Self { buf }
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub(crate) fn bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A string: `u32` length, then the bytes. The caller has checked the limits.
    pub(crate) fn str(&mut self, s: &str) {
        // Limits (checked by the caller) keep every string far below u32::MAX.
        self.u32(s.len() as u32);
        self.buf.extend_from_slice(s.as_bytes());
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
}

/// Reads payload fields from a slice, never past its end and never allocating more
/// than a field's limit.
pub(crate) struct Reader<'a> {
    kind: Kind,
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(kind: Kind, data: &'a [u8]) -> Self {
        Self { kind, data }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], FrameError> {
        if self.data.len() < n {
            return Err(FrameError::Truncated {
                kind: self.kind,
                field,
            });
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], FrameError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, field)?);
        Ok(a)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, FrameError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn bool(&mut self, field: &'static str) -> Result<bool, FrameError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(FrameError::InvalidValue {
                field,
                value: i64::from(v),
            }),
        }
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, FrameError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, FrameError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn i32(&mut self, field: &'static str) -> Result<i32, FrameError> {
        Ok(i32::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, FrameError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// A count of list elements, checked against `max` before any list is allocated.
    pub(crate) fn count(&mut self, field: &'static str, max: usize) -> Result<usize, FrameError> {
        let n = self.u32(field)?;
        check_len(field, n as usize, max)?;
        Ok(n as usize)
    }

    /// A string of at most `max` bytes, UTF-8 and without NUL.
    pub(crate) fn str(&mut self, field: &'static str, max: usize) -> Result<String, FrameError> {
        let n = self.u32(field)? as usize;
        check_len(field, n, max)?;
        let bytes = self.take(n, field)?;
        let s = std::str::from_utf8(bytes).map_err(|_| FrameError::NotUtf8 { field })?;
        check_str(field, s, max)?;
        Ok(s.to_owned())
    }

    /// The rest of the payload as raw bytes.
    pub(crate) fn rest(&mut self) -> Vec<u8> {
        let v = self.data.to_vec();
        self.data = &[];
        v
    }

    /// Fails if bytes are left.
    pub(crate) fn finish(self) -> Result<(), FrameError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(FrameError::TrailingBytes {
                kind: self.kind,
                extra: self.data.len(),
            })
        }
    }
}

/// Checks a length against a field's limit.
pub(crate) fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), FrameError> {
    if len > max {
        return Err(FrameError::FieldTooLong {
            field,
            len: len as u64,
            max: max as u64,
        });
    }
    Ok(())
}

/// Checks a string field: at most `max` bytes and no NUL.
pub(crate) fn check_str(field: &'static str, s: &str, max: usize) -> Result<(), FrameError> {
    check_len(field, s.len(), max)?;
    if s.as_bytes().contains(&0) {
        return Err(FrameError::NulByte { field });
    }
    Ok(())
}

/// Fails with [`FrameError::InvalidValue`] unless `ok`.
pub(crate) fn check_value(field: &'static str, ok: bool, value: i64) -> Result<(), FrameError> {
    if ok {
        Ok(())
    } else {
        Err(FrameError::InvalidValue { field, value })
    }
}
