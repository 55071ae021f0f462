//! What several fuzz targets share.

use std::path::{Path, PathBuf};

/// A 32 KiB disk image in /dev/shm (or /tmp), created on first use, named after
/// `target` and this process.
#[allow(dead_code)] // not every target that includes this module uses it
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

/// A ready 16-entry split queue: descriptors at `base`, available ring at +4 KiB,
/// used ring at +8 KiB.
#[allow(dead_code)] // not every target that includes this module uses it
pub fn queue(base: u32) -> virtio_queue::Queue {
    use virtio_queue::QueueT;
    let mut q = virtio_queue::Queue::new(16).unwrap();
    q.set_size(16);
    q.set_desc_table_address(Some(base), Some(0));
    q.set_avail_ring_address(Some(base + 0x1000), Some(0));
    q.set_used_ring_address(Some(base + 0x2000), Some(0));
    q.set_ready(true);
    q
}
