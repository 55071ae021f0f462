//! The client against fake agents that misbehave: garbage, oversize frames, early
//! closes, silence, error answers, another protocol version, and a fake VMM vsock
//! socket for the CONNECT handshake. Every case must end in a typed error, quickly.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test, as clippy.toml allows in unit tests

use agent_client::{
    AgentClient, ClientError, ErrorCode, ExecRequest, ExitStatus, HandshakeError, ProtocolError,
};
use agent_proto::{ErrorReply, Exited, Frame, FrameError, Version, PROTOCOL_VERSION};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn sock_path() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "agent-client-fake-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("agent.sock")
}

/// A fake agent: for each connection, reads the request frame, writes `reply`, then
/// closes (or, with `hold`, keeps the connection open for a while).
fn fake(reply: Vec<u8>, hold: bool) -> AgentClient {
    let path = sock_path();
    let l = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let mut s = s.unwrap();
            let reply = reply.clone();
            std::thread::spawn(move || {
                let _ = Frame::read_from(&mut s);
                let _ = s.write_all(&reply);
                if hold {
                    std::thread::sleep(Duration::from_secs(10));
                }
            });
        }
    });
    AgentClient::unix(path).with_io_timeout(Duration::from_millis(500))
}

fn frames(f: &[Frame]) -> Vec<u8> {
    f.iter().flat_map(|f| f.encode().unwrap()).collect()
}

fn timed<T>(f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let r = f();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    r
}

#[test]
fn garbage_is_a_protocol_error() {
    let c = fake(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(), false);
    let r = timed(|| c.version());
    assert!(
        matches!(r, Err(ClientError::Protocol(ProtocolError::Frame(_)))),
        "{r:?}"
    );
}

#[test]
fn an_oversize_frame_is_refused_before_allocation() {
    let c = fake(vec![0xff, 0xff, 0xff, 0xff, 0x82], true);
    let r = timed(|| c.exec(&ExecRequest::new(["x"])));
    assert!(
        matches!(
            r,
            Err(ClientError::Protocol(ProtocolError::Frame(
                FrameError::PayloadTooLarge { .. }
            )))
        ),
        "{r:?}"
    );
}

#[test]
fn an_early_close_is_disconnected() {
    let c = fake(Vec::new(), false);
    let r = timed(|| c.version());
    assert!(matches!(r, Err(ClientError::Disconnected { .. })), "{r:?}");
    let c = fake(
        frames(&[
            Frame::Started { pid: 1 },
            Frame::Stdout(b"partial".to_vec()),
        ]),
        false,
    );
    let r = timed(|| c.exec(&ExecRequest::new(["x"])));
    assert!(matches!(r, Err(ClientError::Disconnected { .. })), "{r:?}");
    // In the middle of a frame.
    let mut half = Frame::Started { pid: 1 }.encode().unwrap();
    half.truncate(6);
    let c = fake(half, false);
    let r = timed(|| c.exec(&ExecRequest::new(["x"])));
    assert!(matches!(r, Err(ClientError::Disconnected { .. })), "{r:?}");
}

#[test]
fn a_silent_agent_times_out() {
    let c = fake(Vec::new(), true);
    let r = timed(|| c.version());
    assert!(matches!(r, Err(ClientError::AgentTimeout { .. })), "{r:?}");
    let r = timed(|| c.read_file("/x"));
    assert!(matches!(r, Err(ClientError::AgentTimeout { .. })), "{r:?}");
}

#[test]
fn wrong_frames_and_error_answers() {
    let c = fake(frames(&[Frame::Ok]), false);
    let r = timed(|| c.exec(&ExecRequest::new(["x"])));
    assert!(
        matches!(
            r,
            Err(ClientError::Protocol(ProtocolError::Unexpected { .. }))
        ),
        "{r:?}"
    );
    let c = fake(
        frames(&[Frame::Error(ErrorReply::new(ErrorCode::Other(999), "new"))]),
        false,
    );
    match timed(|| c.power_off()) {
        Err(ClientError::Remote { code, message }) => {
            assert_eq!(code, ErrorCode::Other(999));
            assert_eq!(message, "new");
        }
        other => panic!("{other:?}"),
    }
    let c = fake(
        frames(&[Frame::FileInfo { size: 5 }, Frame::FileData(vec![0; 6])]),
        false,
    );
    let r = timed(|| c.read_file("/x"));
    assert!(
        matches!(
            r,
            Err(ClientError::Protocol(ProtocolError::SizeMismatch { .. }))
        ),
        "{r:?}"
    );
}

#[test]
fn another_protocol_version_is_incompatible() {
    let c = fake(
        frames(&[Frame::Version(Version {
            agent: "9.9".into(),
            protocol: PROTOCOL_VERSION + 1,
        })]),
        false,
    );
    let r = timed(|| c.wait_for_agent(Duration::from_secs(2)));
    assert!(
        matches!(r, Err(ClientError::IncompatibleAgent { .. })),
        "{r:?}"
    );
}

#[test]
fn a_session_whose_agent_dies_reports_it() {
    let c = fake(
        frames(&[Frame::Started { pid: 9 }, Frame::Stdout(b"abc".to_vec())]),
        false,
    );
    let mut s = timed(|| c.spawn(&ExecRequest::new(["x"]))).unwrap();
    assert_eq!(s.pid(), 9);
    let mut out = s.stdout.take().unwrap();
    let mut buf = [0u8; 3];
    out.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"abc");
    // The stream then fails instead of ending cleanly, and wait says why.
    assert!(out.read(&mut buf).is_err());
    let r = timed(|| s.wait());
    assert!(matches!(r, Err(ClientError::Disconnected { .. })), "{r:?}");
}

/// A fake VMM vsock socket: answers `CONNECT <port>` with `answer`, then (if it was
/// OK) serves one fake agent reply.
fn fake_vmm(answer: &'static str, reply: Vec<u8>) -> PathBuf {
    let path = sock_path();
    let l = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let s: UnixStream = s.unwrap();
            let reply = reply.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                assert_eq!(line, "CONNECT 52\n");
                let mut s = s;
                s.write_all(answer.as_bytes()).unwrap();
                if answer.starts_with("OK") {
                    let _ = Frame::read_from(&mut r);
                    let _ = s.write_all(&reply);
                }
            });
        }
    });
    path
}

#[test]
fn vsock_handshake_then_protocol() {
    let reply = frames(&[
        Frame::Started { pid: 3 },
        Frame::Stdout(b"hi".to_vec()),
        Frame::Exited(Exited {
            status: ExitStatus::Code(0),
            timed_out: false,
        }),
    ]);
    let c = AgentClient::vsock(fake_vmm("OK 1073741824\n", reply), 52);
    let out = timed(|| c.exec(&ExecRequest::new(["x"]))).unwrap();
    assert_eq!(out.stdout, b"hi");

    // A VMM that refuses: a handshake error, and wait_for_agent keeps trying until
    // its deadline.
    let c = AgentClient::vsock(fake_vmm("NOPE\n", Vec::new()), 52);
    let r = timed(|| c.version());
    assert!(
        matches!(
            r,
            Err(ClientError::Handshake {
                source: HandshakeError::Refused(_),
                ..
            })
        ),
        "{r:?}"
    );
    let start = Instant::now();
    let r = c.wait_for_agent(Duration::from_millis(500));
    assert!(matches!(r, Err(ClientError::AgentTimeout { .. })), "{r:?}");
    assert!(start.elapsed() < Duration::from_secs(1));
}
