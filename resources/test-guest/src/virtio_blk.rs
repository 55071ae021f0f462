//! A polling virtio-mmio (version 2) virtio-blk driver, just enough to exercise
//! minivmm's device: feature negotiation, one 16-entry split queue, requests of three
//! descriptors (header, data, status), completion by polling the used ring.

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
const CONFIG: usize = 0x100;

const S_ACK: u32 = 1;
const S_DRIVER: u32 = 2;
const S_DRIVER_OK: u32 = 4;
const S_FEATURES_OK: u32 = 8;
const F_FLUSH_LOW: u32 = 1 << 9;
const F_VERSION_1_HIGH: u32 = 1 << 0;
const DESC_NEXT: u16 = 1;
const DESC_WRITE: u16 = 2;

/// Request types.
pub const T_IN: u32 = 0;
pub const T_OUT: u32 = 1;
pub const T_FLUSH: u32 = 4;
pub const T_GET_ID: u32 = 8;

const QSIZE: usize = 16;

#[repr(C, align(4096))]
struct Rings {
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

#[repr(C, align(16))]
struct Header {
    ty: u32,
    reserved: u32,
    sector: u64,
}

static mut RINGS: [Rings; 2] = unsafe { core::mem::zeroed() };
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

fn reg(base: usize, off: usize) -> *mut u32 {
    (base + off) as *mut u32
}

fn rd(base: usize, off: usize) -> u32 {
    // SAFETY: a register of the device's MMIO window, identity mapped.
    unsafe { read_volatile(reg(base, off)) }
}

fn wr(base: usize, off: usize, v: u32) {
    // SAFETY: as above.
    unsafe { write_volatile(reg(base, off), v) }
}

fn wr64(base: usize, off: usize, v: u64) {
    wr(base, off, v as u32);
    wr(base, off + 4, (v >> 32) as u32);
}

impl BlkDevice {
    /// Probes and negotiates slot `slot` (0 or 1); None if it is not a usable
    /// virtio-blk device.
    pub fn init(slot: usize) -> Option<Self> {
        let base = MMIO_BASE + slot * 0x1000;
        if rd(base, MAGIC) != 0x7472_6976 || rd(base, VERSION) != 2 || rd(base, DEVICE_ID) != 2 {
            return None;
        }
        wr(base, STATUS, 0);
        wr(base, STATUS, S_ACK);
        wr(base, STATUS, S_ACK | S_DRIVER);
        wr(base, DEVICE_FEATURES_SEL, 1);
        if rd(base, DEVICE_FEATURES) & F_VERSION_1_HIGH == 0 {
            return None;
        }
        wr(base, DRIVER_FEATURES_SEL, 0);
        wr(base, DRIVER_FEATURES, F_FLUSH_LOW);
        wr(base, DRIVER_FEATURES_SEL, 1);
        wr(base, DRIVER_FEATURES, F_VERSION_1_HIGH);
        wr(base, STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
        if rd(base, STATUS) & S_FEATURES_OK == 0 {
            return None;
        }
        wr(base, QUEUE_SEL, 0);
        if (rd(base, QUEUE_NUM_MAX) as usize) < QSIZE {
            return None;
        }
        // SAFETY: each slot owns one element of RINGS; the test guest is single-threaded.
        let rings = unsafe { core::ptr::addr_of_mut!(RINGS[slot]) };
        // SAFETY: `rings` points at a live static.
        let r = unsafe { &*rings };
        wr(base, QUEUE_NUM, QSIZE as u32);
        wr64(base, QUEUE_DESC, r.desc.as_ptr() as u64);
        wr64(base, QUEUE_AVAIL, core::ptr::addr_of!(r.avail_flags) as u64);
        wr64(base, QUEUE_USED, core::ptr::addr_of!(r.used_flags) as u64);
        wr(base, QUEUE_READY, 1);
        wr(base, STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
        if rd(base, STATUS) & S_DRIVER_OK == 0 {
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
        u64::from(rd(self.base, CONFIG)) | (u64::from(rd(self.base, CONFIG + 4)) << 32)
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
            HEADER = Header {
                ty,
                reserved: 0,
                sector,
            };
            STATUS_BYTE = 0xff;
            let r = &mut *self.rings;
            let data_flags = if device_writes { DESC_WRITE } else { 0 };
            let hdr = core::ptr::addr_of!(HEADER) as u64;
            let st = core::ptr::addr_of!(STATUS_BYTE) as u64;
            let desc = |addr: u64, len: u32, flags: u16, next: u16| {
                [
                    addr,
                    u64::from(len) | (u64::from(flags) << 32) | (u64::from(next) << 48),
                ]
            };
            let mut n = 0;
            write_volatile(&mut r.desc[n], desc(hdr, 16, DESC_NEXT, 1));
            n += 1;
            if !data.is_empty() {
                write_volatile(
                    &mut r.desc[n],
                    desc(
                        data.as_mut_ptr() as u64,
                        data.len() as u32,
                        data_flags | DESC_NEXT,
                        2,
                    ),
                );
                n += 1;
            }
            // Chain the status byte after whatever came before it.
            let mut prev = read_volatile(&r.desc[n - 1]);
            prev[1] = (prev[1] & 0x0000_ffff_ffff_ffff) | ((n as u64) << 48);
            write_volatile(&mut r.desc[n - 1], prev);
            write_volatile(&mut r.desc[n], desc(st, 1, DESC_WRITE, 0));
            let idx = read_volatile(&r.avail_idx);
            write_volatile(&mut r.avail_ring[idx as usize % QSIZE], 0);
            fence(Ordering::SeqCst);
            write_volatile(&mut r.avail_idx, idx.wrapping_add(1));
            fence(Ordering::SeqCst);
            wr(self.base, QUEUE_NOTIFY, 0);
            for _ in 0..10_000_000u32 {
                fence(Ordering::SeqCst);
                if read_volatile(&r.used_idx) != self.last_used {
                    let elem = read_volatile(&r.used_ring[self.last_used as usize % QSIZE]);
                    self.last_used = self.last_used.wrapping_add(1);
                    return Some((read_volatile(core::ptr::addr_of!(STATUS_BYTE)), elem[1]));
                }
            }
            None
        }
    }
}
