//! The server run in this process (no command is spawned here, so no reaper races
//! the test harness): power-off through a stand-in action, refusal, and the
//! connection limit.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test, as clippy.toml allows in unit tests

mod common;

use agent_client::{AgentClient, ClientError, ErrorCode};
use common::scratch;
use minivmm_agent::{serve, ServerConfig};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn start(config: ServerConfig) -> (PathBuf, AgentClient) {
    let sock = scratch("inproc").join("agent.sock");
    let l = UnixListener::bind(&sock).unwrap();
    std::thread::spawn(move || serve(l, config));
    let c = AgentClient::unix(&sock).with_io_timeout(Duration::from_secs(10));
    (sock, c)
}

#[test]
fn power_off_syncs_answers_then_runs_the_action() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let (_, c) = start(ServerConfig {
        power_off: Some(Arc::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })),
        ..ServerConfig::default()
    });
    // SAFETY: geteuid has no memory effects.
    let root = unsafe { libc::geteuid() } == 0;
    match c.power_off() {
        Ok(()) => assert!(root),
        Err(ClientError::Remote { code, .. }) => {
            assert!(!root);
            assert_eq!(code, ErrorCode::PermissionDenied);
            return;
        }
        Err(e) => panic!("{e:?}"),
    }
    let start = Instant::now();
    while calls.load(Ordering::SeqCst) == 0 {
        assert!(start.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn power_off_can_be_refused() {
    let (_, c) = start(ServerConfig {
        power_off: None,
        ..ServerConfig::default()
    });
    match c.power_off() {
        Err(ClientError::Remote { code, .. }) => assert_eq!(code, ErrorCode::InvalidRequest),
        other => panic!("{other:?}"),
    }
}

#[test]
fn connections_past_the_limit_are_busy() {
    let (sock, c) = start(ServerConfig {
        max_connections: 1,
        power_off: None,
    });
    // The first connection the server ever sees holds the only slot while it sends
    // nothing (the server accepts in connection order, so the one below comes second;
    // a served connection before this one could still hold its slot for a moment).
    let held = UnixStream::connect(&sock).unwrap();
    match c.version() {
        Err(ClientError::Remote { code, .. }) => assert_eq!(code, ErrorCode::Busy),
        other => panic!("{other:?}"),
    }
    drop(held);
    let start = Instant::now();
    while c.version().is_err() {
        assert!(start.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(10));
    }
}
