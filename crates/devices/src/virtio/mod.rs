//! Virtio devices and their virtio-mmio transport.
//!
//! A [`VirtioDevice`] knows its type, features, queues and configuration space and does
//! the device's work once activated; [`mmio::MmioTransport`] speaks the virtio-mmio
//! register protocol (version 2) for any of them. Interrupts go through
//! [`VirtioInterrupt`]: the interrupt status register plus an eventfd (a KVM irqfd).

pub mod block;
pub mod chain;
pub mod mmio;
pub mod net;
pub mod rng;
#[cfg(test)]
pub(crate) mod test_ring;
pub mod vsock;
mod wait;

pub use wait::{wait_readable, worker_link, WorkerInbox, WorkerLink};

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use virtio_bindings::virtio_mmio::{VIRTIO_MMIO_INT_CONFIG, VIRTIO_MMIO_INT_VRING};
use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// Bit of VIRTIO_F_VERSION_1 (virtio 1.x, "modern" devices).
pub const VIRTIO_F_VERSION_1: u64 = 1 << virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;

/// Errors activating a device.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ActivateError {
    /// The driver set up a queue the device cannot use.
    #[error("queue {0} is not valid in guest memory")]
    InvalidQueue(usize),
    /// The driver did not make every required queue ready.
    #[error("queue {0} is not ready")]
    QueueNotReady(usize),
}

/// The interrupt of one virtio device: the status bits the guest reads from the
/// transport, and the eventfd that injects the IRQ.
#[derive(Clone)]
pub struct VirtioInterrupt {
    status: Arc<AtomicU32>,
    irq: Arc<EventFd>,
}

impl VirtioInterrupt {
    /// An interrupt that fires `irq`.
    pub fn new(irq: EventFd) -> Self {
        Self {
            status: Arc::new(AtomicU32::new(0)),
            irq: Arc::new(irq),
        }
    }

    /// The eventfd, for KVM_IRQFD.
    pub fn event_fd(&self) -> &EventFd {
        &self.irq
    }

    /// The pending-interrupt bits (virtio-mmio InterruptStatus).
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::Acquire)
    }

    /// Sets the pending bits to `bits` (a restored snapshot's) and, if any is set,
    /// raises the interrupt once more: one injected just before the snapshot may not
    /// have reached the saved interrupt controller (a spare one is harmless, the
    /// driver reads the bits).
    pub fn restore_status(&self, bits: u32) {
        self.status.store(bits, Ordering::Release);
        if bits != 0 {
            if let Err(e) = self.irq.write(1) {
                log::error!("virtio: cannot inject interrupt: {e}");
            }
        }
    }

    /// Clears the bits the driver acknowledged (InterruptACK).
    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::AcqRel);
    }

    fn raise(&self, bit: u32) {
        self.status.fetch_or(bit, Ordering::AcqRel);
        if let Err(e) = self.irq.write(1) {
            log::error!("virtio: cannot inject interrupt: {e}");
        }
    }

    /// Tells the driver a used ring changed.
    pub fn signal_used_queue(&self) {
        self.raise(VIRTIO_MMIO_INT_VRING);
    }

    /// Tells the driver the configuration space changed.
    pub fn signal_config_change(&self) {
        self.raise(VIRTIO_MMIO_INT_CONFIG);
    }
}

/// What a device gets when the driver sets DRIVER_OK.
pub struct Activation {
    /// Guest memory.
    pub memory: GuestMemoryMmap,
    /// The queues, as the driver configured them.
    pub queues: Vec<Queue>,
    /// Features the driver accepted.
    pub acked_features: u64,
    /// The device's interrupt.
    pub interrupt: VirtioInterrupt,
}

/// The body of a device's own I/O thread (see [`VirtioDevice::take_worker`]): it serves
/// the device's queues when their notification eventfds fire, so that slow host I/O
/// stalls neither the event loop nor a vCPU touching the device's registers.
pub trait DeviceWorker: Send {
    /// A short name for the thread ("blk").
    fn name(&self) -> &'static str;
    /// What the thread does, for the VMM's choice of its sandbox.
    fn role(&self) -> WorkerRole {
        WorkerRole::BlockIo
    }
    /// Runs until `stop` becomes readable (it is never read, so one eventfd can stop
    /// several workers); `queue_evts` are the device's queue notifications, in order.
    fn run(self: Box<Self>, queue_evts: Vec<EventFd>, stop: EventFd);
}

