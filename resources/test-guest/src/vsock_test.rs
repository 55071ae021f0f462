//! `vsock`: the test guest drives virtio-vsock at ring level against host Unix
//! sockets (tests/vsock.rs runs the host side):
//! 1. a REQUEST to port 5001, where no host program listens, gets RST;
//! 2. a connection to port 5000: [`TOTAL`] bytes to the host, sent within the credit
//!    the device grants, then [`TOTAL`] bytes from the host, taken within the credit
//!    this guest grants ([`GUEST_BUF_ALLOC`], updated as it consumes); both streams
//!    are checksummed with [`Sum`] and printed;
//! 3. an unknown operation on that connection gets RST;
//! 4. a host program connects to port 6000 (`CONNECT 6000`), says "ping", gets "pong",
//!    and the guest shuts the connection down, which the device ends with RST.

use crate::hw::Serial;
use crate::virtio_vsock::{Hdr, VsockDevice, DATA};
use core::fmt::Write;

const HOST_CID: u64 = 2;
const OP_REQUEST: u16 = 1;
const OP_RESPONSE: u16 = 2;
const OP_RST: u16 = 3;
const OP_SHUTDOWN: u16 = 4;
const OP_RW: u16 = 5;
const OP_CREDIT_UPDATE: u16 = 6;
/// Bytes each way on port 5000.
pub const TOTAL: usize = 4 << 20;
/// The receive buffer this guest announces.
pub const GUEST_BUF_ALLOC: u32 = 64 * 1024;

/// A word-wise checksum of a byte stream, however it is cut into packets: each
/// little-endian 64-bit word w does acc = (acc ^ w) * FNV prime. tests/vsock.rs has
/// the same.
pub struct Sum {
    acc: u64,
    part: u64,
    bytes: u32,
}

impl Sum {
    pub const fn new() -> Self {
        Self {
            acc: 0xcbf2_9ce4_8422_2325,
            part: 0,
            bytes: 0,
        }
    }

    fn word(&mut self, w: u64) {
        self.acc = (self.acc ^ w).wrapping_mul(0x0000_0100_0000_01b3);
    }

    pub fn feed(&mut self, data: &[u8]) {
        let mut i = 0;
        while self.bytes != 0 && i < data.len() {
            self.part |= u64::from(data[i]) << (8 * self.bytes);
            self.bytes += 1;
            i += 1;
            if self.bytes == 8 {
                self.word(self.part);
                self.part = 0;
                self.bytes = 0;
            }
        }
        let mut words = data[i..].chunks_exact(8);
        for w in &mut words {
            self.word(u64::from_le_bytes([
                w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7],
            ]));
        }
        for &b in words.remainder() {
            self.part |= u64::from(b) << (8 * self.bytes);
            self.bytes += 1;
        }
    }
}

/// Word `k` of the guest's stream to the host.
pub fn guest_word(k: u64) -> u64 {
    k.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5555
}

/// One connection's counters, from the guest's side.
struct Conn {
    cid: u64,
    local: u32,
    peer: u32,
    tx_cnt: u32,
    peer_buf_alloc: u32,
    peer_fwd_cnt: u32,
    fwd_cnt: u32,
}

impl Conn {
    fn hdr(&self, op: u16) -> Hdr {
        Hdr {
            src_cid: self.cid,
            dst_cid: HOST_CID,
            src_port: self.local,
            dst_port: self.peer,
            type_: 1,
            op,
            buf_alloc: GUEST_BUF_ALLOC,
            fwd_cnt: self.fwd_cnt,
            ..Hdr::default()
        }
    }

    fn credit_from(&mut self, h: &Hdr) {
        self.peer_buf_alloc = h.buf_alloc;
        self.peer_fwd_cnt = h.fwd_cnt;
    }

    fn peer_free(&self) -> u32 {
        self.peer_buf_alloc
            .saturating_sub(self.tx_cnt.wrapping_sub(self.peer_fwd_cnt))
    }
}

macro_rules! fail {
    ($out:expr, $($arg:tt)+) => {{
        let _ = writeln!($out, $($arg)+);
        return;
    }};
}

/// Waits for a packet; (header, first 4 data bytes, length).
fn next(dev: &mut VsockDevice) -> Option<(Hdr, [u8; 4])> {
    dev.recv(|h, d| {
        let mut head = [0u8; 4];
        let n = d.len().min(4);
        head[..n].copy_from_slice(&d[..n]);
        (*h, head)
    })
}

pub fn vsock(out: &mut Serial) {
    let Some(mut dev) = VsockDevice::find() else {
        fail!(out, "vsock: no device");
    };
    let cid = dev.cid;
    let _ = writeln!(out, "vsock: cid={cid}");
    let mut c = Conn {
        cid,
        local: 1000,
        peer: 5001,
        tx_cnt: 0,
        peer_buf_alloc: 0,
        peer_fwd_cnt: 0,
        fwd_cnt: 0,
    };
    dev.send(&c.hdr(OP_REQUEST), 0, |_| {});
    match next(&mut dev) {
        Some((h, _)) if h.op == OP_RST && h.dst_port == 1000 && h.src_port == 5001 => {
            let _ = writeln!(out, "vsock: port 5001 refused with rst");
        }
        _ => fail!(out, "vsock: no rst for port 5001"),
    }
    c.local = 1234;
    c.peer = 5000;
    dev.send(&c.hdr(OP_REQUEST), 0, |_| {});
    match next(&mut dev) {
        Some((h, _)) if h.op == OP_RESPONSE && h.dst_port == 1234 => c.credit_from(&h),
        _ => fail!(out, "vsock: port 5000 did not answer"),
    }
    let _ = writeln!(
        out,
        "vsock: connected to 5000 buf_alloc={}",
        c.peer_buf_alloc
    );
    if !send_stream(&mut dev, &mut c, out) || !recv_stream(&mut dev, &mut c, out) {
        return;
    }
    let bad = Hdr { op: 99, ..c.hdr(0) };
    dev.send(&bad, 0, |_| {});
    match next(&mut dev) {
        Some((h, _)) if h.op == OP_RST && h.dst_port == 1234 => {
            let _ = writeln!(out, "vsock: bad op answered with rst");
        }
        _ => fail!(out, "vsock: no rst for a bad op"),
    }
    host_connection(&mut dev, cid, out);
}

