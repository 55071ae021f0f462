use super::conn::CONN_BUF_SIZE;
use super::packet::{Header, Op, HDR_LEN, SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM};
use super::*;
use crate::virtio::test_ring::{desc, Ring, N, W};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::Ordering;
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const RING: u16 = 64;
const RX_BUF: u64 = 0x10_0000;
const RX_BUF_LEN: u32 = 0x2000;
const TX_BUF: u64 = 0x40_0000;
const TX_BUF_LEN: u64 = 0x1_1000;
const CID: u64 = 3;

/// A guest driver: memory, the three rings, and the device.
struct Guest {
    mem: GuestMemoryMmap,
    rx: Ring,
    tx: Ring,
    next_rx: u16,
    next_tx: u16,
    dev: Vsock,
    dir: PathBuf,
    buf_alloc: u32,
    fwd_cnt: u32,
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mv-vs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Guest {
    fn new(name: &str, max_conns: usize) -> Self {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x100_0000)]).unwrap();
        let dir = temp_dir(name);
        let mut dev = Vsock::new(CID, &dir.join("v.sock"), max_conns).unwrap();
        let rx = Ring::new(&mem, 0, RING);
        let tx = Ring::new(&mem, 0x1_0000, RING);
        let ev = Ring::new(&mem, 0x2_0000, RING);
        dev.activate(Activation {
            memory: mem.clone(),
            queues: vec![rx.queue(), tx.queue(), ev.queue()],
            acked_features: dev.features(),
            interrupt: VirtioInterrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()),
        })
        .unwrap();
        Self {
            mem,
            rx,
            tx,
            next_rx: 0,
            next_tx: 0,
            dev,
            dir,
            buf_alloc: 1 << 20,
            fwd_cnt: 0,
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("v.sock")
    }

    /// Offers `n` RX buffers and lets the device fill them.
    fn post_rx(&mut self, n: usize) {
        for _ in 0..n {
            let id = self.next_rx % RING;
            let addr = RX_BUF + u64::from(id) * u64::from(RX_BUF_LEN);
            self.rx.post(id, &[desc(addr, RX_BUF_LEN, W, 0)]);
            self.next_rx = self.next_rx.wrapping_add(1);
        }
        self.dev.process_queue(RX_QUEUE);
    }

    /// Packets the device has put in RX buffers since the last call.
    fn recv(&mut self) -> Vec<(Header, Vec<u8>)> {
        self.rx
            .take_used()
            .into_iter()
            .map(|(id, len)| {
                let addr = RX_BUF + u64::from(id) * u64::from(RX_BUF_LEN);
                let mut raw = [0u8; HDR_LEN];
                self.mem.read_slice(&mut raw, GuestAddress(addr)).unwrap();
                let hdr = Header::decode(&raw);
                assert_eq!(len as usize, HDR_LEN + hdr.len as usize);
                let mut data = vec![0u8; hdr.len as usize];
                self.mem
                    .read_slice(&mut data, GuestAddress(addr + HDR_LEN as u64))
                    .unwrap();
                (hdr, data)
            })
            .collect()
    }

    fn hdr(&self, op: Op, src_port: u32, dst_port: u32) -> Header {
        Header {
            src_cid: CID,
            dst_cid: HOST_CID,
            src_port,
            dst_port,
            type_: TYPE_STREAM,
            op: op as u16,
            buf_alloc: self.buf_alloc,
            fwd_cnt: self.fwd_cnt,
            ..Default::default()
        }
    }

    /// Sends a packet as a header descriptor and a data descriptor.
    fn send(&mut self, mut hdr: Header, data: &[u8]) {
        if hdr.len == 0 {
            hdr.len = data.len() as u32;
        }
        let id = (self.next_tx * 2) % RING;
        let addr = TX_BUF + u64::from(id / 2) * TX_BUF_LEN;
        self.mem
            .write_slice(&hdr.encode(), GuestAddress(addr))
            .unwrap();
        self.mem
            .write_slice(data, GuestAddress(addr + 0x100))
            .unwrap();
        self.tx.post(
            id,
            &[
                desc(addr, HDR_LEN as u32, N, id + 1),
                desc(addr + 0x100, data.len() as u32, 0, 0),
            ],
        );
        self.next_tx = self.next_tx.wrapping_add(1);
        self.dev.process_queue(TX_QUEUE);
    }

    fn host_events(&mut self) {
        self.dev.process_backend(0);
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn op(h: &Header) -> Option<Op> {
    h.op()
}

/// Host connects to the VM socket; the guest accepts on `port`.
fn host_connect(g: &mut Guest, port: u32) -> (UnixStream, u32) {
    let mut host = UnixStream::connect(g.path()).unwrap();
    host.write_all(format!("CONNECT {port}\n").as_bytes())
        .unwrap();
    g.post_rx(4);
    g.host_events();
    g.host_events();
    let pkts = g.recv();
    assert_eq!(pkts.len(), 1, "{pkts:?}");
    let req = pkts[0].0;
    assert_eq!(op(&req), Some(Op::Request));
    assert_eq!(
        (req.dst_port, req.dst_cid, req.src_cid),
        (port, CID, HOST_CID)
    );
    let local = req.src_port;
    g.send(g.hdr(Op::Response, port, local), &[]);
    let mut line = [0u8; 32];
    let n = host.read(&mut line).unwrap();
    assert_eq!(&line[..n], format!("OK {local}\n").as_bytes());
    (host, local)
}

#[test]
fn host_initiated_connection_moves_data_both_ways() {
    let mut g = Guest::new("host", 16);
    let (mut host, local) = host_connect(&mut g, 52);
    host.write_all(b"ping").unwrap();
    g.host_events();
    let pkts = g.recv();
    assert_eq!(pkts.len(), 1);
    assert_eq!(op(&pkts[0].0), Some(Op::Rw));
    assert_eq!(pkts[0].1, b"ping");
    assert_eq!(pkts[0].0.buf_alloc, CONN_BUF_SIZE);
    g.send(g.hdr(Op::Rw, 52, local), b"pong");
    let mut back = [0u8; 4];
    host.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"pong");
    // The host closes: the guest is told neither side will send more.
    drop(host);
    g.host_events();
    g.post_rx(1);
    let pkts = g.recv();
    assert_eq!(op(&pkts[0].0), Some(Op::Shutdown));
    assert_eq!(pkts[0].0.flags, SHUTDOWN_RCV | SHUTDOWN_SEND);
    g.send(g.hdr(Op::Rst, 52, local), &[]);
    assert!(g.dev.muxer.conns.is_empty());
}

