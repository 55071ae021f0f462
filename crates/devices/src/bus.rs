//! A bus maps address ranges to devices; the vCPU loop hands every port I/O or MMIO
//! exit to one, and never needs to know which devices exist.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A device on a bus: it reads and writes at an offset from its base address.
pub trait BusDevice: Send {
    /// Guest reads `data.len()` bytes at `offset`; fill `data`.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Guest writes `data` at `offset`.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// A device shared between the bus and its owner.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// Errors inserting a device.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// The range is empty or wraps around.
    #[error("invalid bus range {base:#x}+{len:#x}")]
    InvalidRange {
        /// Base address.
        base: u64,
        /// Length.
        len: u64,
    },
    /// The range overlaps a device already on the bus.
    #[error("bus range {base:#x}+{len:#x} overlaps another device")]
    Overlap {
        /// Base address.
        base: u64,
        /// Length.
        len: u64,
    },
}

#[derive(Clone)]
struct Entry {
    len: u64,
    device: SharedDevice,
}

/// An address space (port I/O or MMIO) with devices at non-overlapping ranges.
#[derive(Clone, Default)]
pub struct Bus {
    devices: BTreeMap<u64, Entry>,
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Places `device` at `[base, base + len)`.
    pub fn insert(&mut self, device: SharedDevice, base: u64, len: u64) -> Result<(), BusError> {
        let end = base
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or(BusError::InvalidRange { base, len })?;
        let overlaps_prev = self
            .devices
            .range(..end)
            .next_back()
            .is_some_and(|(b, e)| b + e.len > base);
        if overlaps_prev {
            return Err(BusError::Overlap { base, len });
        }
        self.devices.insert(base, Entry { len, device });
        Ok(())
    }

    fn resolve(&self, addr: u64, size: usize) -> Option<(u64, &SharedDevice)> {
        let (base, entry) = self.devices.range(..=addr).next_back()?;
        let offset = addr - base;
        let end = offset.checked_add(size as u64)?;
        (end <= entry.len).then_some((offset, &entry.device))
    }

    fn with_device<F: FnOnce(&mut dyn BusDevice, u64)>(
        &self,
        addr: u64,
        size: usize,
        f: F,
    ) -> bool {
        match self.resolve(addr, size) {
            Some((offset, device)) => {
                // A device whose lock was poisoned by a panic elsewhere is still usable
                // state-wise for our simple devices; keep serving the guest.
                let mut guard = device.lock().unwrap_or_else(|p| p.into_inner());
                f(&mut *guard, offset);
                true
            }
            None => false,
        }
    }

    /// Routes a read; returns false (and leaves `data` alone) if no device is there.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        self.with_device(addr, data.len(), |d, off| d.read(off, data))
    }

    /// Routes a write; returns false if no device is there.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        self.with_device(addr, data.len(), |d, off| d.write(off, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder {
        writes: Vec<(u64, Vec<u8>)>,
    }

    impl BusDevice for Recorder {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.writes.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn routes_by_offset_within_range() {
        let dev = Arc::new(Mutex::new(Recorder::default()));
        let mut bus = Bus::new();
        bus.insert(dev.clone(), 0x3f8, 8).unwrap();
        let mut b = [0u8; 1];
        assert!(bus.read(0x3fd, &mut b));
        assert_eq!(b[0], 5);
        assert!(bus.write(0x3f8, &[0x41]));
        assert_eq!(dev.lock().unwrap().writes, vec![(0, vec![0x41])]);
    }

    #[test]
    fn misses_outside_ranges_and_across_the_end() {
        let mut bus = Bus::new();
        bus.insert(Arc::new(Mutex::new(Recorder::default())), 0x1000, 0x10)
            .unwrap();
        let mut b = [0xaa; 4];
        assert!(!bus.read(0xfff, &mut b[..1]));
        assert!(!bus.read(0x1010, &mut b[..1]));
        assert!(!bus.read(0x100e, &mut b));
        assert_eq!(b, [0xaa; 4]);
        assert!(bus.read(0x100c, &mut b));
        assert!(!bus.write(u64::MAX, &[0]));
    }

    #[test]
    fn rejects_overlaps_and_empty_ranges() {
        let mut bus = Bus::new();
        let d = || -> SharedDevice { Arc::new(Mutex::new(Recorder::default())) };
        bus.insert(d(), 0x60, 5).unwrap();
        assert_eq!(
            bus.insert(d(), 0x64, 1),
            Err(BusError::Overlap { base: 0x64, len: 1 })
        );
        assert_eq!(
            bus.insert(d(), 0x50, 0x11),
            Err(BusError::Overlap {
                base: 0x50,
                len: 0x11
            })
        );
        assert!(bus.insert(d(), 0x65, 1).is_ok());
        assert!(bus.insert(d(), 0x50, 0x10).is_ok());
        assert!(matches!(
            bus.insert(d(), 0x10, 0),
            Err(BusError::InvalidRange { .. })
        ));
        assert!(matches!(
            bus.insert(d(), u64::MAX, 2),
            Err(BusError::InvalidRange { .. })
        ));
    }
}
