//! One vsock stream connection between a guest socket and a host Unix stream: its
//! state, what it owes the guest (control packets), and credit-based flow control in
//! both directions (virtio 1.2 §5.10.6.3).
//!
//! Guest to host: the device advertises `buf_alloc` = [`CONN_BUF_SIZE`] and counts in
//! `fwd_cnt` what it has written to the host stream. Bytes the host has not read yet
//! wait here, never more than the credit given, so a slow host reader stops the guest
//! rather than growing host memory; a guest that sends past its credit is reset.
//! Host to guest: the device sends no more than the guest's `buf_alloc` less what is
//! in flight, and stops reading the host stream while that is zero.

use super::packet::{Header, Op, SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM};
use super::unix;
use std::collections::VecDeque;
use std::io::{self, ErrorKind};
use std::os::unix::net::UnixStream;

/// Receive buffer the device offers each connection (guest to host bytes in flight).
pub const CONN_BUF_SIZE: u32 = 256 * 1024;
/// Forwarded bytes after which the guest is told of its new credit unasked.
pub const CREDIT_UPDATE_THRESHOLD: u32 = CONN_BUF_SIZE / 4;

/// Where a connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Host-initiated: the guest has not answered the REQUEST yet.
    Connecting,
    /// Data may flow.
    Established,
}

/// Why a connection must be reset.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// The guest sent more than the credit it was given.
    #[error("guest sent past its credit")]
    Credit,
    /// The guest claimed to have consumed more than it was sent.
    #[error("guest's fwd_cnt is ahead of what it was sent")]
    FwdCnt,
    /// The host end is gone (its reader closed) with data still to deliver.
    #[error("host stream closed: {0}")]
    HostGone(ErrorKind),
}

/// One connection.
pub struct Connection {
    /// The host end.
    pub stream: UnixStream,
    /// Port on the host side (CID 2).
    pub local_port: u32,
    /// Port on the guest side.
    pub peer_port: u32,
    /// Where it stands.
    pub state: State,
    /// A REQUEST (host-initiated) or RESPONSE (guest-initiated) is owed to the guest.
    pub owe_handshake: bool,
    /// A credit update is owed to the guest (it asked, or much was forwarded).
    pub owe_credit: bool,
    /// Shutdown flags owed to the guest (0: none).
    pub owe_shutdown: u32,
    /// Flags of the shutdown already sent to the guest.
    pub sent_shutdown: u32,
    /// The guest's shutdown flags so far.
    pub guest_shutdown: u32,
    /// The host stream reported input (data, end of stream, hang-up) not yet taken.
    pub host_readable: bool,
    /// The host end sends no more.
    pub host_eof: bool,
    /// The host end hung up entirely.
    pub host_hup: bool,
    /// Listed in the device's RX work queue.
    pub queued: bool,
    /// Events it is registered for in the backend's epoll (0: not registered).
    pub interest: u32,
    /// Guest bytes (and a handshake answer first) the host has not read yet.
    to_host: VecDeque<u8>,
    /// How many bytes at the front of `to_host` are the handshake answer, not guest data.
    preface: usize,
    rx_cnt: u32,
    fwd_cnt: u32,
    fwd_cnt_told: u32,
    tx_cnt: u32,
    peer_buf_alloc: u32,
    peer_fwd_cnt: u32,
}

impl Connection {
    /// A connection on `stream` between host port `local_port` and guest port
    /// `peer_port`.
    pub fn new(stream: UnixStream, local_port: u32, peer_port: u32, state: State) -> Self {
        Self {
            stream,
            local_port,
            peer_port,
            state,
            owe_handshake: true,
            owe_credit: false,
            owe_shutdown: 0,
            sent_shutdown: 0,
            guest_shutdown: 0,
            host_readable: false,
            host_eof: false,
            host_hup: false,
            queued: false,
            interest: 0,
            to_host: VecDeque::new(),
            preface: 0,
            rx_cnt: 0,
            fwd_cnt: 0,
            fwd_cnt_told: 0,
            tx_cnt: 0,
            peer_buf_alloc: 0,
            peer_fwd_cnt: 0,
        }
    }

    /// A header from the host side to the guest, carrying this side's credit.
    pub fn header(&mut self, guest_cid: u64, op: Op, len: u32, flags: u32) -> Header {
        self.fwd_cnt_told = self.fwd_cnt;
        Header {
            src_cid: super::HOST_CID,
            dst_cid: guest_cid,
            src_port: self.local_port,
            dst_port: self.peer_port,
            len,
            type_: TYPE_STREAM,
            op: op as u16,
            flags,
            buf_alloc: CONN_BUF_SIZE,
            fwd_cnt: self.fwd_cnt,
        }
    }

