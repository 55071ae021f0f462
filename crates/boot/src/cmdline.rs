//! The kernel command line: minivmm's defaults, the user's additions, presets for
//! particular hosts, and the device entries the VMM adds itself.

use crate::BootError;
use linux_loader::cmdline::{Cmdline, Error as CmdlineError};
use std::str::FromStr;

/// Default kernel command line. `--cmdline` text is appended to it, unless the user
/// asks to drop it (`--no-default-cmdline`).
#[cfg(target_arch = "x86_64")]
pub const DEFAULT_CMDLINE: &str =
    "console=ttyS0 reboot=k panic=1 pci=off nomodules i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd";
/// Default kernel command line. `--cmdline` text is appended to it, unless the user
/// asks to drop it (`--no-default-cmdline`). Reset and power-off go through PSCI.
#[cfg(target_arch = "aarch64")]
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 panic=1 nomodules";

/// Command-line additions needed on nested, paging-only KVM hosts that emulate guest
/// kernel code instruction by instruction (see docs/PLATFORM notes): keep the kernel
/// away from CPU features KVM's instruction emulator does not implement.
pub const EMULATED_KVM_PRESET: &str = "noxsave nosmap nosmep clearcpuid=popcnt,cx16,rdrand,rdseed,avx,avx2,avx512f,sse4_2,sse4_1,ssse3,aes,pclmulqdq,fsgsbase,erms,fsrm,bmi1,bmi2,smap,smep,umip,pku,rdpid,rtm,hle,invpcid,pcid,movbe,f16c,fma,adx,sha_ni,clflushopt,clwb,xsaveopt,xsavec,xsaves";

/// A named set of command-line additions for a kind of host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// Nested KVM that emulates guest kernel code (no hardware virtualization below).
    EmulatedKvm,
}

impl Preset {
    /// The arguments this preset adds.
    pub fn args(self) -> &'static str {
        match self {
            Preset::EmulatedKvm => EMULATED_KVM_PRESET,
        }
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Preset::EmulatedKvm => "emulated-kvm",
        })
    }
}

impl FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "emulated-kvm" => Ok(Preset::EmulatedKvm),
            other => Err(format!(
                "unknown command-line preset '{other}' (known: emulated-kvm)"
            )),
        }
    }
}

/// Which preset a VM boots with: decided from the host (the default), none, or one
/// the user named.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PresetChoice {
    /// The preset this host needs, if any, decided when the VM is built (`auto`).
    #[default]
    Auto,
    /// No preset, whatever the host (`none`).
    Off,
    /// This preset, whatever the host.
    Use(Preset),
}

impl PresetChoice {
    /// The preset to apply, given whether the host's KVM emulates guest kernel code
    /// (`None`: cannot tell, which applies none).
    pub fn resolve(self, host_emulates_guest_code: Option<bool>) -> Option<Preset> {
        match self {
            PresetChoice::Auto => {
                (host_emulates_guest_code == Some(true)).then_some(Preset::EmulatedKvm)
            }
            PresetChoice::Off => None,
            PresetChoice::Use(p) => Some(p),
        }
    }
}

impl From<Preset> for PresetChoice {
    fn from(p: Preset) -> Self {
        PresetChoice::Use(p)
    }
}

impl std::fmt::Display for PresetChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PresetChoice::Auto => f.write_str("auto"),
            PresetChoice::Off => f.write_str("none"),
            PresetChoice::Use(p) => p.fmt(f),
        }
    }
}

impl FromStr for PresetChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(PresetChoice::Auto),
            "none" => Ok(PresetChoice::Off),
            other => other.parse().map(PresetChoice::Use).map_err(|_| {
                format!("unknown command-line preset '{other}' (known: auto, none, emulated-kvm)")
            }),
        }
    }
}

fn describe(err: CmdlineError, len: usize, capacity: usize) -> BootError {
    match err {
        CmdlineError::TooLarge => BootError::Cmdline(format!(
            "{len} bytes is longer than the kernel accepts ({} bytes at most)",
            capacity - 1
        )),
        other => BootError::Cmdline(other.to_string()),
    }
}

