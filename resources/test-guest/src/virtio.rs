//! What every polling virtio-mmio (version 2) driver of the test guest shares: the
//! register window, feature negotiation, and a 16-entry split ring.

use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{fence, Ordering};

/// First virtio-mmio slot; slot n is at `MMIO_BASE + n * 0x1000`.
const MMIO_BASE: usize = 0xd000_1000;
const MAGIC: usize = 0x000;
const VERSION: usize = 0x004;
const DEVICE_ID: usize = 0x008;
const DEVICE_FEATURES: usize = 0x010;
const DEVICE_FEATURES_SEL: usize = 0x014;
const DRIVER_FEATURES: usize = 0x020;
const DRIVER_FEATURES_SEL: usize = 0x024;
const QUEUE_SEL: usize = 0x030;
const QUEUE_NUM_MAX: usize = 0x034;
const QUEUE_NUM: usize = 0x038;
const QUEUE_READY: usize = 0x044;
const QUEUE_NOTIFY: usize = 0x050;
const STATUS: usize = 0x070;
const QUEUE_DESC: usize = 0x080;
const QUEUE_AVAIL: usize = 0x090;
const QUEUE_USED: usize = 0x0a0;
/// Start of the device-specific configuration space.
pub const CONFIG: usize = 0x100;

const S_ACK: u32 = 1;
const S_DRIVER: u32 = 2;
const S_DRIVER_OK: u32 = 4;
const S_FEATURES_OK: u32 = 8;
/// VIRTIO_F_VERSION_1, in the high feature word.
const F_VERSION_1_HIGH: u32 = 1 << 0;
pub const DESC_NEXT: u16 = 1;
pub const DESC_WRITE: u16 = 2;

/// Entries in every ring the test guest sets up.
pub const QSIZE: usize = 16;

fn reg(base: usize, off: usize) -> *mut u32 {
    (base + off) as *mut u32
}

pub fn rd(base: usize, off: usize) -> u32 {
    // SAFETY: a register of the device's MMIO window, identity mapped.
    unsafe { read_volatile(reg(base, off)) }
}

pub fn wr(base: usize, off: usize, v: u32) {
    // SAFETY: as above.
    unsafe { write_volatile(reg(base, off), v) }
}

fn wr64(base: usize, off: usize, v: u64) {
    wr(base, off, v as u32);
    wr(base, off + 4, (v >> 32) as u32);
}

