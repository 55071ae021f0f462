//! A polling virtio-net driver: VERSION_1, MAC, STATUS and MRG_RXBUF negotiated, a
//! 16-entry RX ring of 2 KiB buffers (one descriptor each) and a 16-entry TX ring,
//! one descriptor per frame (virtio-net header, then the frame).

use crate::virtio::{self, Rings, DESC_WRITE, EMPTY_RINGS, QSIZE};
use core::ptr::{addr_of_mut, read_volatile};

const DEVICE_ID_NET: u32 = 1;
const F_MAC: u32 = 1 << 5;
const F_MRG_RXBUF: u32 = 1 << 15;
const F_STATUS: u32 = 1 << 16;
/// virtio-net header (virtio 1.x).
pub const HDR: usize = 12;
/// Size of each RX and TX buffer.
pub const BUF: usize = 2048;

#[repr(C, align(4096))]
struct Buffers([[u8; BUF]; QSIZE]);

static mut RX_RINGS: Rings = EMPTY_RINGS;
static mut TX_RINGS: Rings = EMPTY_RINGS;
static mut RX_BUFS: Buffers = Buffers([[0; BUF]; QSIZE]);
static mut TX_BUFS: Buffers = Buffers([[0; BUF]; QSIZE]);

/// The virtio-net device in slot 0, negotiated, with every RX buffer posted.
pub struct NetDevice {
    base: usize,
    rx_last: u16,
    tx_last: u16,
    tx_sent: u32,
    tx_done: u32,
    /// The device's MAC address.
    pub mac: [u8; 6],
    /// Link status from the configuration space.
    pub status: u16,
}

fn rx_rings() -> &'static mut Rings {
    // SAFETY: the single-threaded guest has one net device and these are its rings.
    unsafe { &mut *addr_of_mut!(RX_RINGS) }
}

fn tx_rings() -> &'static mut Rings {
    // SAFETY: as above.
    unsafe { &mut *addr_of_mut!(TX_RINGS) }
}

fn rx_buf(slot: usize) -> *mut u8 {
    // SAFETY: an element of a static; only the address is taken.
    unsafe { addr_of_mut!(RX_BUFS.0[slot % QSIZE]) as *mut u8 }
}

fn tx_buf(slot: usize) -> *mut u8 {
    // SAFETY: as above.
    unsafe { addr_of_mut!(TX_BUFS.0[slot % QSIZE]) as *mut u8 }
}

impl NetDevice {
    /// Probes and negotiates slot `slot`; None if it is not a usable virtio-net device.
    pub fn init(slot: usize) -> Option<Self> {
        let base = virtio::negotiate(slot, DEVICE_ID_NET, F_MAC | F_STATUS | F_MRG_RXBUF)?;
        if !rx_rings().attach(base, 0) || !tx_rings().attach(base, 1) || !virtio::driver_ok(base) {
            return None;
        }
        let mut mac = [0u8; 6];
        for (i, b) in mac.iter_mut().enumerate() {
            // SAFETY: a byte of the device's configuration space.
            *b = unsafe { read_volatile((base + virtio::CONFIG + i) as *const u8) };
        }
        // SAFETY: as above, the 16-bit status after the MAC.
        let status = unsafe { read_volatile((base + virtio::CONFIG + 6) as *const u16) };
        let dev = Self {
            base,
            rx_last: 0,
            tx_last: 0,
            tx_sent: 0,
            tx_done: 0,
            mac,
            status,
        };
        for slot in 0..QSIZE {
            dev.post_rx(slot);
        }
        virtio::notify(base, 0);
        Some(dev)
    }

    fn post_rx(&self, slot: usize) {
        let rx = rx_rings();
        rx.set_desc(slot, rx_buf(slot) as u64, BUF as u32, DESC_WRITE, 0);
        rx.publish(slot as u16);
    }

    /// Collects finished transmissions.
    fn reap_tx(&mut self) {
        while tx_rings().take_used(&mut self.tx_last).is_some() {
            self.tx_done += 1;
        }
    }

    /// Waits for a free TX slot and returns it (slots are used in turn); None if the
    /// device returned nothing for a long time.
    pub fn next_tx_slot(&mut self) -> Option<usize> {
        let mut spins = 0u32;
        while self.tx_sent - self.tx_done >= QSIZE as u32 {
            self.reap_tx();
            spins += 1;
            if spins > 100_000_000 {
                return None;
            }
        }
        Some(self.tx_sent as usize % QSIZE)
    }

    /// Writes a zero header and `frame` into TX buffer `slot`; returns the length.
    pub fn fill_tx(&mut self, slot: usize, frame: &[u8]) -> usize {
        let len = (HDR + frame.len()).min(BUF);
        // SAFETY: the TX buffer of a slot the device does not hold.
        let buf = unsafe { core::slice::from_raw_parts_mut(tx_buf(slot), BUF) };
        buf[..HDR].fill(0);
        buf[HDR..len].copy_from_slice(&frame[..len - HDR]);
        len
    }

    /// Hands TX buffer `slot` (`len` bytes, header included) to the device and
    /// notifies it.
    pub fn submit_tx(&mut self, slot: usize, len: usize) {
        let tx = tx_rings();
        tx.set_desc(slot, tx_buf(slot) as u64, len as u32, 0, 0);
        tx.publish(slot as u16);
        self.tx_sent += 1;
        virtio::notify(self.base, 1);
    }

    /// Queues `frame` (without header) and notifies the device; waits for a free slot
    /// first. False if the device returned nothing for a long time.
    pub fn send(&mut self, frame: &[u8]) -> bool {
        let Some(slot) = self.next_tx_slot() else {
            return false;
        };
        let len = self.fill_tx(slot, frame);
        self.submit_tx(slot, len);
        true
    }

    /// Waits until the device has taken every queued frame.
    pub fn flush(&mut self) -> bool {
        for _ in 0..100_000_000u32 {
            self.reap_tx();
            if self.tx_done == self.tx_sent {
                return true;
            }
        }
        false
    }

    /// Received frames waiting (used RX buffers not yet taken).
    pub fn rx_waiting(&self) -> u16 {
        rx_rings().pending_used(self.rx_last)
    }

    /// The next received frame, header stripped: (slot, bytes). Give the slot back
    /// with [`NetDevice::recycle`].
    pub fn recv(&mut self) -> Option<(usize, &'static [u8])> {
        let (id, len) = rx_rings().take_used(&mut self.rx_last)?;
        let slot = id as usize % QSIZE;
        let len = (len as usize).clamp(HDR, BUF);
        // SAFETY: the device finished writing this buffer; it stays ours until recycled.
        let buf = unsafe { core::slice::from_raw_parts(rx_buf(slot), len) };
        Some((slot, &buf[HDR..]))
    }

    /// The header `num_buffers` of the frame in `slot`.
    pub fn num_buffers(&self, slot: usize) -> u16 {
        // SAFETY: bytes 10-11 of a received buffer.
        unsafe { read_volatile(rx_buf(slot).add(10) as *const u16) }
    }

    /// Gives RX buffer `slot` back to the device and notifies it.
    pub fn recycle(&mut self, slot: usize) {
        self.post_rx(slot);
        virtio::notify(self.base, 0);
    }
}
