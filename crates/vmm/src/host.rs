//! What minivmm needs to know about the host before it builds a VM: whether its KVM
//! runs guest code on hardware virtualization or emulates it (a nested KVM with no
//! VT-x/AMD-V below it, as on minivmm's development machines: see PLATFORM.md). One
//! probe, used by the VMM to pick the command-line preset and by the tests and benches
//! to decide what a guest can show on this host.

use crate::error::VmmError;
use boot::cmdline::{Preset, PresetChoice};
use std::path::Path;

/// Checks that `path` is a KVM device minivmm can use: it opens, and answers
/// KVM_GET_API_VERSION with the version minivmm speaks.
pub fn check_kvm(path: &Path) -> Result<(), VmmError> {
    crate::builder::open_kvm(path).map(drop)
}

/// Whether `/proc/cpuinfo` text shows hardware virtualization: `Some(true)` when a
/// `flags` line names `vmx` or `svm`, `Some(false)` when flags are listed without
/// them, `None` when there are no flags to judge by.
pub fn cpuinfo_has_hardware_virtualization(cpuinfo: &str) -> Option<bool> {
    let mut flags = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .peekable();
    flags.peek()?;
    Some(
        flags
            .into_iter()
            .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm")),
    )
}

/// True when this host's KVM emulates guest kernel code (an x86_64 host whose CPU
/// shows no `vmx`/`svm`), false when it has hardware virtualization, `None` when it
/// cannot tell (no readable `/proc/cpuinfo`, or an architecture without such a flag).
pub fn host_emulates_guest_code() -> Option<bool> {
    crate::platform::host_emulates_guest_code()
}

/// The preset `choice` comes to on this host.
pub(crate) fn resolve_preset(choice: PresetChoice) -> Option<Preset> {
    match choice {
        PresetChoice::Auto => choice.resolve(host_emulates_guest_code()),
        other => other.resolve(None),
    }
}

/// Raises this process's soft limit on open descriptors towards `wanted` (at most the
/// hard limit) when it is lower: each share may hold up to its [`virtiofs::Limits`]
/// in host descriptors, far more than the usual soft limit of 1024. A limit that
/// cannot be raised is logged; the guest then sees `EMFILE` sooner.
pub(crate) fn raise_fd_limit(wanted: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct, which `limit` is.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    let wanted = (wanted as libc::rlim_t).saturating_add(1024);
    if limit.rlim_cur >= wanted {
        return;
    }
    limit.rlim_cur = wanted.min(limit.rlim_max);
    // SAFETY: setrlimit reads one rlimit struct, which `limit` is.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        log::warn!(
            "cannot raise the open-file limit to {}: {}",
            limit.rlim_cur,
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_flags() {
        let hw = "processor\t: 0\nflags\t\t: fpu vme de pse vmx ept\n";
        let amd = "flags\t\t: fpu svm npt\nflags\t\t: fpu svm npt\n";
        let none = "processor\t: 0\nflags\t\t: fpu vme de pse hypervisor\n";
        assert_eq!(cpuinfo_has_hardware_virtualization(hw), Some(true));
        assert_eq!(cpuinfo_has_hardware_virtualization(amd), Some(true));
        assert_eq!(cpuinfo_has_hardware_virtualization(none), Some(false));
        // "vmx" inside another flag name does not count.
        let similar = "flags\t\t: fpu vmx_ept svmx\n";
        assert_eq!(cpuinfo_has_hardware_virtualization(similar), Some(false));
        assert_eq!(cpuinfo_has_hardware_virtualization(""), None);
        assert_eq!(
            cpuinfo_has_hardware_virtualization("Features\t: fp asimd\n"),
            None
        );
    }

    #[test]
    fn explicit_choices_ignore_the_host() {
        assert_eq!(resolve_preset(PresetChoice::Off), None);
        assert_eq!(
            resolve_preset(PresetChoice::Use(Preset::EmulatedKvm)),
            Some(Preset::EmulatedKvm)
        );
        let auto = resolve_preset(PresetChoice::Auto);
        assert_eq!(auto.is_some(), host_emulates_guest_code() == Some(true));
    }
}
