//! Network tests of the test guest, against a host that watches the tap with a raw
//! socket. Frames use EtherType 0x88b5 (local experimental); the host's frames carry
//! their sequence number and a pattern both sides can recompute.
//!
//! `net`: sends [`TX_COUNT`] frames of several sizes; then, with all 16 RX buffers
//! posted, says "rx ready", waits until the host's burst of [`RX_COUNT`] frames has
//! filled the ring (back-pressure: the rest must wait in minivmm and the tap), and
//! takes frames one by one, checking length, content and order.
//! `net-tx-bench`: sends `net.count=` frames of `net.size=` bytes as fast as it can
//! (the frames are written once; each send only hands a buffer to the device).
//! `net-rx-bench`: counts 0x88b5 frames until one with EtherType 0x88b6 arrives, and
//! acknowledges every [`ACK_EVERY`] frames with a 0x88b7 frame holding the count, so
//! the host can keep its window inside the tap's queue.

use crate::hw::Serial;
use crate::param;
use crate::virtio_net::NetDevice;
use core::fmt::Write;

const ETHERTYPE_TEST: u16 = 0x88b5;
const ETHERTYPE_END: u16 = 0x88b6;
const ETHERTYPE_ACK: u16 = 0x88b7;
/// Frames between acknowledgements in `net-rx-bench`.
pub const ACK_EVERY: u64 = 64;
/// Frames the guest sends in `net`.
pub const TX_COUNT: u16 = 32;
/// Frames the host sends in `net`: four rings' worth.
pub const RX_COUNT: u16 = 64;
const TX_SIZES: [usize; 6] = [60, 64, 128, 512, 1000, 1514];
const SPIN_LIMIT: u64 = 2_000_000_000;

/// Length of guest frame `seq` (Ethernet header included).
fn tx_len(seq: u16) -> usize {
    TX_SIZES[usize::from(seq) % TX_SIZES.len()]
}

/// Byte `i` of guest frame `seq` (from the EtherType on: the payload pattern).
fn tx_byte(seq: u16, i: usize) -> u8 {
    (i as u16).wrapping_mul(3).wrapping_add(seq) as u8
}

/// Length of host frame `seq`: 60 to 1514 bytes.
fn rx_len(seq: u16) -> usize {
    60 + (usize::from(seq) * 23) % 1455
}

/// Byte `i` of host frame `seq`'s payload (after the sequence number).
fn rx_byte(seq: u16, i: usize) -> u8 {
    ((i as u16).wrapping_mul(5).wrapping_add(seq) as u8) ^ 0xa5
}

fn frame(buf: &mut [u8], mac: &[u8; 6], ethertype: u16, seq: u16, len: usize) -> usize {
    buf[..6].fill(0xff);
    buf[6..12].copy_from_slice(mac);
    buf[12..14].copy_from_slice(&ethertype.to_be_bytes());
    buf[14..16].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in buf[16..len].iter_mut().enumerate() {
        *b = tx_byte(seq, i);
    }
    len
}

fn ethertype(f: &[u8]) -> u16 {
    if f.len() < 14 {
        return 0;
    }
    u16::from_be_bytes([f[12], f[13]])
}

fn seq_of(f: &[u8]) -> u16 {
    if f.len() < 16 {
        return u16::MAX;
    }
    u16::from_be_bytes([f[14], f[15]])
}

fn open(out: &mut Serial) -> Option<NetDevice> {
    let dev = NetDevice::init(0);
    match &dev {
        Some(d) => {
            let m = d.mac;
            let _ = writeln!(
                out,
                "net: mac={:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} status={}",
                m[0], m[1], m[2], m[3], m[4], m[5], d.status
            );
        }
        None => {
            let _ = writeln!(out, "net: no device");
        }
    }
    dev
}

