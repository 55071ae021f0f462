//! Fuzz target: arbitrary bytes as a snapshot's state file. The container (header,
//! lengths, checksums, origin) must end in a typed error or a body; arbitrary bytes as
//! the JSON body must parse into a `SnapshotState` or fail, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm::snapshot::{origin, SnapshotState};

fuzz_target!(|data: &[u8]| {
    let _ = snapshot::decode::<SnapshotState>(&origin(), data);
    if let Ok(state) = serde_json::from_slice::<SnapshotState>(data) {
        // What parses writes back out, and reads again.
        let bytes = snapshot::encode(&origin(), &state).expect("encode a parsed state");
        snapshot::decode::<SnapshotState>(&origin(), &bytes).expect("decode what was encoded");
    }
});
