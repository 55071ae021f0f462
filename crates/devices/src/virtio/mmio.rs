//! The virtio-mmio transport, version 2 ("modern"): device identification, feature
//! negotiation, the device status state machine, queue set-up, notifications,
//! interrupt status/acknowledge and the configuration space, for any
//! [`VirtioDevice`]. Accesses outside the register map or of the wrong width are
//! logged and ignored (reads return zero).

use super::{Activation, VirtioDevice, VirtioInterrupt, VIRTIO_F_VERSION_1};
use crate::bus::BusDevice;
use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FAILED, VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET,
};
use virtio_bindings::virtio_mmio::*;
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// "virt" in little endian.
const MMIO_MAGIC: u32 = 0x7472_6976;
const MMIO_VERSION: u32 = 2;
/// Vendor ID reported to the guest.
const VENDOR_ID: u32 = 0x4d56_4d4d; // "MMVM"
const CONFIG_START: u64 = VIRTIO_MMIO_CONFIG as u64;

mod state;
pub use state::{QueueSnapshot, TransportState};
/// A virtio device behind the virtio-mmio register interface.
pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    memory: GuestMemoryMmap,
    interrupt: VirtioInterrupt,
    queues: Vec<Queue>,
    queue_evts: Vec<EventFd>,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    status: u32,
    activated: bool,
}

impl MmioTransport {
    /// Wraps `device`; `queue_evts` (one per queue) are signalled on QueueNotify when
    /// the notification reaches the bus instead of a KVM ioeventfd.
    pub fn new(
        device: Box<dyn VirtioDevice>,
        memory: GuestMemoryMmap,
        interrupt: VirtioInterrupt,
        queue_evts: Vec<EventFd>,
    ) -> Self {
        let queues = device
            .queue_max_sizes()
            .iter()
            .filter_map(|max| Queue::new(*max).ok())
            .collect();
        Self {
            device,
            memory,
            interrupt,
            queues,
            queue_evts,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            status: 0,
            activated: false,
        }
    }

    /// The device, for the event loop to process its queues.
    pub fn device_mut(&mut self) -> &mut dyn VirtioDevice {
        self.device.as_mut()
    }

    /// True once the driver set DRIVER_OK and the device accepted its queues.
    pub fn is_activated(&self) -> bool {
        self.activated
    }

    fn has(&self, bit: u32) -> bool {
        self.status & bit != 0
    }

