//! virtio-vsock (virtio 1.2 §5.10): stream sockets between the guest (its CID, 3 by
//! default) and host programs (CID 2) on Unix sockets, in Firecracker's convention
//! (see [`muxer`]). Queues: RX (packets for the guest), TX (packets from it) and the
//! event queue (transport events; its buffers are held for a transport reset).
//!
//! Everything runs on the event loop: guest notifications on the RX and TX queues,
//! and the muxer's epoll descriptor for the host side.

pub mod conn;
pub mod guest;
pub mod muxer;
pub mod packet;
pub mod rx;
pub mod unix;

use super::{
    read_config_bytes, ActivateError, Activation, VirtioDevice, VirtioInterrupt, VIRTIO_F_VERSION_1,
};
use muxer::Muxer;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use virtio_bindings::virtio_ids::VIRTIO_ID_VSOCK;
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

/// The host's context ID.
pub const HOST_CID: u64 = 2;
/// The guest CID when none is given.
pub const DEFAULT_GUEST_CID: u64 = 3;
/// Size of each queue.
pub const QUEUE_SIZE: u16 = 256;
const QUEUE_SIZES: [u16; 3] = [QUEUE_SIZE; 3];
const RX_QUEUE: usize = 0;
const TX_QUEUE: usize = 1;
const EVENT_QUEUE: usize = 2;

/// Errors setting up a vsock device.
#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    /// The guest CID is reserved (0-2) or beyond 32 bits.
    #[error("vsock guest CID {0} is not valid (use 3 to 4294967294)")]
    BadCid(u64),
    /// The socket path, with a `_<port>` suffix, would not fit a Unix socket address.
    #[error("vsock socket path {0} is too long for a Unix socket (with its _PORT suffix)")]
    PathTooLong(PathBuf),
    /// Another program listens on the socket path.
    #[error("vsock socket {0} is in use by another program")]
    InUse(PathBuf),
    /// The socket could not be created.
    #[error("cannot listen on vsock socket {0}: {1}")]
    Bind(PathBuf, #[source] std::io::Error),
    /// The epoll instance could not be set up.
    #[error("vsock: cannot set up epoll: {0}")]
    Epoll(#[source] std::io::Error),
}

/// Packet and error counts of one device, readable while it runs.
#[derive(Debug, Default)]
pub struct VsockCounters {
    /// Packets delivered to the guest.
    pub rx_packets: AtomicU64,
    /// Stream bytes delivered to the guest.
    pub rx_bytes: AtomicU64,
    /// Packets taken from the guest.
    pub tx_packets: AtomicU64,
    /// Stream bytes taken from the guest.
    pub tx_bytes: AtomicU64,
    /// Connections host programs opened.
    pub conns_host: AtomicU64,
    /// Connections the guest opened.
    pub conns_guest: AtomicU64,
    /// Guest connections no host listener took.
    pub refused: AtomicU64,
    /// Connections refused because the cap was reached (or the driver was not ready).
    pub conn_limit: AtomicU64,
    /// TX chains or headers that were malformed.
    pub malformed: AtomicU64,
    /// Packets with an unknown operation or type, a wrong CID, or out of turn.
    pub bad_packets: AtomicU64,
    /// Connections reset for sending past their credit or lying about it.
    pub credit_violations: AtomicU64,
    /// RX buffers returned unused because they were malformed or too small.
    pub bad_buffers: AtomicU64,
    /// RSTs dropped because too many were waiting for RX buffers.
    pub rst_dropped: AtomicU64,
}

crate::counter_set!(VsockCounters {
    rx_packets,
    rx_bytes,
    tx_packets,
    tx_bytes,
    conns_host,
    conns_guest,
    refused,
    conn_limit,
    malformed,
    bad_packets,
    credit_violations,
    bad_buffers,
    rst_dropped
});

struct Active {
    memory: GuestMemoryMmap,
    rx: Queue,
    tx: Queue,
    /// Buffers for transport events (only a restored snapshot's reset uses one).
    event: Queue,
    interrupt: VirtioInterrupt,
}

/// virtio_vsock_event.id of a transport reset: every connection is gone.
const EVENT_TRANSPORT_RESET: u32 = 0;

/// True when `cid` is a context ID a guest may have (not 0-2, which are reserved,
/// and within 32 bits, less the wildcard `u32::MAX`).
pub fn valid_cid(cid: u64) -> bool {
    (3..u64::from(u32::MAX)).contains(&cid)
}

/// A virtio-vsock device.
pub struct Vsock {
    cid: u64,
    muxer: Muxer,
    counters: Arc<VsockCounters>,
    active: Option<Active>,
    buf: Vec<u8>,
}

impl Vsock {
    /// A device for a guest with context ID `cid` whose host side listens on `path`,
    /// with at most `max_conns` connections at once.
    pub fn new(cid: u64, path: &Path, max_conns: usize) -> Result<Self, VsockError> {
        if !valid_cid(cid) {
            return Err(VsockError::BadCid(cid));
        }
        let counters = Arc::new(VsockCounters::default());
        let muxer = Muxer::new(path, cid, max_conns, counters.clone())?;
        Ok(Self {
            cid,
            muxer,
            counters,
            active: None,
            buf: vec![0; packet::MAX_PKT_LEN],
        })
    }

    /// The device's counters.
    pub fn counters(&self) -> Arc<VsockCounters> {
        self.counters.clone()
    }

    /// Sends the guest what is owed, as far as its RX buffers go.
    fn fill_rx(&mut self) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        if self.muxer.fill_rx(&a.memory, &mut a.rx, &mut self.buf) {
            super::signal_used(&mut a.rx, &a.memory, &a.interrupt);
        }
    }

    fn process_tx(&mut self) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        if self.muxer.process_tx(&a.memory, &mut a.tx, &mut self.buf) {
            super::signal_used(&mut a.tx, &a.memory, &a.interrupt);
        }
        self.fill_rx();
    }
}

