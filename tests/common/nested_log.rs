//! Reading what an L1 of the nested harnesses printed: each L2 run sits between
//! "=== BEGIN NAME" and "=== END NAME rc=N" (tests/nested/l1-lib.sh).
#![allow(dead_code)]

/// One L2 run's console and minivmm's status, cut from L1's output.
pub struct L2Run {
    pub output: String,
    pub rc: i32,
}

/// The last run called `name` (a retried run appears twice).
pub fn section(log: &str, name: &str) -> L2Run {
    let begin = format!("=== BEGIN {name}\n");
    let start = log
        .rfind(&begin)
        .unwrap_or_else(|| panic!("no '{name}' section in:\n{log}"))
        + begin.len();
    let rest = &log[start..];
    let end_marker = format!("=== END {name} rc=");
    let end = rest
        .find(&end_marker)
        .unwrap_or_else(|| panic!("'{name}' did not end:\n{rest}"));
    let rc = rest[end + end_marker.len()..]
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .parse()
        .unwrap_or(-1);
    L2Run {
        output: rest[..end].to_string(),
        rc,
    }
}

/// The word after `key` in `text` ("" if none).
pub fn value<'a>(text: &'a str, key: &str) -> &'a str {
    text.split(key)
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or("")
}

/// The last `n` lines of `text`, for failure messages that CI logs cut in the middle.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A `run_l2_net` section: the guest's lease, ping, and the three transfers checked by
/// checksum on both sides; the tap minivmm created is gone afterwards.
pub fn check_network(run: &L2Run, tap: &str) {
    let out = &run.output;
    assert_eq!(run.rc, 0, "{out}");
    let removed = format!("L1: {tap} removed");
    for line in [
        "MINIVMM-GUEST: eth0 mac=02:",
        "lease of 10.0.2.15 obtained",
        "MINIVMM-GUEST: eth0 inet 10.0.2.15/24",
        "MINIVMM-GUEST: ping 3 packets transmitted, 3 packets received",
        "MINIVMM-GUEST: powering off",
        &removed,
    ] {
        assert!(out.contains(line), "missing '{line}':\n{out}");
    }
    for (guest, host) in [
        ("MINIVMM-GUEST: small sha256=", "L1: small sha256="),
        ("MINIVMM-GUEST: big sha256=", "L1: big sha256="),
        ("MINIVMM-GUEST: upload sha256=", "L1: upload sha256="),
    ] {
        let g = value(out, guest);
        assert_eq!(g.len(), 64, "no checksum after '{guest}':\n{out}");
        assert_eq!(
            g,
            value(out, host),
            "'{guest}' differs from '{host}':\n{out}"
        );
    }
}