/// The `net` test.
pub fn net(out: &mut Serial) {
    let Some(mut dev) = open(out) else {
        return;
    };
    let mut buf = [0u8; 1514];
    let mut ok = true;
    for seq in 0..TX_COUNT {
        let len = frame(&mut buf, &dev.mac, ETHERTYPE_TEST, seq, tx_len(seq));
        ok &= dev.send(&buf[..len]);
    }
    ok &= dev.flush();
    let _ = writeln!(out, "net: tx sent={TX_COUNT} ok={ok}");

    let _ = writeln!(out, "net: rx ready");
    let mut spins = 0u64;
    while dev.rx_waiting() < 16 && spins < SPIN_LIMIT {
        spins += 1;
        core::hint::spin_loop();
    }
    let _ = writeln!(out, "net: rx ring filled={}", dev.rx_waiting());
    let (mut next, mut bad, mut other, mut merged) = (0u16, 0u32, 0u32, 0u32);
    spins = 0;
    while next < RX_COUNT && spins < SPIN_LIMIT {
        let Some((slot, f)) = dev.recv() else {
            spins += 1;
            continue;
        };
        spins = 0;
        if dev.num_buffers(slot) != 1 {
            merged += 1;
        }
        if ethertype(f) != ETHERTYPE_TEST {
            other += 1;
        } else {
            let seq = seq_of(f);
            let good = seq == next
                && f.len() == rx_len(seq)
                && f[16..]
                    .iter()
                    .enumerate()
                    .all(|(i, b)| *b == rx_byte(seq, i));
            if !good {
                bad += 1;
                let _ = writeln!(
                    out,
                    "net: bad frame seq={seq} len={} want seq={next}",
                    f.len()
                );
            }
            next = seq.wrapping_add(1);
        }
        dev.recycle(slot);
    }
    let _ = writeln!(
        out,
        "net: rx frames={next} bad={bad} other={other} num_buffers_not_1={merged}"
    );
}

/// The `net-tx-bench` test.
pub fn tx_bench(out: &mut Serial, cmdline: &[u8]) {
    let size = param(cmdline, b"net.size=").unwrap_or(64).clamp(60, 1514) as usize;
    let count = param(cmdline, b"net.count=").unwrap_or(10_000);
    let Some(mut dev) = open(out) else {
        return;
    };
    let mut buf = [0u8; 1514];
    let len = frame(&mut buf, &dev.mac, ETHERTYPE_TEST, 0, size);
    let mut lens = [0usize; crate::virtio::QSIZE];
    for (slot, l) in lens.iter_mut().enumerate() {
        *l = dev.fill_tx(slot, &buf[..len]);
    }
    let _ = writeln!(out, "net-bench: tx start size={size} count={count}");
    let mut sent = 0u64;
    while sent < count {
        let Some(slot) = dev.next_tx_slot() else {
            break;
        };
        dev.submit_tx(slot, lens[slot]);
        sent += 1;
    }
    dev.flush();
    let _ = writeln!(out, "net-bench: tx done sent={sent}");
}

/// The `net-rx-bench` test.
pub fn rx_bench(out: &mut Serial) {
    let Some(mut dev) = open(out) else {
        return;
    };
    let mut ack = [0u8; 60];
    let _ = writeln!(out, "net: rx ready");
    let (mut frames, mut bytes) = (0u64, 0u64);
    loop {
        let Some((slot, f)) = dev.recv() else {
            core::hint::spin_loop();
            continue;
        };
        let t = ethertype(f);
        if t == ETHERTYPE_TEST {
            frames += 1;
            bytes += f.len() as u64;
        }
        dev.recycle(slot);
        if t == ETHERTYPE_END {
            break;
        }
        if t == ETHERTYPE_TEST && frames % ACK_EVERY == 0 {
            let len = frame(&mut ack, &dev.mac, ETHERTYPE_ACK, 0, 60);
            ack[16..24].copy_from_slice(&frames.to_be_bytes());
            dev.send(&ack[..len]);
        }
    }
    let _ = writeln!(out, "net-bench: rx frames={frames} bytes={bytes}");
}
