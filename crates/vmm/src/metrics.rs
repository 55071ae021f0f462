//! A running VM's metrics: each vCPU's exits by kind, each device's counters, and
//! memory (guest size, the guest pages the host holds, the process's RSS). Read from
//! any thread ([`crate::VmController::metrics`], the API's `GET /metrics`) while the
//! VM runs; the counters are atomics the vCPU and device threads bump.

use devices::counters::CounterSet;
use devices::virtio::VirtioDevice;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use vcpu::ExitCounters;
use virtio_bindings::virtio_ids::{VIRTIO_ID_BLOCK, VIRTIO_ID_NET, VIRTIO_ID_RNG, VIRTIO_ID_VSOCK};
use vm_memory::GuestMemoryMmap;

/// A VM's metrics at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Per vCPU, in index order.
    pub vcpus: Vec<VcpuMetrics>,
    /// Per device, by name (`block0`, `net0`, `vsock`, `rng`): counter name to value.
    pub devices: BTreeMap<String, BTreeMap<String, u64>>,
    /// Memory.
    pub memory: MemoryMetrics,
}

/// One vCPU's exits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VcpuMetrics {
    /// The vCPU index.
    pub id: u8,
    /// Exits by kind: `io_in`, `io_out`, `mmio_read`, `mmio_write`, `interrupted`,
    /// `other`.
    pub exits: BTreeMap<String, u64>,
}

/// Memory figures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryMetrics {
    /// Guest RAM size.
    pub guest_bytes: u64,
    /// Guest RAM the host holds (pages touched by the guest or the VMM; after a
    /// restore, the memory file's pages loaded so far), from mincore(2); `None` once
    /// the VM's memory is gone.
    pub guest_resident_bytes: Option<u64>,
    /// The whole process's resident set (every VM in it, and the program).
    pub process_rss_bytes: Option<u64>,
}

/// Guest memory for mincore, released by the event loop before it unmaps the memory.
#[derive(Clone, Default)]
pub(crate) struct MemoryProbe(Arc<Mutex<Option<GuestMemoryMmap>>>);

impl MemoryProbe {
    pub(crate) fn new(memory: &GuestMemoryMmap) -> Self {
        Self(Arc::new(Mutex::new(Some(memory.clone()))))
    }

    /// Resident guest bytes, while the memory exists.
    fn resident(&self) -> Option<u64> {
        let memory = self.0.lock().unwrap_or_else(|p| p.into_inner());
        memory.as_ref().map(crate::memory::resident_bytes)
    }

    /// Drops the probe's reference (the VM is ending).
    pub(crate) fn release(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// Releases the probe when dropped: the event loop holds one beside guest memory,
/// declared before it, so the probe lets go first however the loop ends (a normal
/// exit, an abandoned start, a panic).
pub(crate) struct ProbeRelease(pub(crate) MemoryProbe);

impl Drop for ProbeRelease {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// Where a VM's metrics come from.
#[derive(Clone, Default)]
pub(crate) struct MetricsSource {
    vcpus: Vec<Arc<ExitCounters>>,
    devices: Vec<(String, Arc<dyn CounterSet>)>,
    pub(crate) memory: MemoryProbe,
    guest_bytes: u64,
}

impl MetricsSource {
    pub(crate) fn new(memory: &GuestMemoryMmap) -> Self {
        Self {
            memory: MemoryProbe::new(memory),
            guest_bytes: crate::memory::total_bytes(memory),
            ..Self::default()
        }
    }

    /// Adds a device's counters (if it keeps any) under its name.
    pub(crate) fn add_device(&mut self, device: &dyn VirtioDevice) {
        let Some(counters) = device.counters() else {
            return;
        };
        let kind = match device.device_type() {
            VIRTIO_ID_BLOCK => "block",
            VIRTIO_ID_NET => "net",
            VIRTIO_ID_VSOCK => "vsock",
            VIRTIO_ID_RNG => "rng",
            virtiofs::VIRTIO_ID_FS => "fs",
            _ => "device",
        };
        let name = device_name(kind, self.devices.iter().map(|(n, _)| n.as_str()));
        self.devices.push((name, counters));
    }

    pub(crate) fn add_vcpu(&mut self, counters: Arc<ExitCounters>) {
        self.vcpus.push(counters);
    }

    /// The metrics now.
    pub(crate) fn read(&self) -> Metrics {
        let map = |values: &[(&'static str, u64)]| {
            values
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<BTreeMap<_, _>>()
        };
        Metrics {
            vcpus: self
                .vcpus
                .iter()
                .enumerate()
                .map(|(id, c)| VcpuMetrics {
                    id: id as u8,
                    exits: map(&c.values()),
                })
                .collect(),
            devices: self
                .devices
                .iter()
                .map(|(name, c)| (name.clone(), map(&c.values())))
                .collect(),
            memory: MemoryMetrics {
                guest_bytes: self.guest_bytes,
                guest_resident_bytes: self.memory.resident(),
                process_rss_bytes: process_rss(),
            },
        }
    }
}

/// `kind` alone for the only device of its kind that has no number (vsock, rng);
/// `kind` + index for disks and network interfaces.
fn device_name<'a>(kind: &str, taken: impl Iterator<Item = &'a str>) -> String {
    if kind == "vsock" || kind == "rng" {
        return kind.to_string();
    }
    let n = taken
        .filter(|t| {
            t.strip_prefix(kind)
                .is_some_and(|rest| rest.parse::<u32>().is_ok())
        })
        .count();
    format!("{kind}{n}")
}

/// The process's resident set from /proc/self/statm (pages, second field).
fn process_rss() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * crate::memory::PAGE_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_numbered_per_kind() {
        let taken = ["block0", "net0", "block1"];
        assert_eq!(device_name("block", taken.iter().copied()), "block2");
        assert_eq!(device_name("net", taken.iter().copied()), "net1");
        assert_eq!(device_name("vsock", taken.iter().copied()), "vsock");
    }

    #[test]
    fn memory_probe_reports_until_released() {
        let mem = GuestMemoryMmap::from_ranges(&[(vm_memory::GuestAddress(0), 1 << 20)]).unwrap();
        let source = MetricsSource::new(&mem);
        let m = source.read();
        assert_eq!(m.memory.guest_bytes, 1 << 20);
        assert!(m.memory.guest_resident_bytes.is_some());
        assert!(m.memory.process_rss_bytes.unwrap() > 0);
        source.memory.release();
        assert_eq!(source.read().memory.guest_resident_bytes, None);
    }
}
