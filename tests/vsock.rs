//! virtio-vsock with the test guest on this host's KVM, at ring level
//! (resources/test-guest/src/vsock_test.rs): a port with no host listener gets RST,
//! 4 MiB cross each way through a host Unix-socket listener under credit-based flow
//! control in both directions, checksummed; an unknown operation gets RST; a host
//! program connects in Firecracker's convention (`CONNECT 6000` / `OK <port>`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test, as clippy.toml allows in unit tests

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Must match resources/test-guest/src/vsock_test.rs.
const TOTAL: usize = 4 << 20;
const GUEST_BUF_ALLOC: u64 = 64 * 1024;

/// The guest's checksum (vsock_test.rs `Sum`), over a whole stream.
fn sum(data: &[u8]) -> u64 {
    data.chunks_exact(8).fold(0xcbf2_9ce4_8422_2325, |acc, w| {
        (acc ^ u64::from_le_bytes(w.try_into().unwrap())).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn guest_word(k: u64) -> u64 {
    k.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5555
}

fn host_stream() -> Vec<u8> {
    (0..TOTAL as u64 / 8)
        .flat_map(|k| {
            k.wrapping_mul(0xd6e8_feb8_6659_fd93)
                .wrapping_add(1)
                .to_le_bytes()
        })
        .collect()
}

/// The host program on port 5000: reads the guest's 4 MiB (slowly at first, so the
/// guest runs out of credit), then writes 4 MiB back in uneven pieces, `pace` apart.
fn port_5000(listener: UnixListener, pace: Duration) -> Result<(), String> {
    let (mut s, _) = listener.accept().map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut got = vec![0u8; TOTAL];
    std::thread::sleep(Duration::from_millis(300));
    s.read_exact(&mut got)
        .map_err(|e| format!("reading the guest's stream: {e}"))?;
    for (k, w) in got.chunks_exact(8).enumerate() {
        let want = guest_word(k as u64);
        let have = u64::from_le_bytes(w.try_into().unwrap());
        if have != want {
            return Err(format!("guest word {k}: {have:#x}, expected {want:#x}"));
        }
    }
    let data = host_stream();
    for piece in data.chunks(12_345) {
        s.write_all(piece)
            .map_err(|e| format!("writing to the guest: {e}"))?;
        std::thread::sleep(pace);
    }
    // The guest then sends an unknown op; the device resets the connection.
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    Ok(())
}

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in '{line}'"))
}

#[test]
fn test_guest_moves_4_mib_each_way_over_vsock_with_credit_and_rsts() {
    if !kvm_available("vsock test guest") {
        return;
    }
    let dir = scratch("vsock-guest");
    let sock = dir.join("v.sock");
    let listener = UnixListener::bind(dir.join("v.sock_5000")).unwrap();
    let server = std::thread::spawn(move || port_5000(listener, Duration::ZERO));
    let mut vmm = Command::new(MINIVMM)
        .args(["--kernel", test_guest().to_str().unwrap()])
        .args(["--cmdline", "guest.test=vsock", "--mem", "64"])
        .args(["--vsock", &format!("cid=7,socket={}", sock.display())])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start minivmm");
    let stdout = vmm.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let mut next = |want: &str| -> String {
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(240))
                .unwrap_or_else(|_| panic!("no '{want}' line; so far: {lines:#?}"));
            lines.push(line.clone());
            assert!(
                !line.contains("vsock: no") && !line.contains("stalled"),
                "{line}"
            );
            if line.contains(want) {
                return line;
            }
        }
    };
    assert_eq!(field(&next("vsock: cid="), "cid="), "7");
    next("vsock: port 5001 refused with rst");
    let line = next("vsock: connected to 5000");
    assert_eq!(field(&line, "buf_alloc="), "262144");
    let line = next("vsock: sent ");
    let expected: Vec<u8> = (0..TOTAL as u64 / 8)
        .flat_map(|k| guest_word(k).to_le_bytes())
        .collect();
    assert_eq!(field(&line, "sum="), format!("{:016x}", sum(&expected)));
    // The host read slowly at first: the guest had to wait for credit.
    assert!(
        field(&line, "credit_waits=").parse::<u64>().unwrap() > 0,
        "{line}"
    );
    let line = next("vsock: received ");
    assert!(line.contains(&format!("received {TOTAL} bytes")), "{line}");
    assert_eq!(
        field(&line, "sum="),
        format!("{:016x}", sum(&host_stream()))
    );
    let in_flight: u64 = field(&line, "most_in_flight=").parse().unwrap();
    assert!(
        in_flight <= GUEST_BUF_ALLOC,
        "device sent past the guest's credit: {line}"
    );
    next("vsock: bad op answered with rst");
    server.join().unwrap().unwrap();
    next("vsock: listening on 6000");
    let mut host = UnixStream::connect(&sock).unwrap();
    host.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    host.write_all(b"CONNECT 6000\n").unwrap();
    let mut ok = [0u8; 64];
    let n = host.read(&mut ok).unwrap_or_else(|e| {
        std::thread::sleep(Duration::from_secs(3));
        let rest: Vec<String> = rx.try_iter().collect();
        panic!("no answer to CONNECT: {e}; guest said {rest:?}")
    });
    let ok = String::from_utf8_lossy(&ok[..n]).to_string();
    assert!(ok.starts_with("OK ") && ok.ends_with('\n'), "{ok:?}");
    host.write_all(b"ping").unwrap();
    let mut pong = [0u8; 4];
    host.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"pong");
    next("vsock: host said ping");
    next("vsock: done");
    // The guest shut the connection down: the host sees the end of the stream.
    assert_eq!(host.read(&mut pong).unwrap(), 0);
    next("minivmm-test-guest: reset");
    let status = vmm.wait().unwrap();
    let mut stderr = String::new();
    vmm.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(!sock.exists(), "the VM's socket is removed when it ends");
}

