//! Packets from the guest (the TX queue): each chain is checked (direction, range,
//! header, length within the chain and within [`MAX_PKT_LEN`]) and dispatched to its
//! connection. A hostile driver gets RST and a counter: a malformed packet, an
//! unknown operation or socket type, credit that lies, more connections than the cap.

use super::conn::{State, Violation};
use super::muxer::{Key, Muxer};
use super::packet::{Header, Op, HDR_LEN, MAX_PKT_LEN, TYPE_STREAM};
use super::HOST_CID;
use crate::virtio::chain::Segments;
use std::sync::atomic::Ordering;
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

impl Muxer {
    /// Takes every packet the driver queued; true if any chain was returned.
    pub fn process_tx(&mut self, mem: &GuestMemoryMmap, queue: &mut Queue, buf: &mut [u8]) -> bool {
        let mut used = false;
        while let Some(chain) = queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            match read_packet(mem, Segments::of(mem, chain, false), buf) {
                Ok((hdr, len)) => {
                    self.counters.tx_packets.fetch_add(1, Ordering::Relaxed);
                    self.guest_packet(&hdr, &buf[..len]);
                }
                Err(hdr) => {
                    self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                    crate::guest_warn!("vsock: malformed TX packet in chain {head}");
                    if let Some(h) = hdr {
                        self.reject(&h);
                    }
                }
            }
            if let Err(e) = queue.add_used(mem, head, 0) {
                crate::guest_warn!("vsock: cannot return TX chain {head}: {e:?}");
                break;
            }
            used = true;
        }
        used
    }

    /// Answers a packet that cannot be taken: RST, ending its connection if it has one
    /// (an RST itself is never answered).
    fn reject(&mut self, hdr: &Header) {
        if hdr.op == Op::Rst as u16 {
            return;
        }
        let key = (hdr.dst_port, hdr.src_port);
        if self.conns.contains_key(&key) {
            self.reset_conn(key);
        } else {
            self.send_rst(key.0, key.1);
        }
    }

    fn guest_packet(&mut self, hdr: &Header, data: &[u8]) {
        if hdr.src_cid != self.guest_cid || hdr.dst_cid != HOST_CID {
            // Not addressed from this guest to the host: nowhere to answer.
            self.counters.bad_packets.fetch_add(1, Ordering::Relaxed);
            crate::guest_warn!(
                "vsock: packet from CID {} to CID {} dropped",
                hdr.src_cid,
                hdr.dst_cid
            );
            return;
        }
        let Some(op) = hdr.op().filter(|_| hdr.type_ == TYPE_STREAM) else {
            self.counters.bad_packets.fetch_add(1, Ordering::Relaxed);
            crate::guest_warn!("vsock: unknown op {} or type {}", hdr.op, hdr.type_);
            self.reject(hdr);
            return;
        };
        let key: Key = (hdr.dst_port, hdr.src_port);
        if !self.conns.contains_key(&key) {
            self.packet_without_connection(op, key);
            return;
        }
        if let Err(v) = self.connection_packet(key, op, hdr, data) {
            if let Violation::HostGone(_) = v {
                log::debug!("vsock: connection {key:?} reset: {v}");
            } else {
                self.counters
                    .credit_violations
                    .fetch_add(1, Ordering::Relaxed);
                crate::guest_warn!("vsock: connection {key:?} reset: {v}");
            }
            self.reset_conn(key);
            return;
        }
        self.update_interest(key);
    }

    fn packet_without_connection(&mut self, op: Op, key: Key) {
        match op {
            Op::Request => {
                if !self.connect_guest(key.0, key.1) {
                    self.send_rst(key.0, key.1);
                }
            }
            Op::Rst => {}
            _ => self.send_rst(key.0, key.1),
        }
    }

    fn connection_packet(
        &mut self,
        key: Key,
        op: Op,
        hdr: &Header,
        data: &[u8],
    ) -> Result<(), Violation> {
        let Some(conn) = self.conns.get_mut(&key) else {
            return Ok(());
        };
        if op == Op::Rst {
            self.forget_conn(key);
            return Ok(());
        }
        conn.update_peer_credit(hdr)?;
        match (op, conn.state) {
            (Op::Response, State::Connecting) => {
                conn.state = State::Established;
                let answer = format!("OK {}\n", conn.local_port);
                conn.answer_host(answer.as_bytes());
                conn.flush()?;
                // Data the host sent after its CONNECT line may flow now.
                conn.host_readable = true;
                self.queue_rx(key);
            }
            (Op::Rw, State::Established) => {
                if conn.guest_shutdown & super::packet::SHUTDOWN_SEND != 0 {
                    return Err(Violation::Credit);
                }
                self.counters
                    .tx_bytes
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                conn.from_guest(data)?;
                if conn.owe_credit {
                    self.queue_rx(key);
                }
            }
            (Op::CreditUpdate, _) => {
                // The new credit may let host data flow again.
                if conn.host_readable {
                    self.queue_rx(key);
                }
            }
            (Op::CreditRequest, _) => {
                conn.owe_credit = true;
                self.queue_rx(key);
            }
            (Op::Shutdown, State::Established) => {
                let done = conn
                    .guest_shut(hdr.flags)
                    .map_err(|e| Violation::HostGone(e.kind()))?;
                if done {
                    self.reset_conn(key);
                }
            }
            (op, state) => {
                // A REQUEST for a live connection, a RESPONSE out of turn, data
                // before the guest accepted: the connection cannot go on.
                self.counters.bad_packets.fetch_add(1, Ordering::Relaxed);
                crate::guest_warn!("vsock: {op:?} in state {state:?} on {key:?}");
                self.reset_conn(key);
            }
        }
        Ok(())
    }
}

/// Reads a packet's header and payload into `buf`; on failure the header, if the
/// chain held one, so that its connection can be reset.
fn read_packet(
    mem: &GuestMemoryMmap,
    segments: Result<Segments, crate::virtio::chain::ChainError>,
    buf: &mut [u8],
) -> Result<(Header, usize), Option<Header>> {
    let segments = segments.map_err(|_| None)?;
    let mut raw = [0u8; HDR_LEN];
    if segments.read_at(mem, 0, &mut raw) != HDR_LEN {
        return Err(None);
    }
    let hdr = Header::decode(&raw);
    let len = hdr.len as usize;
    if len > MAX_PKT_LEN || len > buf.len() || segments.len - HDR_LEN < len {
        return Err(Some(hdr));
    }
    if segments.read_at(mem, HDR_LEN, &mut buf[..len]) != len {
        return Err(Some(hdr));
    }
    Ok((hdr, len))
}