/// Resets the device in `slot`, checks it is a `device_id`, offers `features_low`
/// (plus VERSION_1) and sets FEATURES_OK; the register base if all of that worked.
pub fn negotiate(slot: usize, device_id: u32, features_low: u32) -> Option<usize> {
    let base = MMIO_BASE + slot * 0x1000;
    if rd(base, MAGIC) != 0x7472_6976 || rd(base, VERSION) != 2 || rd(base, DEVICE_ID) != device_id
    {
        return None;
    }
    wr(base, STATUS, 0);
    wr(base, STATUS, S_ACK);
    wr(base, STATUS, S_ACK | S_DRIVER);
    wr(base, DEVICE_FEATURES_SEL, 1);
    if rd(base, DEVICE_FEATURES) & F_VERSION_1_HIGH == 0 {
        return None;
    }
    wr(base, DEVICE_FEATURES_SEL, 0);
    let offered = rd(base, DEVICE_FEATURES);
    wr(base, DRIVER_FEATURES_SEL, 0);
    wr(base, DRIVER_FEATURES, features_low & offered);
    wr(base, DRIVER_FEATURES_SEL, 1);
    wr(base, DRIVER_FEATURES, F_VERSION_1_HIGH);
    wr(base, STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
    if rd(base, STATUS) & S_FEATURES_OK == 0 {
        return None;
    }
    Some(base)
}

/// Sets DRIVER_OK; true if the device accepted it.
pub fn driver_ok(base: usize) -> bool {
    wr(base, STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
    rd(base, STATUS) & S_DRIVER_OK != 0
}

pub fn notify(base: usize, queue: u32) {
    fence(Ordering::SeqCst);
    wr(base, QUEUE_NOTIFY, queue);
}

/// One split virtqueue of [`QSIZE`] entries, in its own pages.
#[repr(C, align(4096))]
pub struct Rings {
    desc: [[u64; 2]; QSIZE],
    _pad0: [u8; 4096 - QSIZE * 16],
    avail_flags: u16,
    avail_idx: u16,
    avail_ring: [u16; QSIZE],
    _pad1: [u8; 4096 - 4 - QSIZE * 2],
    used_flags: u16,
    used_idx: u16,
    used_ring: [[u32; 2]; QSIZE],
}

/// Zeroed rings, for statics.
pub const EMPTY_RINGS: Rings = Rings {
    desc: [[0; 2]; QSIZE],
    _pad0: [0; 4096 - QSIZE * 16],
    avail_flags: 0,
    avail_idx: 0,
    avail_ring: [0; QSIZE],
    _pad1: [0; 4096 - 4 - QSIZE * 2],
    used_flags: 0,
    used_idx: 0,
    used_ring: [[0; 2]; QSIZE],
};

impl Rings {
    /// Tells the device in `base` that queue `index` lives here; false if the device
    /// cannot have a queue of [`QSIZE`] entries there.
    pub fn attach(&self, base: usize, index: u32) -> bool {
        wr(base, QUEUE_SEL, index);
        if (rd(base, QUEUE_NUM_MAX) as usize) < QSIZE {
            return false;
        }
        wr(base, QUEUE_NUM, QSIZE as u32);
        wr64(base, QUEUE_DESC, self.desc.as_ptr() as u64);
        wr64(
            base,
            QUEUE_AVAIL,
            core::ptr::addr_of!(self.avail_flags) as u64,
        );
        wr64(
            base,
            QUEUE_USED,
            core::ptr::addr_of!(self.used_flags) as u64,
        );
        wr(base, QUEUE_READY, 1);
        true
    }

    /// Writes descriptor `i`.
    pub fn set_desc(&mut self, i: usize, addr: u64, len: u32, flags: u16, next: u16) {
        let d = [
            addr,
            u64::from(len) | (u64::from(flags) << 32) | (u64::from(next) << 48),
        ];
        // SAFETY: a plain store into the ring the device reads.
        unsafe { write_volatile(&mut self.desc[i % QSIZE], d) };
    }

    /// Makes the chain starting at descriptor `head` available.
    pub fn publish(&mut self, head: u16) {
        // SAFETY: plain loads and stores into the ring shared with the device, ordered
        // by fences so the device sees the entry before the index.
        unsafe {
            let idx = read_volatile(&self.avail_idx);
            write_volatile(&mut self.avail_ring[idx as usize % QSIZE], head);
            fence(Ordering::SeqCst);
            write_volatile(&mut self.avail_idx, idx.wrapping_add(1));
        }
    }

    /// The used entry after `*last` (id, len), advancing `*last`; None if the device
    /// has not returned one yet.
    pub fn take_used(&self, last: &mut u16) -> Option<(u32, u32)> {
        fence(Ordering::SeqCst);
        // SAFETY: plain loads from the ring the device writes.
        unsafe {
            if read_volatile(&self.used_idx) == *last {
                return None;
            }
            let e = read_volatile(&self.used_ring[*last as usize % QSIZE]);
            *last = last.wrapping_add(1);
            Some((e[0], e[1]))
        }
    }

    /// Entries the device returned that `last` has not taken.
    pub fn pending_used(&self, last: u16) -> u16 {
        fence(Ordering::SeqCst);
        // SAFETY: a plain load from the ring the device writes.
        unsafe { read_volatile(&self.used_idx).wrapping_sub(last) }
    }
}
