//! Packets for the guest (the RX queue): RSTs for unknown connections first, then the
//! connections with something owed, round robin: the handshake (REQUEST or RESPONSE),
//! stream data read from the host straight into the buffer (no more than the guest's
//! credit), a shutdown once the host end is done, a credit update.

use super::muxer::{Key, Muxer};
use super::packet::{Op, HDR_LEN, MAX_PKT_LEN, SHUTDOWN_RCV, SHUTDOWN_SEND};
use super::unix;
use crate::virtio::chain::Segments;
use std::io::ErrorKind;
use std::sync::atomic::Ordering;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;

impl Muxer {
    /// Fills the driver's RX buffers with what is owed; true if any was used.
    pub fn fill_rx(&mut self, mem: &GuestMemoryMmap, queue: &mut Queue, buf: &mut [u8]) -> bool {
        let mut used = false;
        while !self.rsts.is_empty() || !self.rx_work.is_empty() {
            let Some(chain) = queue.pop_descriptor_chain(mem) else {
                break;
            };
            let head = chain.head_index();
            let segments = match Segments::of(mem, chain, true) {
                Ok(s) if s.len >= HDR_LEN => s,
                _ => {
                    self.counters.bad_buffers.fetch_add(1, Ordering::Relaxed);
                    crate::guest_warn!("vsock: RX buffer {head} unusable");
                    if let Err(e) = queue.add_used(mem, head, 0) {
                        crate::guest_warn!("vsock: cannot return RX buffer {head}: {e:?}");
                        break;
                    }
                    used = true;
                    continue;
                }
            };
            let len = if let Some(rst) = self.rsts.pop_front() {
                segments.write_at(mem, 0, &rst.encode());
                HDR_LEN
            } else if let Some(len) = self.next_conn_packet(mem, &segments, buf) {
                len
            } else {
                // Nothing after all (host data was not there): the buffer goes back.
                queue.go_to_previous_position();
                break;
            };
            self.counters.rx_packets.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = queue.add_used(mem, head, len as u32) {
                crate::guest_warn!("vsock: cannot return RX buffer {head}: {e:?}");
                break;
            }
            used = true;
        }
        used
    }

    /// The next packet of the first connection on the work list that has one, written
    /// into `segments`; its length.
    fn next_conn_packet(
        &mut self,
        mem: &GuestMemoryMmap,
        segments: &Segments,
        buf: &mut [u8],
    ) -> Option<usize> {
        while let Some(&key) = self.rx_work.front() {
            let written = self.conn_packet(key, mem, segments, buf);
            self.rx_work.pop_front();
            match written {
                Some(len) => {
                    // Round robin: it may have more, after the others.
                    self.rx_work.push_back(key);
                    self.update_interest(key);
                    return Some(len);
                }
                None => {
                    if let Some(conn) = self.conns.get_mut(&key) {
                        conn.queued = false;
                    }
                    self.update_interest(key);
                }
            }
        }
        None
    }

    /// Writes connection `key`'s next packet for the guest; `None` if it owes none.
    fn conn_packet(
        &mut self,
        key: Key,
        mem: &GuestMemoryMmap,
        segments: &Segments,
        buf: &mut [u8],
    ) -> Option<usize> {
        let cid = self.guest_cid;
        let conn = self.conns.get_mut(&key)?;
        if conn.owe_handshake {
            conn.owe_handshake = false;
            let op = match conn.state {
                super::conn::State::Connecting => Op::Request,
                super::conn::State::Established => Op::Response,
            };
            segments.write_at(mem, 0, &conn.header(cid, op, 0, 0).encode());
            return Some(HDR_LEN);
        }
        if conn.host_readable && conn.may_send_data() && conn.peer_free() > 0 {
            let room = (segments.len - HDR_LEN)
                .min(conn.peer_free() as usize)
                .min(MAX_PKT_LEN)
                .min(buf.len());
            if room > 0 {
                match unix::recv(&conn.stream, &mut buf[..room], false) {
                    Ok(0) => {
                        conn.host_eof = true;
                        let rcv = if conn.host_hup { SHUTDOWN_RCV } else { 0 };
                        conn.owe_shutdown |= SHUTDOWN_SEND | rcv;
                    }
                    Ok(n) => {
                        let hdr = conn.header(cid, Op::Rw, n as u32, 0);
                        segments.write_at(mem, 0, &hdr.encode());
                        segments.write_at(mem, HDR_LEN, &buf[..n]);
                        conn.sent_to_guest(n as u32);
                        self.counters
                            .rx_bytes
                            .fetch_add(n as u64, Ordering::Relaxed);
                        return Some(HDR_LEN + n);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => conn.host_readable = false,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => {
                        log::debug!("vsock: connection {key:?}: host read failed: {e}");
                        conn.host_eof = true;
                        conn.host_hup = true;
                        conn.owe_shutdown |= SHUTDOWN_SEND | SHUTDOWN_RCV;
                    }
                }
            }
        }
        let flags = conn.owe_shutdown & !conn.sent_shutdown;
        if flags != 0 {
            conn.owe_shutdown = 0;
            conn.sent_shutdown |= flags;
            let hdr = conn.header(cid, Op::Shutdown, 0, conn.sent_shutdown);
            segments.write_at(mem, 0, &hdr.encode());
            return Some(HDR_LEN);
        }
        if conn.owe_credit {
            conn.owe_credit = false;
            segments.write_at(mem, 0, &conn.header(cid, Op::CreditUpdate, 0, 0).encode());
            return Some(HDR_LEN);
        }
        None
    }
}
