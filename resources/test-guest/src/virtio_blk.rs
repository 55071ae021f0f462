//! A polling virtio-mmio (version 2) virtio-blk driver, just enough to exercise
//! minivmm's device: feature negotiation, one 16-entry split queue, requests of three
//! descriptors (header, data, status), completion by polling the used ring.

use crate::virtio::{self, Rings, DESC_NEXT, DESC_WRITE, EMPTY_RINGS};
use core::ptr::{read_volatile, write_volatile};

const DEVICE_ID_BLOCK: u32 = 2;
const F_FLUSH_LOW: u32 = 1 << 9;

/// Request types.
pub const T_IN: u32 = 0;
pub const T_OUT: u32 = 1;
pub const T_FLUSH: u32 = 4;
pub const T_GET_ID: u32 = 8;

#[repr(C, align(16))]
struct Header {
    ty: u32,
    reserved: u32,
    sector: u64,
}

static mut RINGS: [Rings; 2] = [EMPTY_RINGS, EMPTY_RINGS];
static mut HEADER: Header = Header {
    ty: 0,
    reserved: 0,
    sector: 0,
};
static mut STATUS_BYTE: u8 = 0xff;

/// A negotiated virtio-blk device in slot `slot`.
pub struct BlkDevice {
    base: usize,
    rings: *mut Rings,
    last_used: u16,
}

impl BlkDevice {
    /// Probes and negotiates slot `slot` (0 or 1); None if it is not a usable
    /// virtio-blk device.
    pub fn init(slot: usize) -> Option<Self> {
        let base = virtio::negotiate(slot, DEVICE_ID_BLOCK, F_FLUSH_LOW)?;
        // SAFETY: each slot owns one element of RINGS; the test guest is single-threaded.
        let rings = unsafe { core::ptr::addr_of_mut!(RINGS[slot]) };
        // SAFETY: `rings` points at a live static.
        if !unsafe { &*rings }.attach(base, 0) || !virtio::driver_ok(base) {
            return None;
        }
        Some(Self {
            base,
            rings,
            last_used: 0,
        })
    }

    /// Capacity in sectors, from the configuration space.
    pub fn capacity(&self) -> u64 {
        u64::from(virtio::rd(self.base, virtio::CONFIG))
            | (u64::from(virtio::rd(self.base, virtio::CONFIG + 4)) << 32)
    }

    /// Submits one request and polls for its completion; returns (status, used length),
    /// or None if the device did not answer.
    pub fn request(
        &mut self,
        ty: u32,
        sector: u64,
        data: &mut [u8],
        device_writes: bool,
    ) -> Option<(u8, u32)> {
        // SAFETY: the statics are only touched here, one request at a time.
        unsafe {
            write_volatile(
                core::ptr::addr_of_mut!(HEADER),
                Header {
                    ty,
                    reserved: 0,
                    sector,
                },
            );
            write_volatile(core::ptr::addr_of_mut!(STATUS_BYTE), 0xff);
        }
        // SAFETY: `rings` points at this device's static rings; single-threaded.
        let r = unsafe { &mut *self.rings };
        let hdr = core::ptr::addr_of!(HEADER) as u64;
        let st = core::ptr::addr_of!(STATUS_BYTE) as u64;
        let data_flags = if device_writes { DESC_WRITE } else { 0 };
        if data.is_empty() {
            r.set_desc(0, hdr, 16, DESC_NEXT, 1);
            r.set_desc(1, st, 1, DESC_WRITE, 0);
        } else {
            r.set_desc(0, hdr, 16, DESC_NEXT, 1);
            let len = data.len() as u32;
            r.set_desc(1, data.as_mut_ptr() as u64, len, data_flags | DESC_NEXT, 2);
            r.set_desc(2, st, 1, DESC_WRITE, 0);
        }
        r.publish(0);
        virtio::notify(self.base, 0);
        for _ in 0..10_000_000u32 {
            if let Some((_, len)) = r.take_used(&mut self.last_used) {
                // SAFETY: the device wrote the status byte before returning the chain.
                let status = unsafe { read_volatile(core::ptr::addr_of!(STATUS_BYTE)) };
                return Some((status, len));
            }
        }
        None
    }
}
