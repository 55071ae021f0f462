//! virtio-fs (virtio 1.2, section 5.11): a host directory shared with the guest, which
//! mounts it with `mount -t virtiofs TAG DIR`.
//!
//! The device has a high-priority queue and one request queue; both carry FUSE
//! requests, which fuse-backend-rs decodes and answers ([`server`]) from its
//! passthrough file system under minivmm's share policy ([`confine`]). In a VM the
//! requests are served on the share's own thread ([`devices::virtio::VirtioDevice::take_worker`]),
//! never on a vCPU or the event loop. docs/virtio-fs.md describes the design and
//! docs/security.md what the guest can and cannot reach.

pub mod confine;
mod error;
mod guest_memory;
pub mod server;
mod worker;

pub use confine::Limits;
pub use error::FsError;
pub use server::{open_share, FsCounters, ShareFs};

use devices::virtio::{
    read_config_bytes, worker_link, ActivateError, Activation, DeviceWorker, VirtioDevice,
    WorkerLink, VIRTIO_F_VERSION_1,
};
use server::{Active, FileServer};
use std::path::Path;
use std::sync::Arc;
use worker::{Command, FsWorker, RESET_TIMEOUT};

/// virtio device ID of a file system device.
pub const VIRTIO_ID_FS: u32 = 26;
/// Longest tag the configuration space holds.
pub const TAG_BYTES: usize = 36;
/// Size of each queue.
pub const QUEUE_SIZE: u16 = 256;
/// The high-priority queue and one request queue.
const QUEUE_SIZES: [u16; 2] = [QUEUE_SIZE, QUEUE_SIZE];

/// Checks a share tag: 1 to [`TAG_BYTES`] bytes, no NUL.
pub fn check_tag(tag: &str) -> Result<(), FsError> {
    if tag.is_empty() || tag.len() > TAG_BYTES || tag.contains('\0') {
        return Err(FsError::BadTag(tag.to_string()));
    }
    Ok(())
}

/// Where the device's requests are served.
enum Engine {
    /// Here, in `process_queue` (until a worker is taken; tests and fuzzing).
    Inline(FileServer),
    /// On the share's own thread.
    Thread(WorkerLink<Command>),
    /// Nowhere: the thread could not be set up.
    Broken,
}

/// A virtio-fs device serving one shared directory.
pub struct Fs {
    config: Vec<u8>,
    engine: Engine,
    fs: Arc<ShareFs>,
    counters: Arc<FsCounters>,
}

impl Fs {
    /// A device that shares `root` under `tag`; `read_only` refuses every change.
    /// The directory is opened now.
    pub fn new(tag: &str, root: &Path, read_only: bool, limits: Limits) -> Result<Self, FsError> {
        check_tag(tag)?;
        let fs = Arc::new(open_share(root, read_only, limits)?);
        // virtio_fs_config: tag[36], num_request_queues.
        let mut config = vec![0u8; TAG_BYTES];
        config[..tag.len()].copy_from_slice(tag.as_bytes());
        config.extend_from_slice(&1u32.to_le_bytes());
        let counters = Arc::new(FsCounters::default());
        Ok(Self {
            config,
            engine: Engine::Inline(FileServer::new(fs.clone(), counters.clone())),
            fs,
            counters,
        })
    }

    /// The share's file system (its inode and open-file counts).
    pub fn share(&self) -> &ShareFs {
        &self.fs
    }
}

impl VirtioDevice for Fs {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_FS
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn write_config(&mut self, offset: u64, _data: &[u8]) {
        devices::guest_warn!("virtio-fs: ignored config write at {offset}");
    }

    fn activate(&mut self, a: Activation) -> Result<(), ActivateError> {
        for (i, q) in a.queues.iter().enumerate() {
            if !virtio_queue::QueueT::ready(q) {
                return Err(ActivateError::QueueNotReady(i));
            }
        }
        let active = Active::new(a.memory, &a.queues, a.interrupt).map_err(|e| {
            devices::guest_warn!("virtio-fs: cannot activate: {e}");
            ActivateError::InvalidQueue(0)
        })?;
        match &mut self.engine {
            Engine::Inline(server) => server.active = Some(active),
            Engine::Thread(link) => {
                if !link.send(Command::Activate(active)) {
                    log::error!(
                        "virtio-fs: the file server thread is gone; requests go unanswered"
                    );
                }
            }
            Engine::Broken => {
                log::error!("virtio-fs: no file server thread; requests go unanswered")
            }
        }
        Ok(())
    }

    fn process_queue(&mut self, index: usize) {
        if let Engine::Inline(server) = &mut self.engine {
            server.process(index);
        }
    }

    fn reset(&mut self) {
        match &mut self.engine {
            Engine::Inline(server) => server.active = None,
            Engine::Thread(link) => {
                // The driver may reuse the queues' memory once reset returns: wait
                // until the thread has let go of them (after the request in flight).
                let (ack, acked) = std::sync::mpsc::channel();
                if link.send(Command::Reset(ack)) && acked.recv_timeout(RESET_TIMEOUT).is_err() {
                    log::error!(
                        "virtio-fs: the file server did not finish its request within \
                         {RESET_TIMEOUT:?} of a driver reset"
                    );
                }
            }
            Engine::Broken => {}
        }
    }

    fn counters(&self) -> Option<Arc<dyn devices::counters::CounterSet>> {
        Some(self.counters.clone())
    }

    fn queue_states(&self) -> Result<Vec<Option<virtio_queue::QueueState>>, String> {
        Err(SNAPSHOT_REFUSED.into())
    }

    fn take_worker(&mut self) -> Option<Box<dyn DeviceWorker>> {
        let (link, inbox) = match worker_link("virtio-fs") {
            Ok(pair) => pair,
            Err(e) => {
                log::error!("virtio-fs: cannot set up the file server thread: {e}");
                return None;
            }
        };
        let Engine::Inline(server) = std::mem::replace(&mut self.engine, Engine::Broken) else {
            return None;
        };
        self.engine = Engine::Thread(link);
        Some(Box::new(FsWorker { server, inbox }))
    }
}

/// Why a VM with a share is not snapshotted.
pub const SNAPSHOT_REFUSED: &str =
    "a VM with a shared directory (virtio-fs) cannot be snapshotted: the guest's open \
     files and known inodes on the share are host descriptors a snapshot cannot carry \
     (docs/virtio-fs.md)";

#[cfg(test)]
mod tests;
