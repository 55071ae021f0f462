//! The I/O side of a virtio-blk device: the disk and, once the driver has activated the
//! device, its request queue. It runs where the device's queue is served: on the
//! device's own thread ([`super::worker`]) in a VM, inline in tests and fuzzing.

use super::disk::Disk;
use super::request::{execute, parse, status_address, MAX_DESCRIPTORS};
use crate::virtio::VirtioInterrupt;
use virtio_bindings::virtio_blk::VIRTIO_BLK_S_IOERR;
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
            let len = handle(&mut self.disk, mem, &descs);
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
fn handle(disk: &mut Disk, mem: &GuestMemoryMmap, descs: &[Descriptor]) -> u32 {
    match parse(mem, descs, disk.sectors()) {
        Ok(req) => {
            let (status, written) = execute(disk, mem, &req);
            if mem.write_obj(status, req.status).is_err() {
                return 0;
            }
            written.saturating_add(1)
        }
        Err(e) => {
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
