//! Fuzz target: arbitrary bytes as the guest agent's replies, decoded by the host
//! client (agent-client) and by the frame decoder (agent-proto).
//!
//! The first byte picks the exchange the client expects (version, exec with its
//! output, read-file, an ok answer, the vsock handshake then a version); the rest is
//! what the "agent" sent. The client must end in a value or a typed error: no panic,
//! no allocation past the limits, no hang (the input is finite). Then the whole input
//! after the first byte goes through the frame decoder, and every frame it accepts must re-encode to
//! exactly the bytes it came from (one encoding per frame).
#![no_main]

use agent_client::transport::read_handshake;
use agent_client::ReplyReader;
use agent_proto::Frame;
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

/// Output cap for the exec and read-file exchanges.
const LIMIT: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&select, rest)) = data.split_first() else {
        return;
    };
    let mut rr = ReplyReader::new(rest, Duration::ZERO);
    match select % 5 {
        0 => {
            let _ = rr.version();
        }
        1 => {
            if rr.started().is_ok() {
                if let Ok(out) = rr.exec_output(LIMIT) {
                    assert!(out.stdout.len() as u64 <= LIMIT);
                    assert!(out.stderr.len() as u64 <= LIMIT);
                }
            }
        }
        2 => {
            let mut out = Vec::new();
            if let Ok(size) = rr.file_to(&mut out, LIMIT) {
                assert_eq!(size, out.len() as u64);
            }
        }
        3 => {
            let _ = rr.ok("the fuzzed answer");
        }
        _ => {
            let mut r = rest;
            if read_handshake(&mut r).is_ok() {
                let _ = ReplyReader::new(r, Duration::ZERO).version();
            }
        }
    }

    let mut r = rest;
    loop {
        let before = r;
        match Frame::read_from(&mut r) {
            Ok(Some(frame)) => {
                let used = before.len() - r.len();
                let again = frame.encode().expect("a decoded frame encodes");
                assert_eq!(again, &before[..used], "{frame:?}");
            }
            _ => break,
        }
    }
});
