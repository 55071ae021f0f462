//! A polling virtio-vsock driver: the device found in any slot (ID 19), its guest CID
//! from the configuration space, a 16-entry RX ring of buffers that hold a header and
//! 4 KiB of data (one descriptor each), a 16-entry TX ring (one descriptor per packet)
//! and an event ring left empty.

use crate::virtio::{self, Rings, DESC_WRITE, EMPTY_RINGS, QSIZE};
use core::ptr::{addr_of_mut, read_volatile};

const DEVICE_ID_VSOCK: u32 = 19;
/// Packet header size.
pub const HDR: usize = 44;
/// Data bytes per buffer.
pub const DATA: usize = 4096;
const BUF: usize = HDR + DATA + 4;
/// Give up waiting after this many polls.
pub const SPIN_LIMIT: u32 = 20_000_000;

#[repr(C, align(4096))]
struct Buffers([[u8; BUF]; QSIZE]);

static mut RX_RINGS: Rings = EMPTY_RINGS;
static mut TX_RINGS: Rings = EMPTY_RINGS;
static mut EV_RINGS: Rings = EMPTY_RINGS;
static mut RX_BUFS: Buffers = Buffers([[0; BUF]; QSIZE]);
static mut TX_BUFS: Buffers = Buffers([[0; BUF]; QSIZE]);

fn rings(which: usize) -> &'static mut Rings {
    // SAFETY: the single-threaded guest has one vsock device and these are its rings;
    // callers hold one reference at a time.
    unsafe {
        match which {
            0 => &mut *addr_of_mut!(RX_RINGS),
            1 => &mut *addr_of_mut!(TX_RINGS),
            _ => &mut *addr_of_mut!(EV_RINGS),
        }
    }
}

fn buf(tx: bool, slot: usize) -> *mut u8 {
    // SAFETY: an element of a static; only the address is taken.
    unsafe {
        if tx {
            addr_of_mut!(TX_BUFS.0[slot % QSIZE]) as *mut u8
        } else {
            addr_of_mut!(RX_BUFS.0[slot % QSIZE]) as *mut u8
        }
    }
}

/// A packet header (type is always stream).
#[derive(Clone, Copy, Default)]
pub struct Hdr {
    pub src_cid: u64,
    pub dst_cid: u64,
    pub src_port: u32,
    pub dst_port: u32,
    pub len: u32,
    pub type_: u16,
    pub op: u16,
    pub flags: u32,
    pub buf_alloc: u32,
    pub fwd_cnt: u32,
}

impl Hdr {
    fn write(&self, b: &mut [u8]) {
        b[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        b[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        b[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        b[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        b[24..28].copy_from_slice(&self.len.to_le_bytes());
        b[28..30].copy_from_slice(&self.type_.to_le_bytes());
        b[30..32].copy_from_slice(&self.op.to_le_bytes());
        b[32..36].copy_from_slice(&self.flags.to_le_bytes());
        b[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        b[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
    }

    fn read(b: &[u8]) -> Self {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| u64::from(u32_at(i)) | (u64::from(u32_at(i + 4)) << 32);
        Self {
            src_cid: u64_at(0),
            dst_cid: u64_at(8),
            src_port: u32_at(16),
            dst_port: u32_at(20),
            len: u32_at(24),
            type_: u16::from_le_bytes([b[28], b[29]]),
            op: u16::from_le_bytes([b[30], b[31]]),
            flags: u32_at(32),
            buf_alloc: u32_at(36),
            fwd_cnt: u32_at(40),
        }
    }
}

/// The vsock device, negotiated, with every RX buffer posted.
pub struct VsockDevice {
    base: usize,
    rx_last: u16,
    tx_last: u16,
    tx_sent: u32,
    tx_done: u32,
    /// The guest's CID, from the configuration space.
    pub cid: u64,
}

impl VsockDevice {
    /// The first vsock device in slots 0-7; None if there is none or it is unusable.
    pub fn find() -> Option<Self> {
        let base = (0..8).find_map(|slot| virtio::negotiate(slot, DEVICE_ID_VSOCK, 0))?;
        for q in 0..3 {
            if !rings(q).attach(base, q as u32) {
                return None;
            }
        }
        if !virtio::driver_ok(base) {
            return None;
        }
        // SAFETY: the 64-bit guest_cid of the device's configuration space.
        let cid = unsafe { read_volatile((base + virtio::CONFIG) as *const u64) };
        let dev = Self {
            base,
            rx_last: 0,
            tx_last: 0,
            tx_sent: 0,
            tx_done: 0,
            cid,
        };
        for slot in 0..QSIZE {
            dev.post_rx(slot);
        }
        virtio::notify(base, 0);
        Some(dev)
    }

    fn post_rx(&self, slot: usize) {
        let rx = rings(0);
        rx.set_desc(slot, buf(false, slot) as u64, BUF as u32, DESC_WRITE, 0);
        rx.publish(slot as u16);
    }

    /// Sends `hdr` with `len` bytes of data that `fill` writes; waits for a free TX
    /// slot first. False if the device returned nothing for a long time.
    pub fn send(&mut self, hdr: &Hdr, len: usize, fill: impl FnOnce(&mut [u8])) -> bool {
        let mut spins = 0u32;
        while self.tx_sent - self.tx_done >= QSIZE as u32 {
            while rings(1).take_used(&mut self.tx_last).is_some() {
                self.tx_done += 1;
            }
            spins += 1;
            if spins > SPIN_LIMIT {
                return false;
            }
        }
        let slot = self.tx_sent as usize % QSIZE;
        let len = len.min(DATA);
        // SAFETY: the TX buffer of a slot the device does not hold.
        let b = unsafe { core::slice::from_raw_parts_mut(buf(true, slot), BUF) };
        let mut h = *hdr;
        h.len = len as u32;
        h.write(&mut b[..HDR]);
        fill(&mut b[HDR..HDR + len]);
        let tx = rings(1);
        tx.set_desc(slot, b.as_ptr() as u64, (HDR + len) as u32, 0, 0);
        tx.publish(slot as u16);
        self.tx_sent += 1;
        virtio::notify(self.base, 1);
        true
    }

    /// Waits for the next packet and hands its header and data to `take`; the buffer
    /// then goes back to the device. None if none came for a long time.
    pub fn recv<R>(&mut self, take: impl FnOnce(&Hdr, &[u8]) -> R) -> Option<R> {
        let mut spins = 0u32;
        let (id, len) = loop {
            if let Some(e) = rings(0).take_used(&mut self.rx_last) {
                break e;
            }
            spins += 1;
            if spins > SPIN_LIMIT {
                return None;
            }
        };
        let slot = id as usize % QSIZE;
        let len = (len as usize).clamp(HDR, BUF);
        // SAFETY: the device finished writing this buffer; it is ours until reposted.
        let b = unsafe { core::slice::from_raw_parts(buf(false, slot), len) };
        let hdr = Hdr::read(&b[..HDR]);
        let data_len = (hdr.len as usize).min(len - HDR);
        let r = take(&hdr, &b[HDR..HDR + data_len]);
        self.post_rx(slot);
        virtio::notify(self.base, 0);
        Some(r)
    }
}
