//! The host side of virtio-vsock on Unix sockets, in Firecracker's convention: a host
//! program connects to the VM's socket and sends `CONNECT <port>\n` (answered `OK
//! <host port>\n` once the guest accepts); a guest connecting to port P reaches the
//! listener at `<socket>_P`.
//!
//! Every host descriptor (the listener, connections still in their `CONNECT` line,
//! connection streams) sits in the muxer's own epoll (level-triggered), whose
//! descriptor the VMM's event loop watches: no thread of its own, no busy waits.
//! Guest packets come in through [`Muxer::process_tx`] (guest.rs), packets for the
//! guest go out through [`Muxer::fill_rx`] (rx.rs).

use super::conn::{Connection, State};
use super::packet::{Header, Op, TYPE_STREAM};
use super::{unix, VsockCounters, VsockError, HOST_CID};
use std::collections::{HashMap, VecDeque};
use std::io::ErrorKind;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

/// Connections per VM (host- and guest-initiated, and host ones still in their
/// `CONNECT` line), by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Longest `CONNECT <port>\n` line.
const MAX_CONNECT_LINE: usize = 32;
/// RSTs for unknown connections waiting for RX buffers; more are dropped (a flood).
const MAX_PENDING_RSTS: usize = 1024;
/// First host port given to host-initiated connections (Firecracker's choice too).
const FIRST_LOCAL_PORT: u32 = 1 << 30;
/// Events taken from the epoll per wait.
const EVENT_BATCH: usize = 64;

/// A connection's key: (host port, guest port).
pub type Key = (u32, u32);

/// The Unix-socket side of one vsock device.
pub struct Muxer {
    pub(super) guest_cid: u64,
    path: PathBuf,
    listener: UnixListener,
    epoll: Epoll,
    pub(super) conns: HashMap<Key, Connection>,
    by_fd: HashMap<RawFd, Key>,
    handshakes: HashMap<RawFd, UnixStream>,
    pub(super) rx_work: VecDeque<Key>,
    pub(super) rsts: VecDeque<Header>,
    next_local_port: u32,
    max_conns: usize,
    pub(super) counters: Arc<VsockCounters>,
    /// The driver is ready: connections may be made.
    pub(super) active: bool,
}

/// Binds `path`, replacing a stale socket file no one listens on.
fn bind(path: &Path) -> Result<UnixListener, VsockError> {
    let err = |e| VsockError::Bind(path.into(), e);
    if path.as_os_str().len() + 11 > unix::MAX_PATH_LEN {
        // `<path>_<port>` must fit too.
        return Err(VsockError::PathTooLong(path.into()));
    }
    if std::fs::symlink_metadata(path).is_ok() {
        match UnixStream::connect(path) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path).map_err(err)?;
            }
            _ => return Err(VsockError::InUse(path.into())),
        }
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    listener.set_nonblocking(true).map_err(err)?;
    Ok(listener)
}

impl Muxer {
    /// A muxer listening on `path` for a guest with `guest_cid`.
    pub fn new(
        path: &Path,
        guest_cid: u64,
        max_conns: usize,
        counters: Arc<VsockCounters>,
    ) -> Result<Self, VsockError> {
        let listener = bind(path)?;
        let epoll = Epoll::new().map_err(VsockError::Epoll)?;
        let fd = listener.as_raw_fd();
        epoll
            .ctl(
                ControlOperation::Add,
                fd,
                EpollEvent::new(EventSet::IN, fd as u64),
            )
            .map_err(VsockError::Epoll)?;
        Ok(Self {
            guest_cid,
            path: path.into(),
            listener,
            epoll,
            conns: HashMap::new(),
            by_fd: HashMap::new(),
            handshakes: HashMap::new(),
            rx_work: VecDeque::new(),
            rsts: VecDeque::new(),
            next_local_port: FIRST_LOCAL_PORT,
            max_conns,
            counters,
            active: false,
        })
    }

