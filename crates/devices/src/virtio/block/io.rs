//! The I/O side of a virtio-blk device: the disk and, once the driver has activated the
//! device, its request queue. It runs where the device's queue is served: on the
//! device's own thread ([`super::worker`]) in a VM, inline in tests and fuzzing.

use super::disk::Disk;
use super::request::Kind;
use super::request::{execute, parse, status_address, MAX_DESCRIPTORS};
use super::BlockCounters;
use crate::virtio::VirtioInterrupt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use virtio_bindings::virtio_blk::{VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK};
use virtio_queue::desc::split::Descriptor;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestMemoryMmap};

/// What the driver handed over at activation.
pub(crate) struct Active {
    pub(crate) memory: GuestMemoryMmap,
    pub(crate) queue: Queue,
    pub(crate) interrupt: VirtioInterrupt,
}

/// The disk and the active queue, if any.
pub(crate) struct BlockIo {
    pub(crate) disk: Disk,
    pub(crate) active: Option<Active>,
    pub(crate) counters: Arc<BlockCounters>,
}

impl BlockIo {
    /// Serves every request the driver has made available, then interrupts it once if
    /// any was returned.
    pub(crate) fn process(&mut self) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let mem = &active.memory;
        let mut used = false;
        while let Some(chain) = active.queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            // The chain iterator stops after a queue's worth of descriptors (loops end
            // there); one more than the maximum is enough to reject long chains.
            let descs: Vec<Descriptor> = chain.take(MAX_DESCRIPTORS + 1).collect();
            let len = handle(&mut self.disk, mem, &descs, &self.counters);
            if let Err(e) = active.queue.add_used(mem, head, len) {
                crate::guest_warn!("virtio-blk: cannot return descriptor {head}: {e:?}");
                break;
            }
            used = true;
        }
        if used {
            active.interrupt.signal_used_queue();
        }
    }
}

/// Handles one chain; returns the used length.
fn handle(disk: &mut Disk, mem: &GuestMemoryMmap, descs: &[Descriptor], c: &BlockCounters) -> u32 {
    let add = |counter: &AtomicU64, n: u64| counter.fetch_add(n, Ordering::Relaxed);
    match parse(mem, descs, disk.sectors()) {
        Ok(req) => {
            let (status, written) = execute(disk, mem, &req);
            let bytes: u64 = req.data.iter().map(|(_, len)| u64::from(*len)).sum();
            if status != VIRTIO_BLK_S_OK as u8 {
                add(&c.errors, 1);
            } else if req.kind == Kind::In {
                add(&c.reads, 1);
                add(&c.read_bytes, bytes);
            } else if req.kind == Kind::Out {
                add(&c.writes, 1);
                add(&c.write_bytes, bytes);
            } else if req.kind == Kind::Flush {
                add(&c.flushes, 1);
            }
            if mem.write_obj(status, req.status).is_err() {
                return 0;
            }
            written.saturating_add(1)
        }
        Err(e) => {
            add(&c.malformed, 1);
            crate::guest_warn!("virtio-blk: malformed request: {e}");
            // Answer IOERR where the chain has a usable status byte; else return the
            // chain untouched (used length 0) so the ring keeps moving.
            match status_address(mem, descs) {
                Some(addr) if mem.write_obj(VIRTIO_BLK_S_IOERR as u8, addr).is_ok() => 1,
                _ => 0,
            }
        }
    }
}
