//! virtio-net over a host frame channel (a TAP): queue 0 receives, queue 1 transmits.
//! Features: VERSION_1, MAC, STATUS and MRG_RXBUF; no checksum or segmentation
//! offloads, so every frame is whole and checksummed on both sides.
//!
//! Receive is driven by two events, both from the event loop: the backend becoming
//! readable (edge-triggered) and the driver adding RX buffers. Frames are read until
//! the backend is empty or the guest has no buffers; a frame without room waits in
//! the device (one frame, the kernel queues the rest) until buffers arrive, so nothing
//! handed to us is lost and the loop never spins. Transmit drains the whole TX ring
//! per notification, one write per frame, one interrupt per batch.

pub mod backend;
pub mod netif;
pub mod rx;
pub mod tap;
pub mod tx;

use super::{
    read_config_bytes, ActivateError, Activation, VirtioDevice, VirtioInterrupt, VIRTIO_F_VERSION_1,
};
use backend::NetBackend;
use rx::RxOutcome;
use std::io::ErrorKind;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use virtio_bindings::virtio_ids::VIRTIO_ID_NET;
use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_MAC, VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_STATUS, VIRTIO_NET_S_LINK_UP,
};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

/// Size of the virtio-net header (virtio 1.x: `virtio_net_hdr_mrg_rxbuf`).
pub const VNET_HDR_LEN: usize = 12;
/// Offset of `num_buffers` in the header.
pub const NUM_BUFFERS_OFFSET: usize = 10;
/// Ethernet header: two addresses and the EtherType.
pub const ETH_HLEN: usize = 14;
/// Largest frame either way (header excluded): a 64 KiB IP packet behind an Ethernet
/// header with a VLAN tag.
pub const MAX_FRAME_LEN: usize = 65_535 + ETH_HLEN + 4;
/// Size of each queue.
pub const QUEUE_SIZE: u16 = 256;
const QUEUE_SIZES: [u16; 2] = [QUEUE_SIZE, QUEUE_SIZE];
const RX_QUEUE: usize = 0;
const TX_QUEUE: usize = 1;

/// Frame and error counts of one device, readable while it runs.
#[derive(Debug, Default)]
pub struct NetCounters {
    /// Frames delivered to the guest.
    pub rx_frames: AtomicU64,
    /// Bytes delivered to the guest (headers excluded).
    pub rx_bytes: AtomicU64,
    /// Frames from the host dropped because the guest's buffers could not hold them.
    pub rx_dropped: AtomicU64,
    /// RX buffers returned unused because they were malformed.
    pub rx_bad_buffers: AtomicU64,
    /// Frames sent to the host.
    pub tx_frames: AtomicU64,
    /// Bytes sent to the host (headers excluded).
    pub tx_bytes: AtomicU64,
    /// TX chains dropped as malformed (direction, range, length).
    pub tx_malformed: AtomicU64,
    /// Frames the host refused (write errors).
    pub tx_errors: AtomicU64,
}

/// A MAC address derived from `name`: stable across runs, locally administered,
/// unicast (02:xx:xx:xx:xx:xx).
pub fn default_mac(name: &str) -> [u8; 6] {
    // FNV-1a, 64 bit.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let b = h.to_le_bytes();
    [0x02, b[0], b[1], b[2], b[3], b[4]]
}

struct Active {
    memory: GuestMemoryMmap,
    rx: Queue,
    tx: Queue,
    interrupt: VirtioInterrupt,
    mergeable: bool,
}

/// A virtio-net device.
pub struct Net {
    name: String,
    backend: Box<dyn NetBackend>,
    config: [u8; 8],
    counters: Arc<NetCounters>,
    active: Option<Active>,
    /// A frame read from the backend that found no RX buffer yet (header first).
    rx_frame: Vec<u8>,
    rx_pending: usize,
    tx_buf: Vec<u8>,
    backend_failed: bool,
}

impl Net {
    /// A device with address `mac` whose frames go to and come from `backend`;
    /// `name` (the tap's) labels its log lines.
    pub fn new(name: &str, backend: Box<dyn NetBackend>, mac: [u8; 6]) -> Self {
        // virtio_net_config: mac[6], status (u16).
        let mut config = [0u8; 8];
        config[..6].copy_from_slice(&mac);
        config[6..].copy_from_slice(&(VIRTIO_NET_S_LINK_UP as u16).to_le_bytes());
        Self {
            name: name.to_string(),
            backend,
            config,
            counters: Arc::new(NetCounters::default()),
            active: None,
            rx_frame: vec![0; VNET_HDR_LEN + MAX_FRAME_LEN],
            rx_pending: 0,
            tx_buf: vec![0; tx::MAX_TX_LEN],
            backend_failed: false,
        }
    }

    /// The device's counters.
    pub fn counters(&self) -> Arc<NetCounters> {
        self.counters.clone()
    }

    fn backend_error(&mut self, what: &str, e: std::io::Error) {
        if !self.backend_failed {
            log::error!(
                "virtio-net {}: {what} failed: {e}; the guest keeps running",
                self.name
            );
            self.backend_failed = true;
        }
    }

