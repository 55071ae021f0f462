//! Errors setting up a share.

use std::path::PathBuf;

/// Why a share could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The tag is empty, too long for the device's configuration, or has a NUL.
    #[error("share tag '{0}' must be 1 to 36 bytes without NUL")]
    BadTag(String),
    /// The shared path is missing or unreadable.
    #[error("cannot open shared directory {0}: {1}")]
    OpenDir(PathBuf, std::io::Error),
    /// The shared path is not a directory.
    #[error("shared path {0} is not a directory")]
    NotDirectory(PathBuf),
    /// fuse-backend-rs could not set up its passthrough file system.
    #[error("cannot serve {0}: {1}")]
    Passthrough(PathBuf, std::io::Error),
    /// The guest's memory could not be viewed by the file server.
    #[error("cannot map guest memory for the file server")]
    MemoryView,
    /// A queue the driver set up could not be taken over.
    #[error("virtio-fs queue: {0}")]
    Queue(String),
}
