//! virtio-net with the test guest on this host's KVM: frames cross a real tap byte
//! for byte in both directions, a burst four times the RX ring arrives whole and in
//! order, and taps minivmm creates disappear with it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test, as clippy.toml allows in unit tests

mod common;

use common::net::{ip, RawSocket, TestTap};
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const ETHERTYPE_TEST: u16 = 0x88b5;
const GUEST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x42];
/// Must match resources/test-guest/src/net_test.rs.
const TX_COUNT: u16 = 32;
const RX_COUNT: u16 = 64;
const TX_SIZES: [usize; 6] = [60, 64, 128, 512, 1000, 1514];

fn tx_frame(seq: u16) -> Vec<u8> {
    let len = TX_SIZES[usize::from(seq) % TX_SIZES.len()];
    let mut f = vec![0xffu8; 6];
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&ETHERTYPE_TEST.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend((0..len - 16).map(|i| (i as u16).wrapping_mul(3).wrapping_add(seq) as u8));
    f
}

fn rx_frame(seq: u16) -> Vec<u8> {
    let len = 60 + (usize::from(seq) * 23) % 1455;
    let mut f = GUEST_MAC.to_vec();
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f.extend_from_slice(&ETHERTYPE_TEST.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend((0..len - 16).map(|i| ((i as u16).wrapping_mul(5).wrapping_add(seq) as u8) ^ 0xa5));
    f
}

/// A minivmm child that is killed if the test fails before it ends.
struct Vmm(std::process::Child);

impl Vmm {
    /// minivmm on the test guest running `test` (its command-line words), with the
    /// interface `net` (a `--net` spec); stdin closed, stderr piped.
    fn start(test: &str, net: &str, stdout: Stdio) -> Self {
        Self(
            Command::new(MINIVMM)
                .args(["--kernel", test_guest().to_str().unwrap()])
                .args(["--cmdline", test, "--net", net])
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(Stdio::piped())
                .spawn()
                .expect("start minivmm"),
        )
    }
}

impl Drop for Vmm {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A tap for this test, or None (with the reason printed) where the host cannot.
fn tap(test: &str, name: &str) -> Option<TestTap> {
    if !kvm_available(test) {
        return None;
    }
    match TestTap::create(name, None) {
        Ok(t) => Some(t),
        Err(e) => {
            skip(
                test,
                format!("cannot create a tap here ({e}); needs root and /dev/net/tun"),
            );
            None
        }
    }
}

#[test]
fn test_guest_frames_cross_the_tap_byte_exact_both_ways() {
    let Some(tap) = tap("net test guest", "mvt-net0") else {
        return;
    };
    let sock = RawSocket::open(&tap.name, ETHERTYPE_TEST).expect("raw socket on the tap");
    let net = format!("tap={},mac=02:00:00:00:00:42", tap.name);
    let mut vmm = Vmm::start("guest.test=net", &net, Stdio::piped());
    let child = &mut vmm.0;
    let (lines_tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut console = String::new();
    let wait_for = |marker: &str, console: &mut String| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match lines.recv_timeout(left) {
                Ok(line) => {
                    console.push_str(&line);
                    console.push('\n');
                    if line.contains(marker) {
                        return true;
                    }
                }
                Err(_) => break,
            }
        }
        false
    };

    // Guest to host: every frame byte for byte, in order.
    let mut buf = vec![0u8; 65536];
    for seq in 0..TX_COUNT {
        let n = sock
            .recv(&mut buf, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("guest frame {seq} never reached the tap"));
        assert_eq!(&buf[..n], &tx_frame(seq)[..], "guest frame {seq}");
    }

    // Host to guest: a burst of four rings' worth, sent at once.
    assert!(wait_for("net: rx ready", &mut console), "{console}");
    for seq in 0..RX_COUNT {
        sock.send(&rx_frame(seq)).expect("send to the guest");
    }
    let done = wait_for("net: rx frames=", &mut console);
    let status = child.wait().expect("wait for minivmm");
    // minivmm has exited: the reader reaches the end of its output and hangs up.
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(30)) {
        console.push_str(&line);
        console.push('\n');
    }
    assert!(done, "{console}");
    assert!(status.success(), "{status}\n{console}");
    // The guest has ended, so everything it sent is on the tap by now: after its
    // 32 frames, nothing (the host's own frames are skipped by `recv`).
    assert!(
        sock.recv(&mut buf, Duration::from_millis(200)).is_none(),
        "an extra frame"
    );
    assert!(
        console.contains("net: mac=02:00:00:00:00:42 status=1"),
        "{console}"
    );
    assert!(console.contains("net: tx sent=32 ok=true"), "{console}");
    // All 16 buffers were filled before the guest took any: the other 48 frames
    // waited in minivmm and the tap, and still arrived whole and in order.
    assert!(console.contains("net: rx ring filled=16"), "{console}");
    assert!(
        console.contains("net: rx frames=64 bad=0 other=0 num_buffers_not_1=0"),
        "{console}"
    );
}

