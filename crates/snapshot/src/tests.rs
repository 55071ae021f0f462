#![allow(clippy::unwrap_used)] // test code: a failed unwrap fails the test

use super::*;
use serde::Deserialize;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct State {
    regs: Vec<u64>,
    name: String,
}

fn origin() -> Origin {
    Origin::new("0.1.0", "x86_64")
}

fn sample() -> Vec<u8> {
    let state = State {
        regs: (0..64).collect(),
        name: "vm".into(),
    };
    encode(&origin(), &state).unwrap()
}

#[test]
fn round_trip() {
    let back: State = decode(&origin(), &sample()).unwrap();
    assert_eq!(back.regs.len(), 64);
    assert_eq!(back.name, "vm");
}

#[test]
fn every_truncation_is_refused() {
    let bytes = sample();
    for len in 0..bytes.len() {
        let err = decode::<State>(&origin(), &bytes[..len]).unwrap_err();
        assert!(matches!(err, SnapshotError::Truncated(..)), "{len}: {err}");
    }
    let mut longer = bytes.clone();
    longer.push(b' ');
    assert!(matches!(
        decode::<State>(&origin(), &longer),
        Err(SnapshotError::TrailingBytes(1))
    ));
}

#[test]
fn every_flipped_bit_is_refused() {
    let bytes = sample();
    for byte in 0..bytes.len() {
        for bit in 0..8 {
            let mut bad = bytes.clone();
            bad[byte] ^= 1 << bit;
            let err = decode::<State>(&origin(), &bad).unwrap_err();
            let expected = match byte {
                0..=7 => matches!(err, SnapshotError::BadMagic),
                8..=63 => matches!(err, SnapshotError::Checksum { .. }),
                // A length grown or shrunk by the flip reads as truncated or trailing
                // only when the header's own CRC missed it, which it does not.
                _ => matches!(err, SnapshotError::Checksum { .. }),
            };
            assert!(expected, "byte {byte} bit {bit}: {err}");
        }
    }
}

#[test]
fn other_versions_and_arches_are_named() {
    let bytes = sample();
    let err = decode::<State>(&Origin::new("0.2.0", "x86_64"), &bytes).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the snapshot was written by minivmm 0.1.0; this is minivmm 0.2.0"
    );
    let err = decode::<State>(&Origin::new("0.1.0", "aarch64"), &bytes).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the snapshot is for x86_64; this host is aarch64"
    );
    // A future container format, with a valid header checksum.
    let mut h = Header::decode(&bytes).unwrap();
    h.format = FORMAT_VERSION + 1;
    let mut future = h.encode().to_vec();
    future.extend_from_slice(&bytes[HEADER_LEN..]);
    assert!(matches!(
        decode::<State>(&origin(), &future),
        Err(SnapshotError::FormatVersion {
            found: 2,
            supported: 1
        })
    ));
}

#[test]
fn a_body_of_another_shape_is_a_parse_error() {
    let bytes = encode(&origin(), &vec!["not", "a", "state"]).unwrap();
    assert!(matches!(
        decode::<State>(&origin(), &bytes),
        Err(SnapshotError::Body(_))
    ));
}

#[test]
fn files_are_written_whole() {
    let dir = std::env::temp_dir().join(format!("snapshot-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state");
    let state = State {
        regs: vec![7; 3],
        name: "x".into(),
    };
    write_file(&path, &origin(), &state).unwrap();
    assert_eq!(read_file::<State>(&path, &origin()).unwrap(), state);
    assert!(!dir.join("state.tmp").exists());
    let err = read_file::<State>(&dir.join("missing"), &origin()).unwrap_err();
    assert!(err.to_string().starts_with("reading "), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn long_names_are_refused_when_writing() {
    let o = Origin::new("0.1.0-a-very-long-prerelease", "x86_64");
    assert!(matches!(encode(&o, &1u8), Err(SnapshotError::Header(_))));
}
