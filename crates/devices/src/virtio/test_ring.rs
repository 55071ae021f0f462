//! A split virtqueue laid out by hand in test memory, driven the way a guest driver
//! drives it: descriptors stored, chains published in the available ring, used
//! entries read back.

use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Device-writable descriptor flag.
pub const W: u16 = VRING_DESC_F_WRITE as u16;
/// Chained descriptor flag.
pub const N: u16 = VRING_DESC_F_NEXT as u16;

/// A descriptor.
pub fn desc(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
    RawDescriptor::from(Descriptor::new(addr, len, flags, next))
}

/// One ring: descriptor table at `base`, available ring at +4 KiB, used at +8 KiB.
pub struct Ring {
    /// Guest memory.
    pub mem: GuestMemoryMmap,
    /// Where the ring lives.
    pub base: u64,
    /// Number of entries.
    pub size: u16,
    /// Used entries already read by [`Ring::take_used`].
    seen: u16,
}

impl Ring {
    /// A ring of `size` entries at `base`.
    pub fn new(mem: &GuestMemoryMmap, base: u64, size: u16) -> Self {
        Self {
            mem: mem.clone(),
            base,
            size,
            seen: 0,
        }
    }

    fn avail(&self) -> u64 {
        self.base + 0x1000
    }

    fn used(&self) -> u64 {
        self.base + 0x2000
    }

    /// The device's view of the ring.
    pub fn queue(&self) -> Queue {
        let mut q = Queue::new(self.size).unwrap();
        q.set_desc_table_address(Some(self.base as u32), Some(0));
        q.set_avail_ring_address(Some(self.avail() as u32), Some(0));
        q.set_used_ring_address(Some(self.used() as u32), Some(0));
        q.set_ready(true);
        q
    }

    /// Stores `descs` at table index `first` on and publishes `first` as a chain.
    pub fn post(&self, first: u16, descs: &[RawDescriptor]) {
        for (i, d) in descs.iter().enumerate() {
            let addr = self.base + 16 * u64::from(first + i as u16);
            self.mem.write_obj(*d, GuestAddress(addr)).unwrap();
        }
        let idx: u16 = self.mem.read_obj(GuestAddress(self.avail() + 2)).unwrap();
        let slot = self.avail() + 4 + 2 * u64::from(idx % self.size);
        self.mem.write_obj(first, GuestAddress(slot)).unwrap();
        self.mem
            .write_obj(idx.wrapping_add(1), GuestAddress(self.avail() + 2))
            .unwrap();
    }

    /// Used entries (id, len) not read before.
    pub fn take_used(&mut self) -> Vec<(u32, u32)> {
        let n: u16 = self.mem.read_obj(GuestAddress(self.used() + 2)).unwrap();
        let mut out = Vec::new();
        while self.seen != n {
            let at = self.used() + 4 + 8 * u64::from(self.seen % self.size);
            let id: u32 = self.mem.read_obj(GuestAddress(at)).unwrap();
            let len: u32 = self.mem.read_obj(GuestAddress(at + 4)).unwrap();
            out.push((id, len));
            self.seen = self.seen.wrapping_add(1);
        }
        out
    }
}