/// The same 4 MiB each way through the library, with the VM paused and resumed
/// three times while the streams flow (Firecracker's vsock once lost RX after a
/// pause): both checksums still match, and the device kept its credit rules.
#[test]
fn vsock_streams_survive_pause_and_resume() {
    if !kvm_available("vsock pause/resume") {
        return;
    }
    let dir = scratch("vsock-pause");
    let sock = dir.join("v.sock");
    let listener = UnixListener::bind(dir.join("v.sock_5000")).unwrap();
    // 340 pieces 2 ms apart: the stream to the guest lasts at least 0.68 s.
    let server = std::thread::spawn(move || port_5000(listener, Duration::from_millis(2)));
    let mut vm = vmm::VmBuilder::new(test_guest())
        .cmdline("guest.test=vsock")
        .memory_mib(64)
        .vsock(vmm::VsockConfig::new(&sock))
        .console_stream()
        .start()
        .unwrap();
    let mut console = vm.take_console().unwrap();
    let wait = |console: &mut vmm::ConsoleStream, marker: &str| {
        console
            .wait_for(marker, Duration::from_secs(240))
            .unwrap_or_else(|| panic!("no '{marker}' in {}", console.text()))
    };
    // The host reads nothing for 300 ms: the guest's stream is under way and waits
    // for credit while these pauses happen.
    wait(&mut console, "vsock: connected to 5000");
    for _ in 0..3 {
        vm.pause().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        vm.resume().unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
    let sent = wait(&mut console, "vsock: sent ");
    let expected: Vec<u8> = (0..TOTAL as u64 / 8)
        .flat_map(|k| guest_word(k).to_le_bytes())
        .collect();
    assert_eq!(field(&sent, "sum="), format!("{:016x}", sum(&expected)));
    // The host's stream lasts at least 0.68 s; these pauses take 0.24 s.
    for _ in 0..3 {
        vm.pause().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        vm.resume().unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
    let text = console.text();
    assert!(
        !text.contains("vsock: received"),
        "the pauses came too late: {text}"
    );
    let received = wait(&mut console, "vsock: received ");
    assert!(
        received.contains(&format!("received {TOTAL} bytes")),
        "{received}"
    );
    assert_eq!(
        field(&received, "sum="),
        format!("{:016x}", sum(&host_stream()))
    );
    let in_flight: u64 = field(&received, "most_in_flight=").parse().unwrap();
    assert!(in_flight <= GUEST_BUF_ALLOC, "{received}");
    wait(&mut console, "vsock: bad op answered with rst");
    server.join().unwrap().unwrap();
    vm.stop();
    let _ = vm.wait();
    assert!(!sock.exists());
}

/// A VM that ends while a caller waits for its agent: the wait ends at once with
/// `GuestExited`, not at its deadline and not as a timeout.
#[test]
fn waiting_for_the_agent_of_a_vm_that_ends_is_guest_exited() {
    if !kvm_available("vsock guest exited") {
        return;
    }
    let dir = scratch("vsock-exited");
    let vm = vmm::VmBuilder::new(test_guest())
        .cmdline("guest.test=hang")
        .memory_mib(64)
        .vsock(vmm::VsockConfig::new(dir.join("v.sock")))
        .console(vmm::ConsoleOutput::Null)
        .start()
        .unwrap();
    let sandbox = vm.sandbox().unwrap();
    let waiter = std::thread::spawn(move || {
        let start = std::time::Instant::now();
        (
            sandbox.wait_for_agent(Duration::from_secs(30)),
            start.elapsed(),
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    vm.stop();
    let _ = vm.wait();
    let (result, took) = waiter.join().unwrap();
    assert!(
        matches!(result, Err(vmm::SandboxError::GuestExited(_))),
        "{result:?}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
}