    /// Takes the guest's credit from a header it sent.
    pub fn update_peer_credit(&mut self, hdr: &Header) -> Result<(), Violation> {
        let in_flight = self.tx_cnt.wrapping_sub(self.peer_fwd_cnt);
        if hdr.fwd_cnt.wrapping_sub(self.peer_fwd_cnt) > in_flight {
            return Err(Violation::FwdCnt);
        }
        self.peer_buf_alloc = hdr.buf_alloc;
        self.peer_fwd_cnt = hdr.fwd_cnt;
        Ok(())
    }

    /// Bytes the guest can take now.
    pub fn peer_free(&self) -> u32 {
        let in_flight = self.tx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    /// Counts `n` bytes sent to the guest.
    pub fn sent_to_guest(&mut self, n: u32) {
        self.tx_cnt = self.tx_cnt.wrapping_add(n);
    }

    /// Takes stream data from the guest: written to the host at once where it can
    /// be, the rest kept (within the credit given).
    pub fn from_guest(&mut self, data: &[u8]) -> Result<(), Violation> {
        let held = self.to_host.len() - self.preface;
        if held + data.len() > CONN_BUF_SIZE as usize {
            return Err(Violation::Credit);
        }
        self.rx_cnt = self.rx_cnt.wrapping_add(data.len() as u32);
        let mut sent = 0;
        if self.to_host.is_empty() {
            sent = match unix::send(&self.stream, data) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => 0,
                Err(e) if e.kind() == ErrorKind::Interrupted => 0,
                Err(e) => return Err(Violation::HostGone(e.kind())),
            };
            self.forwarded(sent);
        }
        self.to_host.extend(&data[sent..]);
        Ok(())
    }

    /// Queues the answer to a host `CONNECT` (`OK <port>\n`) ahead of any data.
    pub fn answer_host(&mut self, text: &[u8]) {
        self.to_host.extend(text);
        self.preface += text.len();
    }

    fn forwarded(&mut self, n: usize) {
        self.fwd_cnt = self.fwd_cnt.wrapping_add(n as u32);
        if self.fwd_cnt.wrapping_sub(self.fwd_cnt_told) >= CREDIT_UPDATE_THRESHOLD {
            self.owe_credit = true;
        }
    }