impl Drop for Vsock {
    fn drop(&mut self) {
        log::info!(
            "virtio-vsock {}: {}",
            self.muxer.path().display(),
            self.counters
        );
        if let Some(a) = &self.active {
            log::info!(
                "virtio-vsock queues at the end: rx {}; tx {}; interrupt status {:#x}",
                super::describe_queue(&a.rx, &a.memory),
                super::describe_queue(&a.tx, &a.memory),
                a.interrupt.status()
            );
        }
    }
}

impl VirtioDevice for Vsock {
    fn counters(&self) -> Option<std::sync::Arc<dyn crate::counters::CounterSet>> {
        Some(self.counters.clone())
    }

    fn device_type(&self) -> u32 {
        VIRTIO_ID_VSOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // virtio_vsock_config: guest_cid (le64).
        read_config_bytes(&self.cid.to_le_bytes(), offset, data);
    }

    fn write_config(&mut self, offset: u64, _data: &[u8]) {
        crate::guest_warn!("virtio-vsock: ignored config write at {offset}");
    }

    fn activate(&mut self, a: Activation) -> Result<(), ActivateError> {
        let mut queues = a.queues.into_iter();
        let rx = queues
            .next()
            .ok_or(ActivateError::QueueNotReady(RX_QUEUE))?;
        let tx = queues
            .next()
            .ok_or(ActivateError::QueueNotReady(TX_QUEUE))?;
        let event = queues
            .next()
            .ok_or(ActivateError::QueueNotReady(EVENT_QUEUE))?;
        self.active = Some(Active {
            memory: a.memory,
            rx,
            tx,
            event,
            interrupt: a.interrupt,
        });
        self.muxer.active = true;
        Ok(())
    }

    fn process_queue(&mut self, index: usize) {
        match index {
            RX_QUEUE => self.fill_rx(),
            TX_QUEUE => self.process_tx(),
            // Event buffers stay with the device until it has an event to report.
            EVENT_QUEUE => {}
            _ => crate::guest_warn!("virtio-vsock: notification for queue {index} ignored"),
        }
    }

    fn backend_fds(&self) -> Vec<RawFd> {
        vec![self.muxer.epoll_fd()]
    }

    fn process_backend(&mut self, _index: usize) {
        self.muxer.process_host_events();
        self.fill_rx();
    }

    fn reset(&mut self) {
        self.active = None;
        self.muxer.reset();
    }

    // Host connections are not saved: a restored guest learns they are gone from the
    // transport reset event (`restored`).
    fn queue_states(&self) -> Result<Vec<Option<virtio_queue::QueueState>>, String> {
        let a = self.active.as_ref().ok_or("not activated")?;
        Ok(vec![
            Some(a.rx.state()),
            Some(a.tx.state()),
            Some(a.event.state()),
        ])
    }

    fn restored(&mut self) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        let Some(chain) = a.event.pop_descriptor_chain(&a.memory) else {
            log::warn!("virtio-vsock: no event buffer for the transport reset");
            return;
        };
        let head = chain.head_index();
        let written = match crate::virtio::chain::Segments::of(&a.memory, chain, true) {
            Ok(s) => s.write_at(&a.memory, 0, &EVENT_TRANSPORT_RESET.to_le_bytes()),
            Err(e) => {
                crate::guest_warn!("virtio-vsock: event buffer {head} unusable: {e}");
                0
            }
        };
        if let Err(e) = a.event.add_used(&a.memory, head, written as u32) {
            crate::guest_warn!("virtio-vsock: cannot return event buffer {head}: {e:?}");
            return;
        }
        super::signal_used(&mut a.event, &a.memory, &a.interrupt);
    }
}

#[cfg(test)]
mod tests;