#[test]
fn guest_initiated_connections_reach_socket_port_or_get_rst() {
    let mut g = Guest::new("guest", 16);
    let listener = UnixListener::bind(format!("{}_1234", g.path().display())).unwrap();
    g.post_rx(4);
    g.send(g.hdr(Op::Request, 5000, 1234), &[]);
    let pkts = g.recv();
    assert_eq!(op(&pkts[0].0), Some(Op::Response));
    assert_eq!((pkts[0].0.src_port, pkts[0].0.dst_port), (1234, 5000));
    let (mut host, _) = listener.accept().unwrap();
    g.send(g.hdr(Op::Rw, 5000, 1234), b"hello");
    let mut got = [0u8; 5];
    host.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello");
    // The guest closes both ways: the host sees the end, the guest gets RST.
    g.send(
        Header {
            flags: SHUTDOWN_RCV | SHUTDOWN_SEND,
            ..g.hdr(Op::Shutdown, 5000, 1234)
        },
        &[],
    );
    assert_eq!(host.read(&mut got).unwrap(), 0);
    let pkts = g.recv();
    assert_eq!(op(&pkts[0].0), Some(Op::Rst));
    // No listener on port 99: refused with RST.
    g.send(g.hdr(Op::Request, 5001, 99), &[]);
    let pkts = g.recv();
    assert_eq!(op(&pkts[0].0), Some(Op::Rst));
    assert_eq!(pkts[0].0.dst_port, 5001);
    assert_eq!(g.dev.counters.refused.load(Ordering::Relaxed), 1);
}

#[test]
fn hostile_packets_get_rst_and_counters() {
    let mut g = Guest::new("hostile", 2);
    let _l = UnixListener::bind(format!("{}_7", g.path().display())).unwrap();
    g.post_rx(16);
    // Unknown op, wrong type, data for no connection.
    g.send(
        Header {
            op: 99,
            ..g.hdr(Op::Rw, 1, 7)
        },
        &[],
    );
    g.send(
        Header {
            type_: 2,
            ..g.hdr(Op::Request, 2, 7)
        },
        &[],
    );
    g.send(g.hdr(Op::Rw, 3, 7), b"x");
    // Length past the chain's data.
    g.send(
        Header {
            len: 1000,
            ..g.hdr(Op::Rw, 4, 7)
        },
        b"short",
    );
    // A flood of REQUESTs beyond the cap of 2.
    for port in 10..14 {
        g.send(g.hdr(Op::Request, port, 7), &[]);
    }
    let ops: Vec<_> = g.recv().iter().map(|(h, _)| op(h)).collect();
    let rst = Some(Op::Rst);
    let resp = Some(Op::Response);
    assert_eq!(ops, vec![rst, rst, rst, rst, resp, resp, rst, rst]);
    let c = g.dev.counters();
    assert_eq!(c.bad_packets.load(Ordering::Relaxed), 2);
    assert_eq!(c.malformed.load(Ordering::Relaxed), 1);
    assert_eq!(c.conn_limit.load(Ordering::Relaxed), 2);
    // Credit that lies: fwd_cnt ahead of what was sent resets the connection.
    g.fwd_cnt = 5;
    g.send(g.hdr(Op::CreditUpdate, 10, 7), &[]);
    let pkts = g.recv();
    assert_eq!(op(&pkts[0].0), Some(Op::Rst));
    assert_eq!(c.credit_violations.load(Ordering::Relaxed), 1);
    assert_eq!(g.dev.muxer.conns.len(), 1);
}