    /// Moves frames from the backend into the guest until one side runs dry.
    fn process_rx(&mut self) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let mut used = false;
        loop {
            if self.rx_pending == 0 {
                match self.backend.recv(&mut self.rx_frame) {
                    Ok(n) if n < VNET_HDR_LEN + ETH_HLEN => {
                        log::debug!("virtio-net: {n}-byte frame from the host ignored");
                        continue;
                    }
                    Ok(n) => {
                        // No offloads were negotiated: the header carries only the
                        // buffer count, which `deliver` fills in.
                        self.rx_frame[..VNET_HDR_LEN].fill(0);
                        self.rx_pending = n;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let msg = "reading from the host interface";
                        if !self.backend_failed {
                            log::error!(
                                "virtio-net {}: {msg} failed: {e}; the guest keeps running",
                                self.name
                            );
                            self.backend_failed = true;
                        }
                        break;
                    }
                }
            }
            let frame = &mut self.rx_frame[..self.rx_pending];
            match rx::deliver(
                &active.memory,
                &mut active.rx,
                frame,
                active.mergeable,
                &self.counters,
            ) {
                RxOutcome::Delivered(_) | RxOutcome::Dropped => {
                    self.rx_pending = 0;
                    used = true;
                }
                RxOutcome::NoBuffers => break,
            }
        }
        if used {
            super::signal_used(&mut active.rx, &active.memory, &active.interrupt);
        }
    }

    /// Sends every frame the driver queued.
    fn process_tx(&mut self) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let mem = &active.memory;
        let mut used = false;
        let mut send_error = None;
        while let Some(chain) = active.tx.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            match tx::gather(mem, chain, &mut self.tx_buf) {
                Ok(len) => {
                    // Nothing was negotiated that the header could ask for: send zeros.
                    self.tx_buf[..VNET_HDR_LEN].fill(0);
                    match self.backend.send(&self.tx_buf[..len]) {
                        Ok(_) => {
                            self.counters.tx_frames.fetch_add(1, Ordering::Relaxed);
                            self.counters
                                .tx_bytes
                                .fetch_add((len - VNET_HDR_LEN) as u64, Ordering::Relaxed);
                        }
                        Err(e) => {
                            self.counters.tx_errors.fetch_add(1, Ordering::Relaxed);
                            send_error.get_or_insert(e);
                        }
                    }
                }
                Err(e) => {
                    self.counters.tx_malformed.fetch_add(1, Ordering::Relaxed);
                    log::debug!("virtio-net: TX chain {head} dropped: {e}");
                }
            }
            if let Err(e) = active.tx.add_used(mem, head, 0) {
                crate::guest_warn!("virtio-net: cannot return TX chain {head}: {e:?}");
                break;
            }
            used = true;
        }
        if used {
            super::signal_used(&mut active.tx, &active.memory, &active.interrupt);
        }
        if let Some(e) = send_error {
            if e.kind() != ErrorKind::WouldBlock {
                self.backend_error("writing to the host interface", e);
            }
        }
    }
}

crate::counter_set!(NetCounters {
    rx_frames,
    rx_bytes,
    rx_dropped,
    rx_bad_buffers,
    tx_frames,
    tx_bytes,
    tx_malformed,
    tx_errors
});

impl Drop for Net {
    fn drop(&mut self) {
        log::info!("virtio-net {}: {}", self.name, self.counters);
    }
}

impl VirtioDevice for Net {
    fn counters(&self) -> Option<std::sync::Arc<dyn crate::counters::CounterSet>> {
        Some(self.counters.clone())
    }

    fn device_type(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
            | (1 << VIRTIO_NET_F_MAC)
            | (1 << VIRTIO_NET_F_STATUS)
            | (1 << VIRTIO_NET_F_MRG_RXBUF)
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn write_config(&mut self, offset: u64, _data: &[u8]) {
        log::debug!("virtio-net: ignored config write at {offset}");
    }

    fn activate(&mut self, a: Activation) -> Result<(), ActivateError> {
        let mut queues = a.queues.into_iter();
        let rx = queues
            .next()
            .ok_or(ActivateError::QueueNotReady(RX_QUEUE))?;
        let tx = queues
            .next()
            .ok_or(ActivateError::QueueNotReady(TX_QUEUE))?;
        self.active = Some(Active {
            memory: a.memory,
            rx,
            tx,
            interrupt: a.interrupt,
            mergeable: a.acked_features & (1 << VIRTIO_NET_F_MRG_RXBUF) != 0,
        });
        // Frames that arrived before the driver was ready are waiting and the edge that
        // announced them has passed: the transport's notification after activation
        // makes the event loop receive them (no host I/O on the vCPU thread here).
        Ok(())
    }

    fn process_queue(&mut self, index: usize) {
        match index {
            RX_QUEUE => self.process_rx(),
            TX_QUEUE => self.process_tx(),
            _ => crate::guest_warn!("virtio-net: notification for queue {index} ignored"),
        }
    }

    fn backend_fds(&self) -> Vec<RawFd> {
        vec![self.backend.as_raw_fd()]
    }

    fn process_backend(&mut self, _index: usize) {
        self.process_rx();
    }

    fn reset(&mut self) {
        self.active = None;
        self.rx_pending = 0;
    }

    // A frame read from the tap but not yet delivered is not kept: to the guest it is
    // a frame lost on the wire.
    fn queue_states(&self) -> Result<Vec<Option<virtio_queue::QueueState>>, String> {
        let a = self.active.as_ref().ok_or("not activated")?;
        Ok(vec![Some(a.rx.state()), Some(a.tx.state())])
    }
}

#[cfg(test)]
mod tests;
