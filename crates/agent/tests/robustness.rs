//! The real agent against broken hosts, and the client against absent agents.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test, as clippy.toml allows in unit tests

mod common;

use agent_client::{AgentClient, ClientError, ErrorCode, ExecRequest, ExitStatus};
use agent_proto::{Frame, Kind};
use common::{scratch, Agent};
use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

/// Sends raw bytes, then returns the agent's first frame and whether the connection
/// then ends.
fn raw(agent: &Agent, bytes: &[u8]) -> (Frame, bool) {
    let mut s = UnixStream::connect(&agent.sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let f = Frame::read_from(&mut s).unwrap().unwrap();
    let closed = matches!(Frame::read_from(&mut s), Ok(None) | Err(_));
    (f, closed)
}

fn error_code(f: Frame) -> ErrorCode {
    match f {
        Frame::Error(e) => e.code,
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_and_unknown_frames_get_an_error_then_close() {
    let agent = Agent::start();
    let (f, closed) = raw(&agent, &[0, 0, 0, 0, 1]);
    assert_eq!(error_code(f), ErrorCode::BadFrame);
    assert!(closed);
    let (f, closed) = raw(&agent, &[1, 0, 0, 0, 0x7e]);
    assert_eq!(error_code(f), ErrorCode::UnknownKind);
    assert!(closed);
    let (f, closed) = raw(&agent, &[0xff, 0xff, 0xff, 0xff, Kind::Exec as u8]);
    assert_eq!(error_code(f), ErrorCode::BadFrame);
    assert!(closed);
    // A valid frame that cannot start a connection.
    let (f, closed) = raw(&agent, &Frame::StdinClose.encode().unwrap());
    assert_eq!(error_code(f), ErrorCode::UnexpectedFrame);
    assert!(closed);
    // A broken frame in the middle of an exec (signal 0) kills the command.
    let mut bytes = Frame::Exec(ExecRequest::new(["sleep", "100"]))
        .encode()
        .unwrap();
    bytes.extend_from_slice(&[5, 0, 0, 0, Kind::Signal as u8, 0, 0, 0, 0]);
    let start = Instant::now();
    let mut s = UnixStream::connect(&agent.sock).unwrap();
    s.write_all(&bytes).unwrap();
    let mut frames = Vec::new();
    while let Ok(Some(f)) = Frame::read_from(&mut s) {
        frames.push(f);
    }
    assert!(matches!(frames[0], Frame::Started { .. }), "{frames:?}");
    assert!(
        matches!(&frames[1], Frame::Error(e) if e.code == ErrorCode::BadFrame),
        "{frames:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    // And it still serves.
    let out = agent.client().exec(&ExecRequest::new(["true"])).unwrap();
    assert_eq!(out.status, ExitStatus::Code(0));
}

#[test]
fn any_protocol_version_gets_the_version_answer() {
    let agent = Agent::start();
    let (f, _) = raw(
        &agent,
        &Frame::VersionRequest { protocol: 99 }.encode().unwrap(),
    );
    match f {
        Frame::Version(v) => {
            assert_eq!(v.protocol, agent_proto::PROTOCOL_VERSION);
            assert_eq!(v.agent, env!("CARGO_PKG_VERSION"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn waiting_for_no_agent_times_out_in_time() {
    let dir = scratch("none");
    for c in [
        AgentClient::unix(dir.join("absent.sock")),
        AgentClient::vsock(dir.join("absent.sock"), 52),
    ] {
        let start = Instant::now();
        let r = c.wait_for_agent(Duration::from_millis(700));
        let took = start.elapsed();
        match r {
            Err(ClientError::AgentTimeout {
                last: Some(last), ..
            }) => {
                assert!(matches!(*last, ClientError::Connect { .. }), "{last:?}")
            }
            other => panic!("{other:?}"),
        }
        assert!(
            took >= Duration::from_millis(700) && took < Duration::from_millis(1200),
            "{took:?}"
        );
    }
    // A listener that never accepts nor answers: the version read times out.
    let l = UnixListener::bind(dir.join("mute.sock")).unwrap();
    let start = Instant::now();
    let r = AgentClient::unix(dir.join("mute.sock")).wait_for_agent(Duration::from_millis(700));
    assert!(matches!(r, Err(ClientError::AgentTimeout { .. })), "{r:?}");
    assert!(
        start.elapsed() < Duration::from_millis(1200),
        "{:?}",
        start.elapsed()
    );
    drop(l);
    let _ = std::fs::remove_dir_all(dir);
}