    /// Writes what the host stream takes of the held bytes.
    pub fn flush(&mut self) -> Result<(), Violation> {
        while !self.to_host.is_empty() {
            let (front, _) = self.to_host.as_slices();
            let n = match unix::send(&self.stream, front) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(Violation::HostGone(e.kind())),
            };
            self.to_host.drain(..n);
            let preface = n.min(self.preface);
            self.preface -= preface;
            self.forwarded(n - preface);
        }
        Ok(())
    }

    /// Nothing waits for the host reader.
    pub fn flushed(&self) -> bool {
        self.to_host.is_empty()
    }

    /// The guest may be sent stream data now.
    pub fn may_send_data(&self) -> bool {
        self.state == State::Established
            && self.guest_shutdown & SHUTDOWN_RCV == 0
            && self.sent_shutdown & SHUTDOWN_SEND == 0
            && !self.host_eof
    }

    /// The epoll events the connection wants now: input while data may flow to the
    /// guest and it has credit, output while bytes wait for the host reader.
    pub fn wanted_events(&self) -> u32 {
        let mut events = 0;
        if self.may_send_data() && self.peer_free() > 0 {
            events |= libc::EPOLLIN as u32;
        }
        if !self.to_host.is_empty() {
            events |= libc::EPOLLOUT as u32;
        }
        events
    }

    /// The guest shut down (`flags`); true when the connection is to end now (both
    /// ways shut and everything delivered to the host).
    pub fn guest_shut(&mut self, flags: u32) -> io::Result<bool> {
        self.guest_shutdown |= flags & (SHUTDOWN_RCV | SHUTDOWN_SEND);
        self.shutdown_host_write_if_done()?;
        Ok(self.guest_shutdown == SHUTDOWN_RCV | SHUTDOWN_SEND && self.flushed())
    }

    /// The connection's flow-control state, for a log line.
    pub fn describe(&self) -> String {
        format!(
            "state={:?} rx_cnt={} fwd_cnt={} fwd_cnt_told={} held={} tx_cnt={} \
             peer_buf_alloc={} peer_fwd_cnt={} peer_free={} host_readable={} host_eof={} \
             host_hup={} queued={} interest={:#x} owe_handshake={} owe_credit={} \
             owe_shutdown={} sent_shutdown={} guest_shutdown={}",
            self.state,
            self.rx_cnt,
            self.fwd_cnt,
            self.fwd_cnt_told,
            self.to_host.len(),
            self.tx_cnt,
            self.peer_buf_alloc,
            self.peer_fwd_cnt,
            self.peer_free(),
            self.host_readable,
            self.host_eof,
            self.host_hup,
            self.queued,
            self.interest,
            self.owe_handshake,
            self.owe_credit,
            self.owe_shutdown,
            self.sent_shutdown,
            self.guest_shutdown
        )
    }

    /// Once the guest sends no more and all it sent is delivered, the host reader
    /// sees the end of the stream.
    pub fn shutdown_host_write_if_done(&self) -> io::Result<()> {
        if self.guest_shutdown & SHUTDOWN_SEND != 0 && self.flushed() {
            match self.stream.shutdown(std::net::Shutdown::Write) {
                Err(e) if e.kind() != ErrorKind::NotConnected => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Connection, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        (Connection::new(a, 1024, 5000, State::Established), b)
    }

    #[test]
    fn credit_both_ways() {
        let (mut c, _host) = pair();
        let mut h = Header {
            buf_alloc: 1000,
            fwd_cnt: 0,
            ..Default::default()
        };
        c.update_peer_credit(&h).unwrap();
        assert_eq!(c.peer_free(), 1000);
        c.sent_to_guest(600);
        assert_eq!(c.peer_free(), 400);
        h.fwd_cnt = 600;
        c.update_peer_credit(&h).unwrap();
        assert_eq!(c.peer_free(), 1000);
        // Claiming to have consumed bytes never sent is a lie.
        h.fwd_cnt = 601;
        assert_eq!(c.update_peer_credit(&h), Err(Violation::FwdCnt));
        // A smaller buffer than what is in flight leaves no credit, not a wrap.
        c.sent_to_guest(500);
        h.fwd_cnt = 600;
        h.buf_alloc = 100;
        c.update_peer_credit(&h).unwrap();
        assert_eq!(c.peer_free(), 0);
    }

    #[test]
    fn a_slow_host_reader_holds_the_guest_to_its_credit() {
        let (mut c, host) = pair();
        let chunk = vec![7u8; 64 * 1024];
        let mut sent = 0usize;
        // The socket buffer fills first, then the connection's own buffer.
        while c.from_guest(&chunk).is_ok() {
            sent += chunk.len();
            assert!(sent < 64 << 20, "never limited");
        }
        assert!(!c.flushed());
        assert!(c.wanted_events() & libc::EPOLLOUT as u32 != 0);
        // Reading on the host side frees room; the flush forwards it and owes credit.
        host.set_nonblocking(true).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0usize;
        loop {
            match (&host).read_some(&mut buf) {
                0 => {
                    c.flush().unwrap();
                    if c.flushed() {
                        got += (&host).drain_all(&mut buf);
                        break;
                    }
                }
                n => got += n,
            }
        }
        assert_eq!(got, sent);
        assert!(c.owe_credit);
    }

    trait ReadSome {
        fn read_some(self, buf: &mut [u8]) -> usize;
        fn drain_all(self, buf: &mut [u8]) -> usize;
    }

    impl ReadSome for &UnixStream {
        fn read_some(self, buf: &mut [u8]) -> usize {
            use std::io::Read;
            let mut s = self;
            s.read(buf).unwrap_or(0)
        }
        fn drain_all(self, buf: &mut [u8]) -> usize {
            let mut total = 0;
            loop {
                match self.read_some(buf) {
                    0 => return total,
                    n => total += n,
                }
            }
        }
    }

    #[test]
    fn handshake_answer_is_not_guest_data() {
        let (mut c, host) = pair();
        c.answer_host(b"OK 1024\n");
        c.flush().unwrap();
        use std::io::Read;
        let mut buf = [0u8; 8];
        (&host).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"OK 1024\n");
        let h = c.header(3, Op::CreditUpdate, 0, 0);
        assert_eq!(h.fwd_cnt, 0);
        assert_eq!(h.buf_alloc, CONN_BUF_SIZE);
        assert_eq!(
            (h.src_cid, h.dst_cid, h.src_port, h.dst_port),
            (2, 3, 1024, 5000)
        );
    }

    #[test]
    fn full_shutdown_ends_once_flushed() {
        let (mut c, _host) = pair();
        assert!(!c.guest_shut(SHUTDOWN_SEND).unwrap());
        assert!(c.guest_shut(SHUTDOWN_RCV).unwrap());
        assert!(!c.may_send_data());
    }
}