#[test]
fn a_tap_minivmm_creates_is_gone_after_it_exits() {
    if !kvm_available("tap create=on") {
        return;
    }
    let name = "mvt-create0";
    let _ = common::net::ip(None, &["link", "del", name]);
    let spec = format!("tap={name},create=on");
    let mut vmm = Vmm::start("guest.test=hang", &spec, Stdio::null());
    let child = &mut vmm.0;
    let sys = std::path::Path::new("/sys/class/net").join(name);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sys.exists() && Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(20));
    }
    if !sys.exists() {
        let _ = child.wait();
        let mut err = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut err);
        }
        if err.contains("Operation not permitted") {
            skip("tap create=on", format!("no CAP_NET_ADMIN here ({err})"));
            return;
        }
        panic!("minivmm did not create {name}: {err}");
    }
    let flags = std::fs::read_to_string(sys.join("flags")).unwrap();
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "a created tap is up");
    // SAFETY: signals a child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{status}");
    // The kernel removes the tap as minivmm's descriptor closes; wait for that.
    poll_until(Duration::from_secs(30), || !sys.exists());
    assert!(!sys.exists(), "{name} outlived minivmm");
}

/// The tap is deleted while the guest sends: minivmm logs it once, keeps completing
/// the guest's transmissions, and the guest runs to its end.
#[test]
fn the_guest_keeps_running_when_its_tap_disappears() {
    let Some(tap) = tap("tap disappears", "mvt-gone0") else {
        return;
    };
    let net = format!("tap={}", tap.name);
    let mut vmm = Vmm::start(
        "guest.test=net-tx-bench net.count=20000",
        &net,
        Stdio::piped(),
    );
    let child = &mut vmm.0;
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut console = String::new();
    let mut line = String::new();
    while !console.contains("net-bench: tx start") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "{console}");
        console.push_str(&line);
    }
    ip(None, &["link", "del", &tap.name]).expect("delete the tap");
    std::mem::forget(tap);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !console.contains("net-bench: tx done sent=20000") {
        assert!(Instant::now() < deadline, "the guest stopped: {console}");
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "{console}");
        console.push_str(&line);
    }
    let status = child.wait().expect("wait");
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "{console}{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1, "logged once: {stderr}");
    // Whichever side notices first (a TX write, or the RX read the tap's hang-up
    // wakes) logs it; the kernel answers with EBADFD or EIO, depending on how far the
    // deletion has got.
    let line = lines[0];
    assert!(
        (line.contains("virtio-net mvt-gone0: writing to the host interface failed: ")
            || line.contains("virtio-net mvt-gone0: reading from the host interface failed: "))
            && (line.ends_with("(os error 77); the guest keeps running")
                || line.ends_with("(os error 5); the guest keeps running")),
        "{stderr}"
    );
}