/// Assembles the command line: defaults (unless `use_defaults` is false), then the
/// preset, then the user's text. `capacity` counts the terminating NUL.
pub fn build_cmdline(
    use_defaults: bool,
    preset: Option<Preset>,
    user: Option<&str>,
    capacity: usize,
) -> Result<Cmdline, BootError> {
    let mut parts: Vec<&str> = Vec::new();
    if use_defaults {
        parts.push(DEFAULT_CMDLINE);
    }
    if let Some(p) = preset {
        parts.push(p.args());
    }
    if let Some(u) = user.map(str::trim).filter(|u| !u.is_empty()) {
        parts.push(u);
    }
    let text = parts.join(" ");
    if text.contains('\0') {
        return Err(BootError::Cmdline("contains a NUL byte".into()));
    }
    if text.is_empty() {
        return Cmdline::new(capacity).map_err(|e| describe(e, 0, capacity));
    }
    if text.len() >= capacity {
        return Err(describe(CmdlineError::TooLarge, text.len(), capacity));
    }
    Cmdline::try_from(&text, capacity).map_err(|e| describe(e, text.len(), capacity))
}

/// Appends an argument the VMM itself needs (device descriptions and such).
pub fn append(cmdline: &mut Cmdline, arg: &str, capacity: usize) -> Result<(), BootError> {
    let len = cmdline
        .as_cstring()
        .map(|c| c.as_bytes().len())
        .unwrap_or(0)
        + arg.len()
        + 1;
    cmdline
        .insert_str(arg)
        .map_err(|e| describe(e, len, capacity))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(c: &Cmdline) -> String {
        c.as_cstring().unwrap().into_string().unwrap()
    }

    /// Found by the boot_layout fuzz target: a NUL in the user's text (possible from a
    /// config file or the library) passed here and failed later, as a bare
    /// "NullTerminator", when the command line was written to the guest.
    #[test]
    fn nul_bytes_are_refused_up_front() {
        let err = build_cmdline(true, None, Some("quiet\0init=/x"), 2048).unwrap_err();
        assert_eq!(err.to_string(), "kernel command line: contains a NUL byte");
    }

    #[test]
    fn defaults_then_preset_then_user() {
        let c = build_cmdline(
            true,
            Some(Preset::EmulatedKvm),
            Some(" root=/dev/vda "),
            2048,
        )
        .unwrap();
        let text = s(&c);
        assert!(text.starts_with(DEFAULT_CMDLINE));
        assert!(text.contains("noxsave"));
        assert!(text.ends_with("root=/dev/vda"));
    }

    #[test]
    fn user_text_replaces_defaults_when_asked() {
        let c = build_cmdline(false, None, Some("console=hvc0 quiet"), 2048).unwrap();
        assert_eq!(s(&c), "console=hvc0 quiet");
        assert_eq!(s(&build_cmdline(false, None, None, 2048).unwrap()), "");
    }

    #[test]
    fn init_args_stay_after_separator() {
        let c = build_cmdline(false, None, Some("quiet -- arg1 arg2"), 2048).unwrap();
        assert_eq!(s(&c), "quiet -- arg1 arg2");
    }

    #[test]
    fn too_long_is_a_clear_error() {
        let long = "a".repeat(3000);
        let err = build_cmdline(true, None, Some(&long), 2048).unwrap_err();
        assert!(
            err.to_string()
                .contains("longer than the kernel accepts (2047 bytes at most)"),
            "{err}"
        );
        let mut c = build_cmdline(false, None, Some(&"b".repeat(2040)), 2048).unwrap();
        assert!(append(&mut c, "virtio_mmio.device=4K@0xd0001000:5", 2048).is_err());
    }

    #[test]
    fn preset_choices() {
        assert_eq!("auto".parse::<PresetChoice>(), Ok(PresetChoice::Auto));
        assert_eq!("none".parse::<PresetChoice>(), Ok(PresetChoice::Off));
        assert_eq!(
            "emulated-kvm".parse::<PresetChoice>(),
            Ok(PresetChoice::Use(Preset::EmulatedKvm))
        );
        assert!("warp"
            .parse::<PresetChoice>()
            .unwrap_err()
            .contains("'warp'"));
        for c in ["auto", "none", "emulated-kvm"] {
            assert_eq!(c.parse::<PresetChoice>().unwrap().to_string(), c);
        }
        let emulated = Some(Preset::EmulatedKvm);
        assert_eq!(PresetChoice::Auto.resolve(Some(true)), emulated);
        assert_eq!(PresetChoice::Auto.resolve(Some(false)), None);
        assert_eq!(PresetChoice::Auto.resolve(None), None);
        assert_eq!(PresetChoice::Off.resolve(Some(true)), None);
        assert_eq!(
            PresetChoice::Use(Preset::EmulatedKvm).resolve(Some(false)),
            emulated
        );
    }

    #[test]
    fn preset_names() {
        assert_eq!(
            "emulated-kvm".parse::<Preset>().unwrap(),
            Preset::EmulatedKvm
        );
        assert!("fast".parse::<Preset>().is_err());
    }
}
