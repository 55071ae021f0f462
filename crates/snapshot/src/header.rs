//! The fixed 64-byte header (little endian):
//!
//! | bytes  | field                                             |
//! |--------|---------------------------------------------------|
//! | 0..8   | magic `MVMSNAP\0`                                 |
//! | 8..12  | container format version                          |
//! | 12..16 | reserved, zero                                    |
//! | 16..32 | minivmm version, UTF-8, NUL-padded                |
//! | 32..48 | architecture, UTF-8, NUL-padded                   |
//! | 48..56 | body length in bytes                              |
//! | 56..60 | CRC-32 of the body                                |
//! | 60..64 | CRC-32 of bytes 0..60 (a flipped bit in a version  |
//! |        | field reads as corruption, not as another version) |

use super::{Origin, SnapshotError};

/// First bytes of every snapshot state file.
pub const MAGIC: [u8; 8] = *b"MVMSNAP\0";
/// The container format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Header size in bytes.
pub const HEADER_LEN: usize = 64;
const TEXT_LEN: usize = 16;

/// A decoded header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Container format version.
    pub format: u32,
    /// Who wrote it.
    pub origin: Origin,
    /// Body length.
    pub body_len: u64,
    /// CRC-32 of the body.
    pub body_crc: u32,
}

fn text_field(text: &str) -> Result<[u8; TEXT_LEN], SnapshotError> {
    let mut field = [0u8; TEXT_LEN];
    let bytes = text.as_bytes();
    if bytes.len() > TEXT_LEN || bytes.contains(&0) {
        return Err(SnapshotError::Header(
            "a version or architecture name is too long",
        ));
    }
    field[..bytes.len()].copy_from_slice(bytes);
    Ok(field)
}

fn parse_text(field: &[u8]) -> Result<String, SnapshotError> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    if field[end..].iter().any(|&b| b != 0) {
        return Err(SnapshotError::Header("text field not NUL-padded"));
    }
    String::from_utf8(field[..end].to_vec())
        .map_err(|_| SnapshotError::Header("text field is not UTF-8"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(v)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

impl Header {
    /// The header for `body`, written by `origin`.
    pub fn for_body(origin: &Origin, body: &[u8]) -> Result<Self, SnapshotError> {
        // Checked here so that encode never writes a header decode refuses.
        text_field(&origin.version)?;
        text_field(&origin.arch)?;
        Ok(Self {
            format: FORMAT_VERSION,
            origin: origin.clone(),
            body_len: body.len() as u64,
            body_crc: crc32fast::hash(body),
        })
    }

    /// The 64 header bytes. Text fields were checked by [`Header::for_body`]; one
    /// built by hand with longer text is cut to fit.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&self.format.to_le_bytes());
        for (at, text) in [(16, &self.origin.version), (32, &self.origin.arch)] {
            let bytes = text.as_bytes();
            let n = bytes.len().min(TEXT_LEN);
            b[at..at + n].copy_from_slice(&bytes[..n]);
        }
        b[48..56].copy_from_slice(&self.body_len.to_le_bytes());
        b[56..60].copy_from_slice(&self.body_crc.to_le_bytes());
        let crc = crc32fast::hash(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses the header at the start of `bytes` (magic, its own checksum, fields).
    pub fn decode(bytes: &[u8]) -> Result<Self, SnapshotError> {
        if bytes.len() < HEADER_LEN {
            if bytes.len() >= MAGIC.len() && bytes[..MAGIC.len()] != MAGIC {
                return Err(SnapshotError::BadMagic);
            }
            return Err(SnapshotError::Truncated(
                bytes.len() as u64,
                HEADER_LEN as u64,
            ));
        }
        let b = &bytes[..HEADER_LEN];
        if b[..8] != MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let (stored, found) = (u32_at(b, 60), crc32fast::hash(&b[..60]));
        if stored != found {
            return Err(SnapshotError::Checksum {
                expected: stored,
                found,
            });
        }
        if u32_at(b, 12) != 0 {
            return Err(SnapshotError::Header("reserved bytes are not zero"));
        }
        Ok(Self {
            format: u32_at(b, 8),
            origin: Origin {
                version: parse_text(&b[16..32])?,
                arch: parse_text(&b[32..48])?,
            },
            body_len: u64_at(b, 48),
            body_crc: u32_at(b, 56),
        })
    }

    /// Checks the header against the reader (`origin`) and the bytes after it;
    /// returns the body.
    pub fn check<'a>(&self, origin: &Origin, rest: &'a [u8]) -> Result<&'a [u8], SnapshotError> {
        if self.format != FORMAT_VERSION {
            return Err(SnapshotError::FormatVersion {
                found: self.format,
                supported: FORMAT_VERSION,
            });
        }
        if self.origin.version != origin.version {
            return Err(SnapshotError::MinivmmVersion {
                found: self.origin.version.clone(),
                expected: origin.version.clone(),
            });
        }
        if self.origin.arch != origin.arch {
            return Err(SnapshotError::Arch {
                found: self.origin.arch.clone(),
                expected: origin.arch.clone(),
            });
        }
        let have = rest.len() as u64;
        if have < self.body_len {
            return Err(SnapshotError::Truncated(
                have + HEADER_LEN as u64,
                self.body_len.saturating_add(HEADER_LEN as u64),
            ));
        }
        if have > self.body_len {
            return Err(SnapshotError::TrailingBytes(have - self.body_len));
        }
        let body = &rest[..have as usize];
        let found = crc32fast::hash(body);
        if found != self.body_crc {
            return Err(SnapshotError::Checksum {
                expected: self.body_crc,
                found,
            });
        }
        Ok(body)
    }
}
