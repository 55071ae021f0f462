//! The host side of a virtio-blk disk: a raw image file, opened read-only or
//! read-write and locked against a second user, with its size in sectors.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Bytes per virtio-blk sector.
pub const SECTOR_SIZE: u64 = 512;
/// Bytes of a virtio-blk device ID (GET_ID).
pub const ID_BYTES: usize = 20;

/// Errors opening a disk image.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The file could not be opened.
    #[error("cannot open disk image {p}", p = .0.display())]
    Open(PathBuf, #[source] std::io::Error),
    /// Another process (another VM) holds the image.
    #[error("disk image {p} is in use by another process (locked)", p = .0.display())]
    Locked(PathBuf),
    /// The size could not be determined.
    #[error("cannot determine the size of disk image {p}", p = .0.display())]
    Size(PathBuf, #[source] std::io::Error),
    /// The serial is longer than virtio-blk allows.
    #[error("disk serial '{0}' is longer than {ID_BYTES} bytes")]
    SerialTooLong(String),
}

/// An open disk image.
pub struct Disk {
    pub(crate) file: File,
    pub(crate) sectors: u64,
    pub(crate) read_only: bool,
    pub(crate) id: [u8; ID_BYTES],
}

impl Disk {
    /// Opens `path` (read-only when `read_only`), takes an advisory lock (shared for
    /// read-only, exclusive otherwise) and reads its size. `serial` is what GET_ID
    /// returns.
    pub fn open(path: &Path, read_only: bool, serial: Option<&str>) -> Result<Self, DiskError> {
        let mut id = [0u8; ID_BYTES];
        if let Some(s) = serial {
            if s.len() > ID_BYTES {
                return Err(DiskError::SerialTooLong(s.into()));
            }
            id[..s.len()].copy_from_slice(s.as_bytes());
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(|e| DiskError::Open(path.into(), e))?;
        let op = if read_only {
            libc::LOCK_SH
        } else {
            libc::LOCK_EX
        };
        // SAFETY: flock on a descriptor we own; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) } != 0 {
            return Err(DiskError::Locked(path.into()));
        }
        let bytes = file
            .seek(SeekFrom::End(0))
            .map_err(|e| DiskError::Size(path.into(), e))?;
        if bytes % SECTOR_SIZE != 0 {
            log::warn!(
                "disk {}: size {bytes} is not a multiple of {SECTOR_SIZE}; the tail is not visible",
                path.display()
            );
        }
        Ok(Self {
            file,
            sectors: bytes / SECTOR_SIZE,
            read_only,
            id,
        })
    }

    /// Size in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// True if the guest may not write.
    pub fn read_only(&self) -> bool {
        self.read_only
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::tempfile::TempFile;

    #[test]
    fn size_lock_and_serial() {
        let f = TempFile::new().unwrap();
        f.as_file().set_len(10 * SECTOR_SIZE + 100).unwrap();
        let d = Disk::open(f.as_path(), false, Some("disk-1")).unwrap();
        assert_eq!(d.sectors(), 10);
        assert_eq!(&d.id[..6], b"disk-1");
        assert!(d.id[6..].iter().all(|b| *b == 0));
        // A second writer, or a reader while a writer holds it, is refused.
        assert!(matches!(
            Disk::open(f.as_path(), false, None),
            Err(DiskError::Locked(_))
        ));
        assert!(matches!(
            Disk::open(f.as_path(), true, None),
            Err(DiskError::Locked(_))
        ));
        drop(d);
        // Readers share.
        let r1 = Disk::open(f.as_path(), true, None).unwrap();
        let r2 = Disk::open(f.as_path(), true, None).unwrap();
        assert!(r1.read_only() && r2.read_only());
        assert!(matches!(
            Disk::open(f.as_path(), false, None),
            Err(DiskError::Locked(_))
        ));
    }

    #[test]
    fn bad_paths_and_serials() {
        assert!(matches!(
            Disk::open(Path::new("/nonexistent/disk"), true, None),
            Err(DiskError::Open(..))
        ));
        let f = TempFile::new().unwrap();
        let long = "x".repeat(21);
        assert!(matches!(
            Disk::open(f.as_path(), true, Some(&long)),
            Err(DiskError::SerialTooLong(_))
        ));
    }
}
