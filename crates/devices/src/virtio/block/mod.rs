//! virtio-blk: one request queue over a raw disk image. Features: VERSION_1, SEG_MAX,
//! BLK_SIZE, FLUSH, and RO for read-only disks. Requests IN, OUT, FLUSH and GET_ID;
//! anything else is answered VIRTIO_BLK_S_UNSUPP.

pub mod disk;
pub mod request;

use super::{
    read_config_bytes, ActivateError, Activation, VirtioDevice, VirtioInterrupt, VIRTIO_F_VERSION_1,
};
use disk::{Disk, SECTOR_SIZE};
use request::{execute, parse, status_address, MAX_DESCRIPTORS, SEG_MAX};
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX,
    VIRTIO_BLK_S_IOERR,
};
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestMemoryMmap};

/// Size of the request queue.
pub const QUEUE_SIZE: u16 = 256;
const QUEUE_SIZES: [u16; 1] = [QUEUE_SIZE];

struct Active {
    memory: GuestMemoryMmap,
    queue: Queue,
    interrupt: VirtioInterrupt,
}

/// A virtio-blk device.
pub struct Block {
    disk: Disk,
    config: Vec<u8>,
    active: Option<Active>,
}

impl Block {
    /// A block device serving `disk`.
    pub fn new(disk: Disk) -> Self {
        // virtio_blk_config: capacity, size_max, seg_max, geometry, blk_size.
        let mut config = Vec::with_capacity(24);
        config.extend_from_slice(&disk.sectors().to_le_bytes());
        config.extend_from_slice(&0u32.to_le_bytes());
        config.extend_from_slice(&SEG_MAX.to_le_bytes());
        config.extend_from_slice(&[0u8; 4]);
        config.extend_from_slice(&(SECTOR_SIZE as u32).to_le_bytes());
        Self {
            disk,
            config,
            active: None,
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
                // Answer IOERR where the chain has a usable status byte; else return
                // the chain untouched (used length 0) so the ring keeps moving.
                match status_address(mem, descs) {
                    Some(addr) if mem.write_obj(VIRTIO_BLK_S_IOERR as u8, addr).is_ok() => 1,
                    _ => 0,
                }
            }
        }
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn features(&self) -> u64 {
        let mut f = VIRTIO_F_VERSION_1
            | (1 << VIRTIO_BLK_F_SEG_MAX)
            | (1 << VIRTIO_BLK_F_BLK_SIZE)
            | (1 << VIRTIO_BLK_F_FLUSH);
        if self.disk.read_only() {
            f |= 1 << VIRTIO_BLK_F_RO;
        }
        f
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn write_config(&mut self, offset: u64, _data: &[u8]) {
        log::debug!("virtio-blk: ignored config write at {offset}");
    }

    fn activate(&mut self, a: Activation) -> Result<(), ActivateError> {
        let queue = a
            .queues
            .into_iter()
            .next()
            .ok_or(ActivateError::QueueNotReady(0))?;
        self.active = Some(Active {
            memory: a.memory,
            queue,
            interrupt: a.interrupt,
        });
        Ok(())
    }

    fn process_queue(&mut self, index: usize) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        if index != 0 {
            crate::guest_warn!("virtio-blk: notification for queue {index} ignored");
            return;
        }
        let mem = &active.memory;
        let mut used = false;
        while let Some(chain) = active.queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            // The chain iterator stops after a queue's worth of descriptors (loops end
            // there); one more than the maximum is enough to reject long chains.
            let descs: Vec<Descriptor> = chain.take(MAX_DESCRIPTORS + 1).collect();
            let len = Self::handle(&mut self.disk, mem, &descs);
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

    fn reset(&mut self) {
        self.active = None;
    }
}

#[cfg(test)]
mod tests;
