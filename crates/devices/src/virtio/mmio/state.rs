//! The transport's registers for snapshots: feature selection, status, the queue
//! configuration the driver wrote, and pending interrupt bits. Once the driver has
//! set DRIVER_OK the live queue positions are the device's: it reports them
//! (`VirtioDevice::queue_states`), and a restore activates the device again from them
//! without the driver's help.

use super::MmioTransport;
use serde::{Deserialize, Serialize};
use virtio_queue::{Queue, QueueT};

/// One queue's configuration and ring positions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSnapshot {
    /// Largest size the device offers.
    pub max_size: u16,
    /// Size the driver chose.
    pub size: u16,
    /// The driver finished configuring it.
    pub ready: bool,
    /// Descriptor table address.
    pub desc_table: u64,
    /// Available ring address.
    pub avail_ring: u64,
    /// Used ring address.
    pub used_ring: u64,
    /// Next available-ring entry the device takes.
    pub next_avail: u16,
    /// Next used-ring entry the device fills.
    pub next_used: u16,
    /// VIRTIO_F_RING_EVENT_IDX was negotiated.
    pub event_idx: bool,
}

/// A transport's saved registers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportState {
    /// The virtio device ID behind it (checked on restore).
    pub device_type: u32,
    /// DeviceFeaturesSel.
    pub device_features_sel: u32,
    /// DriverFeaturesSel.
    pub driver_features_sel: u32,
    /// Features the driver accepted.
    pub driver_features: u64,
    /// QueueSel.
    pub queue_sel: u32,
    /// Device status.
    pub status: u32,
    /// InterruptStatus bits not yet acknowledged.
    pub interrupt_status: u32,
    /// The driver had activated the device (DRIVER_OK); `queues` are then the
    /// device's live positions.
    #[serde(default)]
    pub activated: bool,
    /// Each queue's configuration.
    pub queues: Vec<QueueSnapshot>,
}

fn snapshot_of(q: &Queue) -> QueueSnapshot {
    QueueSnapshot {
        max_size: q.max_size(),
        size: q.size(),
        ready: q.ready(),
        desc_table: q.desc_table(),
        avail_ring: q.avail_ring(),
        used_ring: q.used_ring(),
        next_avail: q.next_avail(),
        next_used: q.next_used(),
        event_idx: q.event_idx_enabled(),
    }
}

fn queue_from(s: &QueueSnapshot) -> Result<Queue, String> {
    let state = virtio_queue::QueueState {
        max_size: s.max_size,
        next_avail: s.next_avail,
        next_used: s.next_used,
        event_idx_enabled: s.event_idx,
        size: s.size,
        ready: s.ready,
        desc_table: s.desc_table,
        avail_ring: s.avail_ring,
        used_ring: s.used_ring,
    };
    Queue::try_from(state).map_err(|e| format!("queue: {e:?}"))
}

impl MmioTransport {
    /// The registers a snapshot keeps, and the live queue positions of an activated
    /// device (refused for a device that cannot report them).
    pub fn save(&self) -> Result<TransportState, String> {
        let mut queues: Vec<QueueSnapshot> = self.queues.iter().map(snapshot_of).collect();
        if self.activated {
            let live = self
                .device
                .queue_states()
                .map_err(|e| format!("virtio device type {}: {e}", self.device.device_type()))?;
            for (saved, live) in queues.iter_mut().zip(live) {
                if let Some(q) = live {
                    saved.next_avail = q.next_avail;
                    saved.next_used = q.next_used;
                    saved.event_idx = q.event_idx_enabled;
                }
            }
        }
        Ok(TransportState {
            device_type: self.device.device_type(),
            device_features_sel: self.device_features_sel,
            driver_features_sel: self.driver_features_sel,
            driver_features: self.driver_features,
            queue_sel: self.queue_sel,
            status: self.status,
            interrupt_status: self.interrupt.status(),
            activated: self.activated,
            queues,
        })
    }

    /// Takes `state` back into a fresh transport of the same device type; a device
    /// the driver had activated is activated again from the saved queue positions.
    pub fn restore(&mut self, state: &TransportState) -> Result<(), String> {
        let device_type = self.device.device_type();
        if state.device_type != device_type {
            return Err(format!(
                "the snapshot has virtio device type {} where this VM has {device_type}",
                state.device_type
            ));
        }
        if state.queues.len() != self.queues.len() {
            return Err(format!(
                "virtio device type {device_type}: the snapshot has {} queues, the device {}",
                state.queues.len(),
                self.queues.len()
            ));
        }
        for (i, (saved, q)) in state.queues.iter().zip(&self.queues).enumerate() {
            if saved.max_size != q.max_size() {
                return Err(format!(
                    "virtio device type {device_type}: queue {i} holds {} entries, the saved one {}",
                    q.max_size(),
                    saved.max_size
                ));
            }
        }
        let queues = state
            .queues
            .iter()
            .map(queue_from)
            .collect::<Result<Vec<_>, _>>()?;
        self.queues = queues;
        self.device_features_sel = state.device_features_sel;
        self.driver_features_sel = state.driver_features_sel;
        self.driver_features = state.driver_features;
        self.queue_sel = state.queue_sel;
        self.status = state.status;
        self.interrupt.restore_status(state.interrupt_status);
        if state.activated {
            if !self.activate() {
                return Err(format!(
                    "virtio device type {device_type}: the saved queues do not fit guest memory"
                ));
            }
            self.activated = true;
            self.device.restored();
        }
        Ok(())
    }
}
