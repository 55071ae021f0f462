//! Fuzz target: the virtio-fs device answering arbitrary FUSE requests over a scratch
//! share, and nothing outside the share changing.
//!
//! The input is a sequence of requests, each `[len: u16 LE][bytes]`; the first input
//! byte picks a read-only share when odd. Each request is posted on the request queue
//! as a guest driver would (a readable descriptor with the request, a writable one for
//! the reply) and the device serves it; the header's length field is set to the
//! request's size (else the server rejects nearly everything before decoding it). A
//! fresh device serves every input, so inode and handle numbers start over and a seed
//! can name them. After each input the directory beside the share, and the scratch
//! directory's own entries, must be as they were: a difference is a confinement bug.
#![no_main]

use devices::virtio::{Activation, VirtioDevice, VirtioInterrupt, VIRTIO_F_VERSION_1};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use virtio_queue::{Queue, QueueT};
use virtiofs::{Fs, Limits};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const MEM_SIZE: usize = 0x10_0000;
const QUEUE: u64 = 0x1000;
const REQUEST: u64 = 0x10000;
const REPLY: u64 = 0x40000;
const REPLY_LEN: u32 = 0x40000;
const QSIZE: u16 = 64;
const MAX_REQUESTS: usize = 32;

struct Scratch {
    root: PathBuf,
    /// What the scratch directory and the directory beside the share looked like.
    before: BTreeMap<PathBuf, (u64, u32, i64, Vec<u8>)>,
}

/// Every entry under `dir` except the share: size, mode, mtime, and contents of files.
fn fingerprint(root: &Path) -> BTreeMap<PathBuf, (u64, u32, i64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path == root.join("share") {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let contents = if meta.is_file() {
                std::fs::read(&path).unwrap()
            } else {
                Vec::new()
            };
            if meta.is_dir() {
                stack.push(path.clone());
            }
            out.insert(path, (meta.size(), meta.mode(), meta.mtime(), contents));
        }
    }
    out
}

fn scratch() -> &'static Scratch {
    static SCRATCH: OnceLock<Scratch> = OnceLock::new();
    SCRATCH.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("minivmm-fuzz-fs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("share/sub")).unwrap();
        std::fs::create_dir_all(root.join("outside/dir")).unwrap();
        std::fs::write(root.join("outside/secret"), "host secret").unwrap();
        std::fs::write(root.join("outside/dir/file"), "more").unwrap();
        std::fs::write(root.join("share/hello"), "hello").unwrap();
        std::os::unix::fs::symlink(root.join("outside"), root.join("share/abs")).unwrap();
        std::os::unix::fs::symlink("../outside", root.join("share/rel")).unwrap();
        let before = fingerprint(&root);
        Scratch { root, before }
    })
}

/// Empties the share now and then, so that runs do not fill the disk.
fn tidy(share: &Path) {
    static RUNS: AtomicU32 = AtomicU32::new(0);
    if RUNS.fetch_add(1, Ordering::Relaxed) % 256 != 255 {
        return;
    }
    for entry in std::fs::read_dir(share).unwrap().flatten() {
        let path = entry.path();
        let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
    }
    std::fs::create_dir_all(share.join("sub")).unwrap();
    std::fs::write(share.join("hello"), "hello").unwrap();
}

fn queue() -> Queue {
    let mut q = Queue::new(QSIZE).unwrap();
    q.set_size(QSIZE);
    q.set_desc_table_address(Some(QUEUE as u32), Some(0));
    q.set_avail_ring_address(Some((QUEUE + 0x1000) as u32), Some(0));
    q.set_used_ring_address(Some((QUEUE + 0x2000) as u32), Some(0));
    q.set_ready(true);
    q
}

/// Posts `request` as chain number `n` (descriptors 0 and 1, reused).
fn post(mem: &GuestMemoryMmap, n: u16, request: &[u8]) {
    mem.write_slice(request, GuestAddress(REQUEST)).unwrap();
    let desc = |addr: u64, len: u32, flags: u16, next: u16| {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&addr.to_le_bytes());
        b[8..12].copy_from_slice(&len.to_le_bytes());
        b[12..14].copy_from_slice(&flags.to_le_bytes());
        b[14..].copy_from_slice(&next.to_le_bytes());
        b
    };
    mem.write_slice(&desc(REQUEST, request.len() as u32, 1, 1), GuestAddress(QUEUE))
        .unwrap();
    mem.write_slice(&desc(REPLY, REPLY_LEN, 2, 0), GuestAddress(QUEUE + 16))
        .unwrap();
    let avail = QUEUE + 0x1000;
    mem.write_obj(0u16, GuestAddress(avail + 4 + 2 * u64::from(n % QSIZE)))
        .unwrap();
    mem.write_obj(n.wrapping_add(1), GuestAddress(avail + 2)).unwrap();
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let scratch = scratch();
    let share = scratch.root.join("share");
    let limits = Limits {
        max_inodes: 64,
        max_open: 16,
    };
    let Ok(mut fs) = Fs::new("fuzz", &share, mode & 1 == 1, limits) else {
        return;
    };
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
    fs.activate(Activation {
        memory: mem.clone(),
        queues: vec![queue(), queue()],
        acked_features: VIRTIO_F_VERSION_1,
        interrupt: VirtioInterrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()),
    })
    .unwrap();
    let mut n = 0u16;
    while rest.len() >= 2 && usize::from(n) < MAX_REQUESTS {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let mut request = rest[2..2 + len].to_vec();
        rest = &rest[2 + len..];
        if request.len() >= 4 {
            let size = (request.len() as u32).to_le_bytes();
            request[..4].copy_from_slice(&size);
        }
        post(&mem, n, &request);
        fs.process_queue(1);
        n = n.wrapping_add(1);
    }
    drop(fs);
    let after = fingerprint(&scratch.root);
    assert!(
        after == scratch.before,
        "something outside the share changed: {:?}",
        after
            .keys()
            .filter(|k| after.get(*k) != scratch.before.get(*k))
            .chain(scratch.before.keys().filter(|k| !after.contains_key(*k)))
            .collect::<Vec<_>>()
    );
    tidy(&share);
});