    /// The descriptor the event loop watches: readable when any host socket is.
    pub fn epoll_fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    /// The listener's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open_count(&self) -> usize {
        self.conns.len() + self.handshakes.len()
    }

    /// Drops every connection (driver reset): host streams see the end.
    /// Runs on a vCPU thread: closing a descriptor (its only copy) takes it out of
    /// the epoll, so no other call is needed.
    pub fn reset(&mut self) {
        self.handshakes.clear();
        self.conns.clear();
        self.by_fd.clear();
        self.rx_work.clear();
        self.rsts.clear();
        self.active = false;
    }

    /// Handles what the host sockets report; the caller then fills the RX queue.
    pub fn process_host_events(&mut self) {
        let mut events = [EpollEvent::default(); EVENT_BATCH];
        // Level-triggered: whatever is not taken now is reported again, so a bounded
        // number of rounds reaches every ready descriptor.
        for _ in 0..=(self.open_count() / EVENT_BATCH + 1) {
            let n = match self.epoll.wait(0, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::error!("vsock: epoll wait failed: {e}");
                    return;
                }
            };
            for ev in &events[..n] {
                self.host_event(ev.data() as RawFd, ev.events());
            }
            if n < EVENT_BATCH {
                break;
            }
        }
    }

    fn host_event(&mut self, fd: RawFd, events: u32) {
        log::trace!("vsock: host event {events:#x} on descriptor {fd}");
        if fd == self.listener.as_raw_fd() {
            self.accept_all();
        } else if self.handshakes.contains_key(&fd) {
            self.read_connect_line(fd);
        } else if let Some(&key) = self.by_fd.get(&fd) {
            self.stream_event(key, events);
        }
    }

    fn accept_all(&mut self) {
        loop {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    log::warn!("vsock: accept on {} failed: {e}", self.path.display());
                    return;
                }
            };
            if !self.active || self.open_count() >= self.max_conns {
                // Closed at once: the guest has no driver yet, or the cap is reached.
                self.counters.conn_limit.fetch_add(1, Ordering::Relaxed);
                log::debug!(
                    "vsock: host connection closed: {}",
                    if self.active {
                        "too many connections"
                    } else {
                        "no driver yet"
                    }
                );
                continue;
            }
            let fd = stream.as_raw_fd();
            if let Err(e) = stream
                .set_nonblocking(true)
                .and_then(|()| self.watch(fd, EventSet::IN))
            {
                log::warn!("vsock: cannot take a host connection: {e}");
                continue;
            }
            self.handshakes.insert(fd, stream);
            // The line may be there already (its readiness came before the watch).
            self.read_connect_line(fd);
        }
    }

    fn watch(&self, fd: RawFd, events: EventSet) -> std::io::Result<()> {
        self.epoll.ctl(
            ControlOperation::Add,
            fd,
            EpollEvent::new(events, fd as u64),
        )
    }

    /// Reads a host program's `CONNECT <port>\n` without taking anything after it.
    fn read_connect_line(&mut self, fd: RawFd) {
        let Some(stream) = self.handshakes.get(&fd) else {
            return;
        };
        let mut buf = [0u8; MAX_CONNECT_LINE];
        let n = match unix::recv(stream, &mut buf, true) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(_) => 0,
        };
        let line_end = buf[..n].iter().position(|&b| b == b'\n');
        let port = match line_end {
            Some(end) => parse_connect(&buf[..end]),
            None if n == MAX_CONNECT_LINE || n == 0 => None,
            None => return, // more to come
        };
        let Some(stream) = self.handshakes.remove(&fd) else {
            return;
        };
        let taken = line_end.map_or(0, |e| e + 1);
        let ok =
            port.is_some() && unix::recv(&stream, &mut buf[..taken], false).ok() == Some(taken);
        let (Some(port), true) = (port, ok) else {
            log::debug!("vsock: bad CONNECT line from a host program; closed");
            return; // dropped: closed, and out of the epoll with it
        };
        let local = self.alloc_local_port();
        let mut conn = Connection::new(stream, local, port, State::Connecting);
        conn.interest = libc::EPOLLIN as u32 | REGISTERED;
        self.by_fd.insert(fd, (local, port));
        self.conns.insert((local, port), conn);
        self.counters.conns_host.fetch_add(1, Ordering::Relaxed);
        self.queue_rx((local, port));
    }

    fn alloc_local_port(&mut self) -> u32 {
        loop {
            let port = self.next_local_port;
            self.next_local_port = self.next_local_port.wrapping_add(1).max(FIRST_LOCAL_PORT);
            if !self.conns.keys().any(|&(local, _)| local == port) {
                return port;
            }
        }
    }

    fn stream_event(&mut self, key: Key, events: u32) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if events & (libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
            conn.host_hup = true;
        }
        if events & libc::EPOLLOUT as u32 != 0 {
            if let Err(e) = conn.flush() {
                log::debug!("vsock: connection {key:?}: {e}");
                self.reset_conn(key);
                return;
            }
            if self.finish_if_closed(key) {
                return;
            }
            // Room freed for the guest: tell it once enough was forwarded.
            if self.conns.get(&key).is_some_and(|c| c.owe_credit) {
                self.queue_rx(key);
            }
        }
        if events & (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
            if let Some(conn) = self.conns.get_mut(&key) {
                conn.host_readable = true;
            }
            self.queue_rx(key);
        }
        self.update_interest(key);
    }

    /// After the guest shut both ways and everything reached the host: the guest is
    /// sent RST, which ends the connection on both sides. True if it ended.
    pub(super) fn finish_if_closed(&mut self, key: Key) -> bool {
        let Some(conn) = self.conns.get(&key) else {
            return true;
        };
        if let Err(e) = conn.shutdown_host_write_if_done() {
            log::debug!("vsock: connection {key:?}: shutting the host stream: {e}");
        }
        if conn.guest_shutdown == super::packet::SHUTDOWN_RCV | super::packet::SHUTDOWN_SEND
            && conn.flushed()
        {
            self.reset_conn(key);
            return true;
        }
        false
    }

    /// Puts `key` on the RX work list once.
    pub(super) fn queue_rx(&mut self, key: Key) {
        if let Some(conn) = self.conns.get_mut(&key) {
            if !conn.queued {
                conn.queued = true;
                self.rx_work.push_back(key);
            }
        }
    }

    /// Re-registers a connection's stream for what it wants now (once the host end
    /// hung up, it leaves the epoll: a hang-up cannot be masked).
    pub(super) fn update_interest(&mut self, key: Key) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        let fd = conn.stream.as_raw_fd();
        if conn.host_hup && conn.host_eof {
            if conn.interest != 0 {
                let _ = self
                    .epoll
                    .ctl(ControlOperation::Delete, fd, EpollEvent::default());
                conn.interest = 0;
            }
            return;
        }
        let wanted = conn.wanted_events() & !REGISTERED;
        let registered = conn.interest & REGISTERED != 0;
        if registered && wanted == conn.interest & !REGISTERED {
            return;
        }
        let op = if registered {
            ControlOperation::Modify
        } else {
            ControlOperation::Add
        };
        let set = EventSet::from_bits_truncate(wanted);
        // An empty set stays registered as such (hang-ups are still reported).
        match self.epoll.ctl(op, fd, EpollEvent::new(set, fd as u64)) {
            Ok(()) => conn.interest = wanted | REGISTERED,
            Err(e) => log::error!("vsock: cannot watch connection {key:?}: {e}"),
        }
    }

    /// Connects a guest's REQUEST for host port `local` to `<socket>_<local>`.
    pub(super) fn connect_guest(&mut self, local: u32, peer: u32) -> bool {
        if self.open_count() >= self.max_conns {
            self.counters.conn_limit.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let mut path = self.path.clone().into_os_string();
        path.push(format!("_{local}"));
        let stream = match unix::connect(Path::new(&path)) {
            Ok(s) => s,
            Err(e) => {
                log::debug!("vsock: guest connection to port {local} refused: {e}");
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        };
        let fd = stream.as_raw_fd();
        let conn = Connection::new(stream, local, peer, State::Established);
        self.by_fd.insert(fd, (local, peer));
        self.conns.insert((local, peer), conn);
        self.counters.conns_guest.fetch_add(1, Ordering::Relaxed);
        self.queue_rx((local, peer));
        true
    }

    /// Ends connection `key` at once, sending the guest an RST.
    pub(super) fn reset_conn(&mut self, key: Key) {
        self.forget_conn(key);
        self.send_rst(key.0, key.1);
    }

    /// Queues an RST from host port `local` to guest port `peer`.
    pub(super) fn send_rst(&mut self, local: u32, peer: u32) {
        if self.rsts.len() >= MAX_PENDING_RSTS {
            self.counters.rst_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.rsts.push_back(Header {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: local,
            dst_port: peer,
            type_: TYPE_STREAM,
            op: Op::Rst as u16,
            ..Default::default()
        });
    }

    /// Ends connection `key` without telling the guest (it reset it).
    pub(super) fn forget_conn(&mut self, key: Key) {
        if let Some(conn) = self.conns.remove(&key) {
            let fd = conn.stream.as_raw_fd();
            self.by_fd.remove(&fd);
            if conn.interest != 0 {
                let _ = self
                    .epoll
                    .ctl(ControlOperation::Delete, fd, EpollEvent::default());
            }
        }
    }
}

/// Marks a connection's `interest` as registered in the epoll (whatever its events).
pub(super) const REGISTERED: u32 = 1 << 31;

impl Drop for Muxer {
    fn drop(&mut self) {
        // Connections still open when the VM ends, with their flow-control state (a
        // stalled stream shows here).
        for (key, conn) in &self.conns {
            log::info!("vsock: open at the end: {key:?} {}", conn.describe());
        }
        if !self.rx_work.is_empty() || !self.rsts.is_empty() {
            log::info!(
                "vsock: at the end: {} connections waiting for RX buffers, {} RSTs",
                self.rx_work.len(),
                self.rsts.len()
            );
        }
        if let Err(e) = std::fs::remove_file(&self.path) {
            log::debug!("vsock: cannot remove {}: {e}", self.path.display());
        }
    }
}

/// The port of a `CONNECT <port>` line (without its newline).
fn parse_connect(line: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(line).ok()?;
    let port = text.strip_prefix("CONNECT ")?.trim_end_matches('\r');
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    port.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_lines() {
        assert_eq!(parse_connect(b"CONNECT 52"), Some(52));
        assert_eq!(parse_connect(b"CONNECT 4294967295"), Some(u32::MAX));
        for bad in [
            &b"CONNECT"[..],
            b"CONNECT ",
            b"connect 52",
            b"CONNECT -1",
            b"CONNECT 4294967296",
            b"CONNECT 5 2",
            b"\xff",
        ] {
            assert_eq!(parse_connect(bad), None, "{bad:?}");
        }
    }
}