    fn queue_config_allowed(&self) -> bool {
        self.has(VIRTIO_CONFIG_S_FEATURES_OK) && !self.has(VIRTIO_CONFIG_S_DRIVER_OK)
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn reset(&mut self) {
        if self.activated {
            self.device.reset();
        }
        for q in &mut self.queues {
            q.reset();
        }
        self.activated = false;
        self.status = 0;
        self.driver_features = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
        self.interrupt.ack(u32::MAX);
    }

    fn features_ok(&self) -> bool {
        let offered = self.device.features();
        self.driver_features & !offered == 0 && self.driver_features & VIRTIO_F_VERSION_1 != 0
    }

    fn activate(&mut self) -> bool {
        for (i, q) in self.queues.iter().enumerate() {
            if !q.ready() {
                crate::guest_warn!("virtio-mmio: queue {i} not ready at DRIVER_OK");
                return false;
            }
            if !q.is_valid(&self.memory) {
                crate::guest_warn!("virtio-mmio: queue {i} is not valid in guest memory");
                return false;
            }
        }
        // The device gets its own copies; the transport keeps the registers' view.
        let queues: Result<Vec<Queue>, _> = self
            .queues
            .iter()
            .map(|q| Queue::try_from(q.state()))
            .collect();
        let Ok(queues) = queues else {
            crate::guest_warn!("virtio-mmio: queue state cannot be copied");
            return false;
        };
        let activation = Activation {
            memory: self.memory.clone(),
            queues,
            acked_features: self.driver_features,
            interrupt: self.interrupt.clone(),
        };
        match self.device.activate(activation) {
            Ok(()) => {
                // Activation runs on a vCPU thread, which does no host I/O: notify each
                // queue once so the event loop picks up work that is already waiting
                // (buffers the driver made available, frames queued on a tap).
                for evt in &self.queue_evts {
                    let _ = evt.write(1);
                }
                true
            }
            Err(e) => {
                crate::guest_warn!("virtio-mmio: activation failed: {e}");
                false
            }
        }
    }

    fn write_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        if value & VIRTIO_CONFIG_S_FAILED != 0 {
            self.status |= VIRTIO_CONFIG_S_FAILED;
            return;
        }
        // The driver only adds bits, in order: ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK.
        let added = value & !self.status;
        if value & self.status != self.status {
            crate::guest_warn!(
                "virtio-mmio: status {value:#x} clears bits of {:#x}; ignored",
                self.status
            );
            return;
        }
        let order = [
            VIRTIO_CONFIG_S_ACKNOWLEDGE,
            VIRTIO_CONFIG_S_DRIVER,
            VIRTIO_CONFIG_S_FEATURES_OK,
            VIRTIO_CONFIG_S_DRIVER_OK,
        ];
        let mut next = self.status;
        for (i, bit) in order.iter().enumerate() {
            if added & bit == 0 {
                continue;
            }
            if order[..i].iter().any(|b| next & b == 0) {
                crate::guest_warn!("virtio-mmio: status bit {bit:#x} set out of order; ignored");
                return;
            }
            match *bit {
                VIRTIO_CONFIG_S_FEATURES_OK if !self.features_ok() => {
                    crate::guest_warn!(
                        "virtio-mmio: driver features {:#x} not acceptable (offered {:#x})",
                        self.driver_features,
                        self.device.features()
                    );
                    // FEATURES_OK stays clear: the driver reads it back and gives up.
                    self.status = next;
                    return;
                }
                VIRTIO_CONFIG_S_DRIVER_OK if !self.activated => {
                    if self.activate() {
                        self.activated = true;
                    } else {
                        next |= VIRTIO_CONFIG_S_NEEDS_RESET;
                        self.status = next | VIRTIO_CONFIG_S_DRIVER_OK;
                        self.interrupt.signal_config_change();
                        return;
                    }
                }
                _ => {}
            }
            next |= bit;
        }
        self.status = next;
    }

    fn read_register(&mut self, offset: u32) -> u32 {
        match offset {
            VIRTIO_MMIO_MAGIC_VALUE => MMIO_MAGIC,
            VIRTIO_MMIO_VERSION => MMIO_VERSION,
            VIRTIO_MMIO_DEVICE_ID => self.device.device_type(),
            VIRTIO_MMIO_VENDOR_ID => VENDOR_ID,
            VIRTIO_MMIO_DEVICE_FEATURES => match self.device_features_sel {
                0 => self.device.features() as u32,
                1 => (self.device.features() >> 32) as u32,
                _ => 0,
            },
            VIRTIO_MMIO_QUEUE_NUM_MAX => {
                self.selected_queue().map_or(0, |q| u32::from(q.max_size()))
            }
            VIRTIO_MMIO_QUEUE_READY => self.selected_queue().map_or(0, |q| u32::from(q.ready())),
            VIRTIO_MMIO_INTERRUPT_STATUS => self.interrupt.status(),
            VIRTIO_MMIO_STATUS => self.status,
            VIRTIO_MMIO_CONFIG_GENERATION => 0,
            VIRTIO_MMIO_SHM_LEN_LOW | VIRTIO_MMIO_SHM_LEN_HIGH => u32::MAX, // no shared memory
            _ => {
                log::debug!("virtio-mmio: read of unknown register {offset:#x}");
                0
            }
        }
    }

