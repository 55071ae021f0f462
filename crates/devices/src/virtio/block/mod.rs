//! virtio-blk: one request queue over a raw disk image. Features: VERSION_1, SEG_MAX,
//! BLK_SIZE, FLUSH, and RO for read-only disks. Requests IN, OUT, FLUSH and GET_ID;
//! anything else is answered VIRTIO_BLK_S_UNSUPP. In a VM the requests are served on
//! the device's own I/O thread ([`VirtioDevice::take_worker`]).

pub mod disk;
mod io;
pub mod request;
mod worker;

use super::{
    read_config_bytes, worker_link, ActivateError, Activation, DeviceWorker, VirtioDevice,
    WorkerLink, VIRTIO_F_VERSION_1,
};
use disk::{Disk, SECTOR_SIZE};
use io::{Active, BlockIo};
use request::SEG_MAX;
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX,
};
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use worker::{BlockWorker, Command, RESET_TIMEOUT};

/// Size of the request queue.
pub const QUEUE_SIZE: u16 = 256;
const QUEUE_SIZES: [u16; 1] = [QUEUE_SIZE];

/// Where the device's requests are served.
enum Engine {
    /// Here, in `process_queue` (until a worker is taken; tests and fuzzing).
    Inline(BlockIo),
    /// On the device's own I/O thread.
    Thread(WorkerLink<Command>),
    /// Nowhere: the I/O thread could not be set up.
    Broken,
}

/// A virtio-blk device.
pub struct Block {
    config: Vec<u8>,
    read_only: bool,
    engine: Engine,
    counters: std::sync::Arc<BlockCounters>,
}

/// Counts of one block device.
#[derive(Debug, Default)]
pub struct BlockCounters {
    /// Read requests served.
    pub reads: std::sync::atomic::AtomicU64,
    /// Bytes read into the guest.
    pub read_bytes: std::sync::atomic::AtomicU64,
    /// Write requests served.
    pub writes: std::sync::atomic::AtomicU64,
    /// Bytes written from the guest.
    pub write_bytes: std::sync::atomic::AtomicU64,
    /// Flush requests served.
    pub flushes: std::sync::atomic::AtomicU64,
    /// Requests answered with an error status (host I/O failure, read-only disk,
    /// unsupported kind).
    pub errors: std::sync::atomic::AtomicU64,
    /// Chains that were no valid request.
    pub malformed: std::sync::atomic::AtomicU64,
}
crate::counter_set!(BlockCounters {
    reads,
    read_bytes,
    writes,
    write_bytes,
    flushes,
    errors,
    malformed
});

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
        let counters = std::sync::Arc::new(BlockCounters::default());
        Self {
            config,
            read_only: disk.read_only(),
            engine: Engine::Inline(BlockIo {
                disk,
                active: None,
                counters: counters.clone(),
            }),
            counters,
        }
    }
}

impl VirtioDevice for Block {
    fn counters(&self) -> Option<std::sync::Arc<dyn crate::counters::CounterSet>> {
        Some(self.counters.clone())
    }

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
        if self.read_only {
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
        let active = Active {
            memory: a.memory,
            queue,
            interrupt: a.interrupt,
        };
        match &mut self.engine {
            Engine::Inline(io) => io.active = Some(active),
            Engine::Thread(link) => {
                if !link.send(Command::Activate(active)) {
                    log::error!("virtio-blk: the I/O thread is gone; requests go unanswered");
                }
            }
            Engine::Broken => log::error!("virtio-blk: no I/O thread; requests go unanswered"),
        }
        Ok(())
    }

    fn process_queue(&mut self, index: usize) {
        if index != 0 {
            crate::guest_warn!("virtio-blk: notification for queue {index} ignored");
            return;
        }
        if let Engine::Inline(io) = &mut self.engine {
            io.process();
        }
    }

    fn reset(&mut self) {
        match &mut self.engine {
            Engine::Inline(io) => io.active = None,
            Engine::Thread(link) => {
                // The driver may reuse the queue's memory once reset returns: wait
                // until the thread has let go of it (after the request in flight).
                let (ack, acked) = std::sync::mpsc::channel();
                if link.send(Command::Reset(ack)) && acked.recv_timeout(RESET_TIMEOUT).is_err() {
                    log::error!(
                        "virtio-blk: the I/O thread did not finish its request within \
                         {RESET_TIMEOUT:?} of a driver reset"
                    );
                }
            }
            Engine::Broken => {}
        }
    }

    fn queue_states(&self) -> Result<Vec<Option<virtio_queue::QueueState>>, String> {
        let state = match &self.engine {
            Engine::Inline(io) => io.active.as_ref().map(|a| a.queue.state()),
            Engine::Thread(link) => {
                let (answer, answered) = std::sync::mpsc::channel();
                if !link.send(Command::Save(answer)) {
                    return Err("its I/O thread is gone".into());
                }
                answered.recv_timeout(RESET_TIMEOUT).map_err(|_| {
                    format!("its I/O thread did not answer within {RESET_TIMEOUT:?}")
                })?
            }
            Engine::Broken => return Err("it has no I/O thread".into()),
        };
        Ok(vec![Some(state.ok_or("not activated")?)])
    }

    fn take_worker(&mut self) -> Option<Box<dyn DeviceWorker>> {
        let (link, inbox) = match worker_link("virtio-blk") {
            Ok(pair) => pair,
            Err(e) => {
                log::error!("virtio-blk: cannot set up the I/O thread: {e}");
                return None;
            }
        };
        let Engine::Inline(io) = std::mem::replace(&mut self.engine, Engine::Broken) else {
            return None;
        };
        self.engine = Engine::Thread(link);
        Some(Box::new(BlockWorker { io, inbox }))
    }
}

#[cfg(test)]
mod tests;
