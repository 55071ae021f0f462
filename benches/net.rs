//! virtio-net benchmark that prints numbers: the freestanding test guest and a real
//! tap on this host (`cargo bench --bench net -- [--count N]`, needs root for the tap).
//!
//! - guest to host: the guest sends N frames as fast as its driver can (one
//!   notification per frame); a raw socket on the tap counts them. Rate = frames
//!   received between the first and the last arrival.
//! - host to guest: a raw socket sends N frames; the guest counts them until an end
//!   frame arrives and acknowledges every 64 frames, and the host keeps at most 256
//!   unacknowledged (a tap drops what does not fit its 500-frame queue: the sender
//!   gets no back-pressure from it). Rate = frames the guest got over the time from
//!   the first send to the guest's report. minivmm's own counters (rx_dropped) must
//!   stay 0, and nothing should be lost with the window.
//!
//! Frame sizes: 64 and 1500 bytes (Ethernet header included).

#[path = "../tests/common/mod.rs"]
mod common;

use common::net::{RawSocket, TestTap};
use common::{test_guest, MINIVMM};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

const ETHERTYPE_TEST: u16 = 0x88b5;
const ETHERTYPE_END: u16 = 0x88b6;
const ETHERTYPE_ACK: u16 = 0x88b7;
/// Frames in flight towards the guest, well inside the tap's 500-frame queue.
const WINDOW: u64 = 256;
const TAP: &str = "mvb-net0";

struct Guest {
    child: Child,
    lines: Receiver<String>,
    stderr: Receiver<String>,
}

impl Guest {
    fn start(cmdline: &str) -> Guest {
        let mut child = Command::new(MINIVMM)
            .args(["--kernel", test_guest().to_str().unwrap()])
            .args(["--cmdline", cmdline, "--net", &format!("tap={TAP}")])
            .args(["--log-level", "info"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start minivmm");
        let pipe = |r: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
            rx
        };
        let lines = pipe(Box::new(child.stdout.take().unwrap()));
        let stderr = pipe(Box::new(child.stderr.take().unwrap()));
        Guest {
            child,
            lines,
            stderr,
        }
    }

    fn wait_for(&self, marker: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let line = self.lines.recv_timeout(left).ok()?;
            if line.contains(marker) {
                return Some(line);
            }
        }
        None
    }

    /// Waits for exit; returns minivmm's device counters line.
    fn finish(mut self) -> String {
        let _ = self.child.wait();
        self.stderr
            .try_iter()
            .find(|l| l.contains("virtio-net"))
            .unwrap_or_default()
    }
}

fn field(text: &str, key: &str) -> u64 {
    text.split(key)
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn report(dir: &str, size: usize, frames: u64, secs: f64, sent: u64, counters: &str) {
    let secs = secs.max(1e-9);
    let pps = frames as f64 / secs;
    let gbit = frames as f64 * size as f64 * 8.0 / secs / 1e9;
    println!(
        "{dir:<14} {size:>5} B  {frames:>7} frames  {:>9.0} frames/s  {gbit:>6.3} Gbit/s  \
         lost on the host side {}  (minivmm rx_dropped={} tx_errors={})",
        pps,
        sent.saturating_sub(frames),
        field(counters, "rx_dropped="),
        field(counters, "tx_errors="),
    );
}

fn guest_to_host(size: usize, count: u64, sock: &RawSocket) {
    let g = Guest::start(&format!(
        "guest.test=net-tx-bench net.size={size} net.count={count}"
    ));
    let mut buf = vec![0u8; 2048];
    let (mut got, mut first, mut last) = (0u64, None, Instant::now());
    while got < count {
        let wait = if first.is_none() { 20_000 } else { 500 };
        if sock.recv(&mut buf, Duration::from_millis(wait)).is_none() {
            break;
        }
        last = Instant::now();
        first.get_or_insert(last);
        got += 1;
    }
    let secs = first.map_or(0.0, |f| (last - f).as_secs_f64());
    let counters = g.finish();
    report("guest to host", size, got, secs, count, &counters);
}

fn host_to_guest(size: usize, count: u64, sock: &RawSocket) {
    // A fresh socket per run: acknowledgements of an earlier run must not count.
    let acks = RawSocket::open(TAP, ETHERTYPE_ACK).expect("raw socket");
    let g = Guest::start("guest.test=net-rx-bench");
    if g.wait_for("net: rx ready", Duration::from_secs(20))
        .is_none()
    {
        println!("host to guest {size} B: the guest never got ready");
        return;
    }
    let frame = |ethertype: u16| -> Vec<u8> {
        let mut f = vec![0xffu8; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.resize(size, 0x5a);
        f
    };
    let (data, end) = (frame(ETHERTYPE_TEST), frame(ETHERTYPE_END));
    let mut ack = vec![0u8; 2048];
    let start = Instant::now();
    let (mut sent, mut acked) = (0u64, 0u64);
    while sent < count {
        while sent < count && sent.saturating_sub(acked) < WINDOW {
            let _ = sock.send(&data);
            sent += 1;
        }
        if sent == count {
            break;
        }
        match acks.recv(&mut ack, Duration::from_secs(2)) {
            Some(n) if n >= 24 => {
                let got = u64::from_be_bytes(ack[16..24].try_into().unwrap());
                acked = acked.max(got);
            }
            _ => {
                println!("host to guest {size} B: no acknowledgement after {acked} frames");
                break;
            }
        }
    }
    // The end frame may be dropped like any other: repeat it until the guest answers.
    let mut done = None;
    for _ in 0..2000 {
        let _ = sock.send(&end);
        if let Ok(line) = g.lines.recv_timeout(Duration::from_millis(10)) {
            if line.contains("net-bench: rx frames=") {
                done = Some(line);
                break;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let counters = g.finish();
    let Some(line) = done else {
        println!("host to guest {size} B: no report from the guest");
        return;
    };
    report(
        "host to guest",
        size,
        field(&line, "frames="),
        secs,
        count,
        &counters,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let count = args
        .iter()
        .position(|a| a == "--count")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000u64);
    if std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        println!("net bench SKIPPED: no usable /dev/kvm on this host");
        return;
    }
    let tap = match TestTap::create(TAP, None) {
        Ok(t) => t,
        Err(e) => {
            println!("net bench SKIPPED: cannot create a tap ({e}); run as root");
            return;
        }
    };
    let sock = RawSocket::open(&tap.name, ETHERTYPE_TEST).expect("raw socket");
    println!("== virtio-net, test guest <-> tap {TAP} ({count} frames per case)");
    for size in [64, 1500] {
        guest_to_host(size, count, &sock);
        host_to_guest(size, count, &sock);
    }
}