    fn write_register(&mut self, offset: u32, value: u32) {
        let queue_config = self.queue_config_allowed();
        match offset {
            VIRTIO_MMIO_DEVICE_FEATURES_SEL => self.device_features_sel = value,
            VIRTIO_MMIO_DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            VIRTIO_MMIO_DRIVER_FEATURES => {
                if !self.has(VIRTIO_CONFIG_S_DRIVER) || self.has(VIRTIO_CONFIG_S_FEATURES_OK) {
                    crate::guest_warn!(
                        "virtio-mmio: driver features written in status {:#x}; ignored",
                        self.status
                    );
                    return;
                }
                match self.driver_features_sel {
                    0 => {
                        self.driver_features =
                            (self.driver_features & !0xffff_ffff) | u64::from(value)
                    }
                    1 => {
                        self.driver_features =
                            (self.driver_features & 0xffff_ffff) | (u64::from(value) << 32)
                    }
                    sel => crate::guest_warn!("virtio-mmio: driver features select {sel} ignored"),
                }
            }
            VIRTIO_MMIO_QUEUE_SEL => self.queue_sel = value,
            VIRTIO_MMIO_QUEUE_NOTIFY => match self.queue_evts.get(value as usize) {
                Some(evt) => {
                    if let Err(e) = evt.write(1) {
                        log::error!("virtio-mmio: cannot signal queue {value}: {e}");
                    }
                }
                None => crate::guest_warn!("virtio-mmio: notify for missing queue {value}"),
            },
            VIRTIO_MMIO_INTERRUPT_ACK => self.interrupt.ack(value),
            VIRTIO_MMIO_STATUS => self.write_status(value),
            VIRTIO_MMIO_QUEUE_NUM
            | VIRTIO_MMIO_QUEUE_READY
            | VIRTIO_MMIO_QUEUE_DESC_LOW
            | VIRTIO_MMIO_QUEUE_DESC_HIGH
            | VIRTIO_MMIO_QUEUE_AVAIL_LOW
            | VIRTIO_MMIO_QUEUE_AVAIL_HIGH
            | VIRTIO_MMIO_QUEUE_USED_LOW
            | VIRTIO_MMIO_QUEUE_USED_HIGH => {
                if !queue_config {
                    crate::guest_warn!(
                        "virtio-mmio: queue register {offset:#x} written in status {:#x}; ignored",
                        self.status
                    );
                    return;
                }
                let Some(q) = self.selected_queue() else {
                    crate::guest_warn!(
                        "virtio-mmio: queue register written with no queue selected"
                    );
                    return;
                };
                match offset {
                    VIRTIO_MMIO_QUEUE_NUM => {
                        let ok = u16::try_from(value).is_ok_and(|n| q.try_set_size(n).is_ok());
                        if !ok {
                            crate::guest_warn!("virtio-mmio: invalid queue size {value}");
                        }
                    }
                    VIRTIO_MMIO_QUEUE_READY => q.set_ready(value == 1),
                    VIRTIO_MMIO_QUEUE_DESC_LOW => q.set_desc_table_address(Some(value), None),
                    VIRTIO_MMIO_QUEUE_DESC_HIGH => q.set_desc_table_address(None, Some(value)),
                    VIRTIO_MMIO_QUEUE_AVAIL_LOW => q.set_avail_ring_address(Some(value), None),
                    VIRTIO_MMIO_QUEUE_AVAIL_HIGH => q.set_avail_ring_address(None, Some(value)),
                    VIRTIO_MMIO_QUEUE_USED_LOW => q.set_used_ring_address(Some(value), None),
                    _ => q.set_used_ring_address(None, Some(value)),
                }
            }
            _ => log::debug!("virtio-mmio: write of unknown register {offset:#x}"),
        }
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= CONFIG_START {
            self.device.read_config(offset - CONFIG_START, data);
            return;
        }
        match (u32::try_from(offset), data.len()) {
            (Ok(off), 4) if off % 4 == 0 => {
                let v = self.read_register(off);
                data.copy_from_slice(&v.to_le_bytes());
            }
            _ => {
                crate::guest_warn!(
                    "virtio-mmio: {}-byte read at {offset:#x} ignored",
                    data.len()
                );
                data.fill(0);
            }
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= CONFIG_START {
            if self.has(VIRTIO_CONFIG_S_DRIVER) && !self.has(VIRTIO_CONFIG_S_FAILED) {
                self.device.write_config(offset - CONFIG_START, data);
            }
            return;
        }
        match (u32::try_from(offset), <[u8; 4]>::try_from(data)) {
            (Ok(off), Ok(bytes)) if off % 4 == 0 => {
                self.write_register(off, u32::from_le_bytes(bytes))
            }
            _ => crate::guest_warn!(
                "virtio-mmio: {}-byte write at {offset:#x} ignored",
                data.len()
            ),
        }
    }
}

#[cfg(test)]
mod tests;
