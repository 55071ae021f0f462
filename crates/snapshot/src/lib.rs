//! The container of a minivmm snapshot's state file: a fixed header (magic, format
//! version, the minivmm version and architecture that wrote it, the body's length and
//! CRC-32) around a JSON body the caller defines.
//!
//! Everything is checked before the body is parsed: a file from another format or
//! minivmm version, another architecture, cut short, grown, or with a flipped bit is
//! refused with an error that says which, and nothing of it is used.
//!
//! ```
//! # use snapshot::{encode, decode, Origin};
//! let origin = Origin::new("0.1.0", "x86_64");
//! let bytes = encode(&origin, &vec![1u32, 2, 3]).unwrap();
//! let back: Vec<u32> = decode(&origin, &bytes).unwrap();
//! assert_eq!(back, [1, 2, 3]);
//! assert!(decode::<Vec<u32>>(&Origin::new("0.2.0", "x86_64"), &bytes).is_err());
//! ```

mod header;

pub use header::{Header, FORMAT_VERSION, HEADER_LEN, MAGIC};

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Who writes or may read a snapshot: the minivmm version and the architecture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// minivmm's version (`CARGO_PKG_VERSION`); snapshots are read by the same version only.
    pub version: String,
    /// The architecture (`std::env::consts::ARCH`).
    pub arch: String,
}

impl Origin {
    /// An origin of `version` on `arch`.
    pub fn new(version: &str, arch: &str) -> Self {
        Self {
            version: version.into(),
            arch: arch.into(),
        }
    }
}

/// Why a snapshot cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The file could not be read or written.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// Shorter than its header, or than the body its header announces.
    #[error("the snapshot is truncated: {0} bytes, {1} expected")]
    Truncated(u64, u64),
    /// Longer than the header and body: something was appended or the length lies.
    #[error("the snapshot has {0} bytes after its body")]
    TrailingBytes(u64),
    /// Not a minivmm snapshot.
    #[error("not a minivmm snapshot (bad magic)")]
    BadMagic,
    /// Written in another container format.
    #[error("snapshot format {found} is not supported (this minivmm reads format {supported})")]
    FormatVersion {
        /// The file's format.
        found: u32,
        /// The format this build reads.
        supported: u32,
    },
    /// Written by another minivmm version.
    #[error("the snapshot was written by minivmm {found}; this is minivmm {expected}")]
    MinivmmVersion {
        /// The writer's version.
        found: String,
        /// This build's version.
        expected: String,
    },
    /// Written on another architecture.
    #[error("the snapshot is for {found}; this host is {expected}")]
    Arch {
        /// The writer's architecture.
        found: String,
        /// This host's.
        expected: String,
    },
    /// The body's checksum does not match: the file is corrupt.
    #[error("the snapshot is corrupt (checksum {found:#010x}, header says {expected:#010x})")]
    Checksum {
        /// What the header records.
        expected: u32,
        /// What the body hashes to.
        found: u32,
    },
    /// A header field is malformed (a version string that is not text, a length too long).
    #[error("the snapshot header is malformed: {0}")]
    Header(&'static str),
    /// The body does not parse as the state this minivmm expects.
    #[error("the snapshot's state does not parse: {0}")]
    Body(serde_json::Error),
}

/// The file's bytes: header, then `body` as JSON.
pub fn encode<T: Serialize>(origin: &Origin, body: &T) -> Result<Vec<u8>, SnapshotError> {
    let json = serde_json::to_vec(body).map_err(SnapshotError::Body)?;
    let header = Header::for_body(origin, &json)?;
    let mut out = Vec::with_capacity(HEADER_LEN + json.len());
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(&json);
    Ok(out)
}

/// Checks `bytes` (header, length, checksum, origin) and parses the body.
pub fn decode<T: DeserializeOwned>(origin: &Origin, bytes: &[u8]) -> Result<T, SnapshotError> {
    let header = Header::decode(bytes)?;
    let body = header.check(origin, &bytes[HEADER_LEN..])?;
    serde_json::from_slice(body).map_err(SnapshotError::Body)
}

/// Writes `body` to `path` (through a temporary file beside it, renamed into place
/// once synced, so a reader never sees half a snapshot).
pub fn write_file<T: Serialize>(
    path: &Path,
    origin: &Origin,
    body: &T,
) -> Result<(), SnapshotError> {
    let bytes = encode(origin, body)?;
    let io = |what: &str, e| SnapshotError::Io(format!("{what} {}", path.display()), e);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    // The state holds guest secrets too (register contents): owner only.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io("creating", e))?;
    f.write_all(&bytes).map_err(|e| io("writing", e))?;
    f.sync_all().map_err(|e| io("syncing", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("renaming into", e))
}

/// Largest state file read (a vCPU's state is some 20 KiB).
pub const MAX_FILE_LEN: u64 = 64 << 20;

/// Reads and checks `path` (a regular file of at most [`MAX_FILE_LEN`] bytes), and
/// parses its body.
pub fn read_file<T: DeserializeOwned>(path: &Path, origin: &Origin) -> Result<T, SnapshotError> {
    use std::io::Read;
    let io = |e| SnapshotError::Io(format!("reading {}", path.display()), e);
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(SnapshotError::Header(
            "the state file is not a regular file",
        ));
    }
    if meta.len() > MAX_FILE_LEN {
        return Err(SnapshotError::Header(
            "the state file is larger than 64 MiB",
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    decode(origin, &bytes)
}

#[cfg(test)]
mod tests;
