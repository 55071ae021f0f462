//! When a minivmm test may skip.
//!
//! A test that cannot run on this host (no `/dev/kvm`, not root, a missing tool, a
//! developer's opt-out) calls [`skip`] and returns. On a developer's machine that
//! prints `SKIPPED <test>: <why>` and the test passes. Under CI (`CI=true`, which CI
//! sets) it panics instead, so a CI host that lost `/dev/kvm` or a package cannot
//! pass green with the suite unrun.
//!
//! The only skips CI accepts are the ones the platform makes impossible by design,
//! listed here in [`PlatformSkip`], each with its reason; a test names the entry it
//! relies on through [`platform_skip`].

use std::fmt::Display;

/// A skip that CI accepts: the platform rules the test out by design.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlatformSkip {
    /// seccomp filter tests of the aarch64 build: CI runs the aarch64 unit tests under
    /// qemu-user, which does not implement seccomp(2) (ENOSYS). The filters
    /// themselves are exercised for aarch64 in the nested arm64 harness instead.
    SeccompUnderQemuUser,
}

impl PlatformSkip {
    /// Every skip CI accepts.
    pub const ALL: &'static [PlatformSkip] = &[PlatformSkip::SeccompUnderQemuUser];

    /// Why the platform rules the test out.
    pub fn reason(self) -> &'static str {
        match self {
            PlatformSkip::SeccompUnderQemuUser => {
                "qemu-user (which runs the aarch64 unit tests) does not implement seccomp(2)"
            }
        }
    }
}

/// True when running under CI: the `CI` variable is `true` or `1`.
pub fn under_ci() -> bool {
    matches!(
        std::env::var("CI")
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Ok("true" | "1")
    )
}

/// The line a skip prints, and the message it fails with under CI.
fn message(test: &str, why: &dyn Display) -> String {
    format!("SKIPPED {test}: {why}")
}

/// `test` cannot run here because of `why`. Prints the reason and returns (the caller
/// then returns) outside CI; panics under CI, naming the test and the reason.
#[track_caller]
pub fn skip(test: &str, why: impl Display) {
    let text = message(test, &why);
    if under_ci() {
        panic!(
            "{text}\nCI=true: a test that would skip fails under CI (only the skips listed in \
             crates/test-skips are accepted there)"
        );
    }
    eprintln!("{text}");
}

/// `test` cannot run here for a reason the platform imposes by design (`which`, one of
/// [`PlatformSkip::ALL`]); `detail` says what was observed. Prints and returns, under
/// CI too.
pub fn platform_skip(test: &str, which: PlatformSkip, detail: impl Display) {
    eprintln!(
        "{} (accepted under CI: {})",
        message(test, &detail),
        which.reason()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_platform_skip_has_a_reason() {
        for s in PlatformSkip::ALL {
            assert!(s.reason().len() > 20, "{s:?}");
        }
    }

    #[test]
    fn skip_fails_exactly_under_ci() {
        let outcome = std::panic::catch_unwind(|| skip("example", "no widget here"));
        assert_eq!(outcome.is_err(), under_ci());
        platform_skip("example", PlatformSkip::SeccompUnderQemuUser, "ENOSYS");
    }
}
