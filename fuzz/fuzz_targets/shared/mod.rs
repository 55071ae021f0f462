//! What several fuzz targets share.

use std::path::{Path, PathBuf};

/// A 32 KiB disk image in /dev/shm (or /tmp), created on first use, named after
/// `target` and this process.
pub fn scratch_image(target: &str) -> PathBuf {
    let dir = if Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    };
    let p = PathBuf::from(format!(
        "{dir}/minivmm-fuzz-{target}-{}.img",
        std::process::id()
    ));
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(64 * 512).unwrap();
    p
}