/// Sends [`TOTAL`] bytes of [`guest_word`]s, never past the device's credit.
fn send_stream(dev: &mut VsockDevice, c: &mut Conn, out: &mut Serial) -> bool {
    let mut sum = Sum::new();
    let mut sent = 0usize;
    let mut waits = 0u32;
    while sent < TOTAL {
        while (c.peer_free() as usize) < DATA {
            waits += 1;
            match next(dev) {
                Some((h, _)) if h.op == OP_CREDIT_UPDATE && h.dst_port == c.local => {
                    c.credit_from(&h)
                }
                _ => {
                    let _ = writeln!(out, "vsock: no credit after {sent} bytes");
                    return false;
                }
            }
        }
        let first = (sent / 8) as u64;
        let ok = dev.send(&c.hdr(OP_RW), DATA, |b| {
            for (j, w) in b.chunks_exact_mut(8).enumerate() {
                w.copy_from_slice(&guest_word(first + j as u64).to_le_bytes());
            }
            sum.feed(b);
        });
        if !ok {
            let _ = writeln!(out, "vsock: TX stalled after {sent} bytes");
            return false;
        }
        sent += DATA;
        c.tx_cnt = c.tx_cnt.wrapping_add(DATA as u32);
    }
    let _ = writeln!(
        out,
        "vsock: sent {sent} bytes sum={:016x} credit_waits={waits}",
        sum.acc
    );
    true
}

/// Takes [`TOTAL`] bytes, announcing credit as they are consumed.
fn recv_stream(dev: &mut VsockDevice, c: &mut Conn, out: &mut Serial) -> bool {
    let mut sum = Sum::new();
    let mut got = 0usize;
    let mut most_in_flight = 0u32;
    let mut announced = c.fwd_cnt;
    while got < TOTAL {
        let local = c.local;
        let r = dev.recv(|h, d| {
            if h.op == OP_RW && h.dst_port == local {
                sum.feed(d);
            }
            (*h, d.len())
        });
        let Some((h, n)) = r else {
            let _ = writeln!(out, "vsock: RX stalled after {got} bytes");
            return false;
        };
        if h.op != OP_RW {
            if h.op == OP_CREDIT_UPDATE {
                continue;
            }
            let _ = writeln!(out, "vsock: op {} during the stream", h.op);
            return false;
        }
        got += n;
        // Bytes the device had sent past what this guest had announced consumed.
        let in_flight = (got as u32).wrapping_sub(announced);
        most_in_flight = most_in_flight.max(in_flight);
        c.fwd_cnt = c.fwd_cnt.wrapping_add(n as u32);
        if c.fwd_cnt.wrapping_sub(announced) >= GUEST_BUF_ALLOC / 4 {
            announced = c.fwd_cnt;
            dev.send(&c.hdr(OP_CREDIT_UPDATE), 0, |_| {});
        }
    }
    let _ = writeln!(
        out,
        "vsock: received {got} bytes sum={:016x} most_in_flight={most_in_flight}",
        sum.acc
    );
    true
}

/// Accepts the host's connection to port 6000, answers "ping" with "pong", shuts down.
fn host_connection(dev: &mut VsockDevice, cid: u64, out: &mut Serial) {
    let _ = writeln!(out, "vsock: listening on 6000");
    let req = match next(dev) {
        Some((h, _)) if h.op == OP_REQUEST && h.dst_port == 6000 && h.src_cid == HOST_CID => h,
        _ => fail!(out, "vsock: no request for port 6000"),
    };
    let c = Conn {
        cid,
        local: 6000,
        peer: req.src_port,
        tx_cnt: 0,
        peer_buf_alloc: req.buf_alloc,
        peer_fwd_cnt: req.fwd_cnt,
        fwd_cnt: 0,
    };
    dev.send(&c.hdr(OP_RESPONSE), 0, |_| {});
    match next(dev) {
        Some((h, d)) if h.op == OP_RW && h.len == 4 && &d == b"ping" => {}
        _ => fail!(out, "vsock: no ping from the host"),
    }
    dev.send(&c.hdr(OP_RW), 4, |b| b.copy_from_slice(b"pong"));
    let _ = writeln!(out, "vsock: host said ping");
    let shut = Hdr {
        flags: 3,
        ..c.hdr(OP_SHUTDOWN)
    };
    dev.send(&shut, 0, |_| {});
    match next(dev) {
        Some((h, _)) if h.op == OP_RST && h.dst_port == 6000 && h.src_port == c.peer => {
            let _ = writeln!(out, "vsock: done");
        }
        _ => fail!(out, "vsock: no rst after shutdown"),
    }
}
