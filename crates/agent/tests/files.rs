//! Files through the real agent: write and read back, mode, atomic replacement,
//! errors, limits.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test, as clippy.toml allows in unit tests

mod common;

use agent_client::{ClientError, ErrorCode};
use common::{pattern, sha256_hex, Agent};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

fn leftovers(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("agent-tmp"))
        .collect()
}

#[test]
fn four_mib_round_trip_with_mode() {
    let agent = Agent::start();
    let c = agent.client();
    let data = pattern(4 << 20, 11);
    let path = agent.dir.join("big.bin");
    let p = path.to_str().unwrap();
    c.write_file(p, 0o640, &data).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    assert_eq!(meta.len(), data.len() as u64);
    let back = c.read_file(p).unwrap();
    assert_eq!(sha256_hex(&back), sha256_hex(&data));
    assert!(back == data);
    // Modes are exact, with no umask.
    c.write_file(p, 0o4755, b"x").unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o4755);
    assert!(leftovers(&agent.dir).is_empty());
}

#[test]
fn replacement_is_atomic() {
    let agent = Agent::start();
    let c = agent.client();
    let path = agent.dir.join("f");
    let p = path.to_str().unwrap();
    c.write_file(p, 0o644, b"old content").unwrap();
    let ino = std::fs::metadata(&path).unwrap().ino();
    let mut old = std::fs::File::open(&path).unwrap();
    c.write_file(p, 0o600, b"new").unwrap();
    // A new inode took the name; an open reader still sees the whole old file.
    assert_ne!(std::fs::metadata(&path).unwrap().ino(), ino);
    let mut s = String::new();
    old.read_to_string(&mut s).unwrap();
    assert_eq!(s, "old content");
    assert_eq!(std::fs::read(&path).unwrap(), b"new");
    assert!(leftovers(&agent.dir).is_empty());
}

#[test]
fn a_short_source_leaves_the_target_untouched() {
    let agent = Agent::start();
    let c = agent.client();
    let path = agent.dir.join("keep");
    let p = path.to_str().unwrap();
    c.write_file(p, 0o644, b"keep me").unwrap();
    let r = c.write_file_from(p, 0o644, 1000, &b"short"[..]);
    assert!(matches!(r, Err(ClientError::Source(_))), "{r:?}");
    assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
    // The agent removes its temporary file once it sees the connection close.
    let start = std::time::Instant::now();
    while !leftovers(&agent.dir).is_empty() {
        assert!(start.elapsed().as_secs() < 5, "{:?}", leftovers(&agent.dir));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn file_errors_are_reported() {
    let agent = Agent::start();
    let c = agent.client();
    let code = |r: Result<_, ClientError>| match r {
        Err(ClientError::Remote { code, .. }) => code,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        code(c.write_file("/no/such/dir/f", 0o644, &[0; 100_000])),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(c.read_file("/no/such/file").map(drop)),
        ErrorCode::NotFound
    );
    let dir = agent.dir.to_str().unwrap().to_string();
    assert_eq!(code(c.read_file(&dir).map(drop)), ErrorCode::InvalidRequest);
    assert_eq!(
        code(c.read_file("relative").map(drop)),
        ErrorCode::InvalidRequest
    );
    assert_eq!(
        code(c.write_file("relative", 0o644, b"x")),
        ErrorCode::InvalidRequest
    );
}

#[test]
fn reading_past_the_client_limit_fails() {
    let agent = Agent::start();
    let path = agent.dir.join("big");
    std::fs::write(&path, vec![1u8; 10_000]).unwrap();
    let c = agent.client().with_file_limit(9_999);
    match c.read_file(path.to_str().unwrap()) {
        Err(ClientError::OutputLimit { stream: "file", .. }) => {}
        other => panic!("{other:?}"),
    }
}
