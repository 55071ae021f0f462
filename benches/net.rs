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
//!   stay 0, and nothing may be lost with the window.
//!
//! A functional failure (a guest that stalls, never reports or does not get every
//! frame, minivmm failing or dropping frames) ends the bench with status 1, after the
//! figures, with one `net bench FAILED: ...` line per failed case.
//!
//! Frame sizes: 64 and 1500 bytes (Ethernet header included).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test, as clippy.toml allows in unit tests

#[path = "shared/chart.rs"]
mod chart;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "shared/output.rs"]
mod output;

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

    /// Waits (60 s at most) for minivmm to end, which it must do with status 0;
    /// returns its device counters line, which it must have printed.
    fn finish(&mut self) -> Result<String, String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(None) => return Err("minivmm did not end within 60 s".into()),
                Err(e) => return Err(format!("cannot wait for minivmm: {e}")),
            }
        };
        // minivmm has exited: its stderr reader reaches the end and hangs up.
        let stderr: Vec<String> = self.stderr.iter().collect();
        if !status.success() {
            return Err(format!(
                "minivmm ended with {status}:\n{}",
                stderr.join("\n")
            ));
        }
        stderr
            .iter()
            .find(|l| l.contains("virtio-net") && l.contains("rx_dropped="))
            .cloned()
            .ok_or_else(|| format!("minivmm printed no device counters:\n{}", stderr.join("\n")))
    }
}

impl Drop for Guest {
    /// A run that failed half-way leaves no minivmm behind.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
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
    output::record(
        &format!("{dir}, {size} B frames"),
        "Gbit/s",
        gbit,
        gbit,
        gbit,
        1,
    );
    output::record(
        &format!("{dir}, {size} B frames"),
        "frames/s",
        pps,
        pps,
        pps,
        1,
    );
    println!(
        "{dir:<14} {size:>5} B  {frames:>7} frames  {:>9.0} frames/s  {gbit:>6.3} Gbit/s  \
         lost on the host side {}  (minivmm rx_dropped={} tx_errors={})",
        pps,
        sent.saturating_sub(frames),
        field(counters, "rx_dropped="),
        field(counters, "tx_errors="),
    );
}

/// The guest sends `count` frames of `size` bytes; Err says what did not work.
fn guest_to_host(size: usize, count: u64, sock: &RawSocket) -> Result<(), String> {
    let mut g = Guest::start(&format!(
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
    let counters = g
        .finish()
        .map_err(|e| format!("guest to host {size} B: {e}"))?;
    // minivmm has exited: its stdout reader reaches the end and hangs up.
    let console = g.lines.iter().collect::<Vec<_>>().join("\n");
    report("guest to host", size, got, secs, count, &counters);
    // The host side may lose frames (its socket's queue), the guest's driver may not
    // stall: it must have sent every frame, and some must have crossed the tap.
    let done = format!("net-bench: tx done sent={count}");
    if !console.lines().any(|l| l.trim_end() == done) {
        return Err(format!(
            "guest to host {size} B: the guest did not send all {count} frames:\n{console}"
        ));
    }
    if got == 0 && count > 0 {
        return Err(format!("guest to host {size} B: no frame reached the tap"));
    }
    Ok(())
}

/// The host sends `count` frames of `size` bytes; Err says what did not work.
fn host_to_guest(size: usize, count: u64, sock: &RawSocket) -> Result<(), String> {
    // A fresh socket per run: acknowledgements of an earlier run must not count.
    let acks = RawSocket::open(TAP, ETHERTYPE_ACK).expect("raw socket");
    let mut g = Guest::start("guest.test=net-rx-bench");
    if g.wait_for("net: rx ready", Duration::from_secs(20))
        .is_none()
    {
        return Err(format!("host to guest {size} B: the guest never got ready"));
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
    let mut stalled = None;
    while sent < count {
        while sent < count && sent.saturating_sub(acked) < WINDOW {
            let _ = sock.send(&data);
            sent += 1;
        }
        if sent == count {
            break;
        }
        match acks.recv(&mut ack, Duration::from_secs(10)) {
            Some(n) if n >= 24 => {
                let got = u64::from_be_bytes(ack[16..24].try_into().unwrap());
                acked = acked.max(got);
            }
            _ => {
                // Still ask for the guest's report below (it shows what arrived),
                // then fail.
                stalled = Some(format!(
                    "host to guest {size} B: no acknowledgement for 10 s after {acked} frames"
                ));
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
    let Some(line) = done else {
        return Err(format!("host to guest {size} B: no report from the guest"));
    };
    let counters = g
        .finish()
        .map_err(|e| format!("host to guest {size} B: {e}"))?;
    let frames = field(&line, "frames=");
    report("host to guest", size, frames, secs, count, &counters);
    if let Some(why) = stalled {
        return Err(why);
    }
    let dropped = field(&counters, "rx_dropped=");
    if dropped != 0 {
        return Err(format!(
            "host to guest {size} B: minivmm dropped {dropped} frames (rx_dropped): {counters}"
        ));
    }
    if frames != count {
        return Err(format!(
            "host to guest {size} B: the guest got {frames} of {count} frames, with at most \
             {WINDOW} in flight"
        ));
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let count = args
        .iter()
        .position(|a| a == "--count")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000u64);
    if !common::kvm_available("net bench") {
        return;
    }
    let tap = match TestTap::create(TAP, None) {
        Ok(t) => t,
        Err(e) => {
            common::skip(
                "net bench",
                format!("cannot create a tap ({e}); run as root"),
            );
            return;
        }
    };
    let sock = RawSocket::open(&tap.name, ETHERTYPE_TEST).expect("raw socket");
    println!("== virtio-net, test guest <-> tap {TAP} ({count} frames per case)");
    let mut failed = Vec::new();
    for size in [64, 1500] {
        failed.extend(guest_to_host(size, count, &sock).err());
        failed.extend(host_to_guest(size, count, &sock).err());
    }
    drop(sock);
    drop(tap);
    failed.extend(
        output::write(
            &common::repo().join("target"),
            "net-bench",
            "virtio-net, test guest <-> tap (Gbit/s, log scale)",
            "Gbit/s",
        )
        .err(),
    );
    if !failed.is_empty() {
        for why in &failed {
            eprintln!("net bench FAILED: {why}");
        }
        std::process::exit(1);
    }
}
