//! One path for every virtio device: a virtio-mmio slot and an IRQ from the layout, an
//! irqfd for its interrupt, an ioeventfd per queue at the notify register, the
//! transport on the MMIO bus, and the `virtio_mmio.device=` command-line entry. The
//! event loop then processes each queue when its eventfd fires, except for a device
//! with its own I/O thread (virtio-blk), whose queues that thread serves.

use crate::error::VmmError;
use crate::platform::MmioDeviceInfo;
use arch::layout::{VIRTIO_IRQ_BASE, VIRTIO_IRQ_MAX, VIRTIO_MMIO_SLOT_SIZE, VIRTIO_MMIO_START};
use devices::virtio::mmio::MmioTransport;
use devices::virtio::{DeviceWorker, VirtioDevice, VirtioInterrupt};
use devices::Bus;
use event_manager::{EventOps, Events, MutEventSubscriber};
use kvm_ioctls::{IoEventAddress, VmFd};
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};
use virtio_bindings::virtio_mmio::VIRTIO_MMIO_QUEUE_NOTIFY;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Most virtio-mmio devices: one per IRQ in the layout's virtio range.
pub const MAX_DEVICES: usize = (VIRTIO_IRQ_MAX - VIRTIO_IRQ_BASE + 1) as usize;

/// A virtio device placed on the bus, with what the event loop needs.
pub struct VirtioSlot {
    /// The device behind its transport.
    pub transport: Arc<Mutex<MmioTransport>>,
    /// One eventfd per queue, signalled by KVM on a notify write, for the event loop
    /// (empty when the device has its own I/O thread).
    pub queue_evts: Vec<EventFd>,
    /// The device's host descriptors (a tap), owned by the device.
    pub backend_fds: Vec<RawFd>,
    /// The device's own I/O thread body and its queue eventfds, to be run by the VMM.
    pub worker: Option<(Box<dyn DeviceWorker>, Vec<EventFd>)>,
}

/// Where device `index` lives: MMIO base and GSI.
pub fn slot_resources(index: usize) -> Result<(u64, u32), VmmError> {
    if index >= MAX_DEVICES {
        return Err(VmmError::TooManyDevices(MAX_DEVICES));
    }
    Ok((
        VIRTIO_MMIO_START + index as u64 * VIRTIO_MMIO_SLOT_SIZE,
        VIRTIO_IRQ_BASE + index as u32,
    ))
}

/// Attaches `device` as virtio-mmio device number `index`; returns its slot and what
/// the guest must be told about it.
pub fn attach(
    vm: &VmFd,
    mmio_bus: &mut Bus,
    memory: &GuestMemoryMmap,
    index: usize,
    mut device: Box<dyn VirtioDevice>,
) -> Result<(VirtioSlot, MmioDeviceInfo), VmmError> {
    let (base, irq) = slot_resources(index)?;
    let irq_evt = EventFd::new(EFD_NONBLOCK).map_err(VmmError::EventFd)?;
    vm.register_irqfd(&irq_evt, irq)
        .map_err(|e| VmmError::Irqfd(irq, e))?;
    let mut queue_evts = Vec::new();
    let mut transport_evts = Vec::new();
    for queue in 0..device.queue_max_sizes().len() {
        let evt = EventFd::new(EFD_NONBLOCK).map_err(VmmError::EventFd)?;
        let notify = IoEventAddress::Mmio(base + u64::from(VIRTIO_MMIO_QUEUE_NOTIFY));
        vm.register_ioevent(&evt, &notify, queue as u32)
            .map_err(|e| VmmError::Ioeventfd(base, e))?;
        transport_evts.push(evt.try_clone().map_err(VmmError::EventFd)?);
        queue_evts.push(evt);
    }
    let backend_fds = device.backend_fds();
    let worker = device
        .take_worker()
        .map(|w| (w, std::mem::take(&mut queue_evts)));
    let transport = MmioTransport::new(
        device,
        memory.clone(),
        VirtioInterrupt::new(irq_evt),
        transport_evts,
    );
    let transport = Arc::new(Mutex::new(transport));
    mmio_bus.insert(transport.clone(), base, VIRTIO_MMIO_SLOT_SIZE)?;
    let info = MmioDeviceInfo {
        base,
        size: VIRTIO_MMIO_SLOT_SIZE,
        irq,
    };
    Ok((
        VirtioSlot {
            transport,
            queue_evts,
            backend_fds,
            worker,
        },
        info,
    ))
}

/// Event-loop subscriber: processes a device's queue when its eventfd fires, and its
/// backend when a backend descriptor becomes readable. Event data: queue index, or
/// the number of queues plus the backend index.
pub struct QueueHandler {
    slot: VirtioSlot,
}

impl QueueHandler {
    /// A handler for `slot`.
    pub fn new(slot: VirtioSlot) -> Self {
        Self { slot }
    }
}

impl MutEventSubscriber for QueueHandler {
    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        let index = events.data() as usize;
        let queues = self.slot.queue_evts.len();
        if let Some(evt) = self.slot.queue_evts.get(index) {
            let _ = evt.read();
        }
        let mut transport = self
            .slot
            .transport
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if index >= queues {
            transport.device_mut().process_backend(index - queues);
        } else if transport.is_activated() {
            transport.device_mut().process_queue(index);
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        for (i, evt) in self.slot.queue_evts.iter().enumerate() {
            if let Err(e) = ops.add(Events::with_data(evt, i as u32, EventSet::IN)) {
                log::error!("virtio: cannot watch queue {i}: {e:?}");
            }
        }
        let queues = self.slot.queue_evts.len();
        for (i, fd) in self.slot.backend_fds.iter().enumerate() {
            let data = (queues + i) as u32;
            let set = EventSet::IN | EventSet::EDGE_TRIGGERED;
            if let Err(e) = ops.add(Events::with_data_raw(*fd, data, set)) {
                log::error!("virtio: cannot watch backend descriptor {fd}: {e:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_and_irqs_follow_the_layout() {
        assert_eq!(
            slot_resources(0).unwrap(),
            (VIRTIO_MMIO_START, VIRTIO_IRQ_BASE)
        );
        assert_eq!(
            slot_resources(2).unwrap(),
            (VIRTIO_MMIO_START + 0x2000, VIRTIO_IRQ_BASE + 2)
        );
        let (_, last_irq) = slot_resources(MAX_DEVICES - 1).unwrap();
        assert_eq!(last_irq, VIRTIO_IRQ_MAX);
        assert!(matches!(
            slot_resources(MAX_DEVICES),
            Err(VmmError::TooManyDevices(_))
        ));
    }
}