#[test]
fn a_guest_sending_past_its_credit_is_reset() {
    let mut g = Guest::new("credit", 4);
    // A host reader that never reads.
    let listener = UnixListener::bind(format!("{}_8", g.path().display())).unwrap();
    g.post_rx(8);
    g.send(g.hdr(Op::Request, 100, 8), &[]);
    let (_host, _) = listener.accept().unwrap();
    let chunk = vec![1u8; 60 * 1024];
    let mut sent = 0usize;
    let mut reset = false;
    for _ in 0..200 {
        g.send(g.hdr(Op::Rw, 100, 8), &chunk);
        if g.recv().iter().any(|(h, _)| op(h) == Some(Op::Rst)) {
            reset = true;
            break;
        }
        sent += chunk.len();
    }
    assert!(reset, "never reset after {sent} bytes");
    // Everything up to the socket's buffer plus the credit was taken, no more.
    assert!(sent >= CONN_BUF_SIZE as usize, "{sent}");
    assert!(sent < 8 << 20, "{sent}");
    assert_eq!(g.dev.counters.credit_violations.load(Ordering::Relaxed), 1);
}

#[test]
fn host_data_stops_at_the_guest_credit_and_resumes_on_update() {
    let mut g = Guest::new("peer-credit", 4);
    g.buf_alloc = 10_000;
    let (mut host, local) = host_connect(&mut g, 52);
    host.write_all(&vec![5u8; 50_000]).unwrap();
    g.host_events();
    g.post_rx(16);
    let got: usize = g.recv().iter().map(|(_, d)| d.len()).sum();
    assert_eq!(got, 10_000);
    // The guest consumed it all and says so: the rest flows.
    for round in 0..4 {
        g.fwd_cnt += 10_000;
        g.send(g.hdr(Op::CreditUpdate, 52, local), &[]);
        g.post_rx(8);
        let got: usize = g.recv().iter().map(|(_, d)| d.len()).sum();
        assert_eq!(got, 10_000, "round {round}");
    }
    // A credit request is answered with the device's own credit.
    g.send(g.hdr(Op::CreditRequest, 52, local), &[]);
    let pkts = g.recv();
    assert_eq!(op(&pkts[0].0), Some(Op::CreditUpdate));
    assert_eq!(pkts[0].0.buf_alloc, CONN_BUF_SIZE);
}

#[test]
fn bad_connect_lines_and_the_cap_close_host_streams() {
    let mut g = Guest::new("lines", 1);
    let mut bad = UnixStream::connect(g.path()).unwrap();
    bad.write_all(b"HELLO 52\n").unwrap();
    g.host_events();
    let mut buf = [0u8; 8];
    // Closed (reset, as the line it sent was left unread).
    assert_eq!(bad.read(&mut buf).unwrap_or(0), 0);
    let (_first, _) = host_connect(&mut g, 52);
    let mut second = UnixStream::connect(g.path()).unwrap();
    g.host_events();
    // Closed at once: writing fails or reading sees the end.
    let _ = second.write_all(b"CONNECT 52\n");
    assert_eq!(second.read(&mut buf).unwrap_or(0), 0);
    assert!(g.dev.counters.conn_limit.load(Ordering::Relaxed) >= 1);
}

#[test]
fn config_space_holds_the_cid_and_bad_cids_are_refused() {
    let g = Guest::new("cfg", 1);
    let mut cid = [0u8; 8];
    g.dev.read_config(0, &mut cid);
    assert_eq!(u64::from_le_bytes(cid), CID);
    let dir = temp_dir("badcid");
    for bad in [0, 1, 2, u64::from(u32::MAX), 1 << 40] {
        assert!(matches!(
            Vsock::new(bad, &dir.join("s"), 1),
            Err(VsockError::BadCid(_))
        ));
    }
    // A live listener's path is refused; a stale socket file is replaced.
    assert!(matches!(
        Vsock::new(CID, &g.path(), 1),
        Err(VsockError::InUse(_))
    ));
    let stale = dir.join("stale");
    drop(UnixListener::bind(&stale).unwrap());
    assert!(Vsock::new(CID, &stale, 1).is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}