/// The kinds of device threads (each has its own seccomp allow-list).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerRole {
    /// Reads, writes and flushes of descriptors opened before it started (virtio-blk).
    BlockIo,
    /// A file server: opens, creates and changes files under a shared directory
    /// (virtio-fs).
    FileServer,
}

/// A virtio device model, independent of its transport.
pub trait VirtioDevice: Send {
    /// Virtio device ID (2 = block, 1 = network, ...).
    fn device_type(&self) -> u32;
    /// Maximum size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Features the device offers (VIRTIO_F_VERSION_1 included).
    fn features(&self) -> u64;
    /// Reads the device-specific configuration space at `offset`.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes the device-specific configuration space at `offset`.
    fn write_config(&mut self, offset: u64, data: &[u8]);
    /// Starts the device with the driver's queues. Called on a vCPU thread: no host
    /// I/O here (the transport then notifies every queue, and the event loop does it).
    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError>;
    /// Handles a notification on queue `index`.
    fn process_queue(&mut self, index: usize);
    /// Stops the device and forgets its queues (driver reset).
    fn reset(&mut self);
    /// Host descriptors (besides queue notifications) whose readiness drives the
    /// device, such as a tap; the event loop watches them for input, edge-triggered.
    fn backend_fds(&self) -> Vec<RawFd> {
        Vec::new()
    }
    /// Handles readiness of backend descriptor `index` (an index into
    /// [`VirtioDevice::backend_fds`]), whether or not the device is activated.
    fn process_backend(&mut self, _index: usize) {}
    /// The device's counters, for the VMM's metrics (`None`: it keeps none).
    fn counters(&self) -> Option<std::sync::Arc<dyn crate::counters::CounterSet>> {
        None
    }

    /// Hands the device's queue processing to a thread of the VMM's: once taken, the
    /// device's queues are the worker's (the event loop must not watch them) and
    /// [`VirtioDevice::process_queue`] does nothing. `None` (the default): the event
    /// loop serves the queues.
    fn take_worker(&mut self) -> Option<Box<dyn DeviceWorker>> {
        None
    }
    /// For a snapshot of an activated device: the live state of each queue, in queue
    /// order (`None` for one the device never takes buffers from, whose register view
    /// in the transport is current). Devices that cannot be saved while in use say
    /// why (the default).
    fn queue_states(&self) -> Result<Vec<Option<virtio_queue::QueueState>>, String> {
        Err("saving it while its driver uses it is not supported yet".into())
    }
    /// Called once after the device was activated from a snapshot's queues, before
    /// the guest runs again (vsock tells the guest its connections are gone).
    fn restored(&mut self) {}
}

/// Interrupts the driver for `queue` unless it asked not to be (event index or
/// VRING_AVAIL_F_NO_INTERRUPT).
pub fn signal_used(queue: &mut Queue, mem: &GuestMemoryMmap, interrupt: &VirtioInterrupt) {
    if virtio_queue::QueueT::needs_notification(queue, mem).unwrap_or(true) {
        interrupt.signal_used_queue();
    }
}

/// A queue's indices, for a log line: where the device is in the available ring and
/// what the driver has published (a stalled queue shows whether a notification or an
/// interrupt went missing).
pub fn describe_queue(queue: &Queue, mem: &GuestMemoryMmap) -> String {
    use std::sync::atomic::Ordering::Acquire;
    let avail = virtio_queue::QueueT::avail_idx(queue, mem, Acquire).map(|w| w.0);
    let used = virtio_queue::QueueT::used_idx(queue, mem, Acquire).map(|w| w.0);
    format!(
        "next_avail={} avail_idx={:?} next_used={} used_idx={:?}",
        virtio_queue::QueueT::next_avail(queue),
        avail.ok(),
        virtio_queue::QueueT::next_used(queue),
        used.ok()
    )
}

/// Copies `data.len()` bytes of `config` at `offset` into `data`; bytes beyond the end
/// read as zero.
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(start) = usize::try_from(offset) else {
        return;
    };
    if let Some(src) = config.get(start..) {
        let n = src.len().min(data.len());
        data[..n].copy_from_slice(&src[..n]);
    }
}
