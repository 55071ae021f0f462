//! How a VM ended.

use crate::timeline::Timeline;
use std::fmt;
use vcpu::VcpuExitReason;

/// Why the VM stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// The guest asked for a reset (`reboot`, or a panic with `panic=N`).
    GuestReset,
    /// The guest powered off.
    GuestPowerOff,
    /// The guest kernel reported a panic (pvpanic, x86_64). Without that device, a
    /// panicking kernel reboots (`panic=1` in the default command line): a reset.
    GuestPanic,
    /// [`crate::VmHandle::stop`] (or a signal routed to it) stopped the VM.
    StopRequested,
    /// A vCPU stopped on something the guest did not ask for.
    VcpuFailed {
        /// Which vCPU.
        vcpu: u8,
        /// What happened.
        reason: VcpuExitReason,
        /// What the user can do about it, when minivmm knows (e.g. the command-line
        /// preset that keeps a guest off an instruction this host cannot emulate).
        hint: Option<String>,
    },
    /// The VMM itself failed while running the VM.
    Internal(String),
}

impl ExitReason {
    /// True when the guest itself asked to stop.
    pub fn is_guest_request(&self) -> bool {
        matches!(self, Self::GuestReset | Self::GuestPowerOff)
    }

    /// The process exit status minivmm's CLI uses for this reason: 0 when the guest
    /// asked to stop, 1 for failures; [`ExitReason::StopRequested`] gives 0 here (the
    /// CLI reports 128 + the signal number when a signal asked).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::GuestReset | Self::GuestPowerOff | Self::StopRequested => 0,
            Self::GuestPanic | Self::VcpuFailed { .. } | Self::Internal(_) => 1,
        }
    }

    /// The reason for vCPU `vcpu`'s `reason`; `hint` adds advice to a failure.
    pub(crate) fn from_vcpu(vcpu: u8, reason: VcpuExitReason, hint: Option<String>) -> Self {
        match reason {
            VcpuExitReason::Reset => Self::GuestReset,
            VcpuExitReason::PowerOff => Self::GuestPowerOff,
            VcpuExitReason::Stopped => Self::StopRequested,
            reason => Self::VcpuFailed { vcpu, reason, hint },
        }
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Self::GuestReset => write!(f, "guest requested a reset"),
            Self::GuestPowerOff => write!(f, "guest powered off"),
            Self::GuestPanic => write!(f, "the guest kernel panicked"),
            Self::StopRequested => write!(f, "stopped on request"),
            Self::VcpuFailed {
                vcpu,
                reason,
                hint: None,
            } => write!(f, "vCPU {vcpu}: {reason}"),
            Self::VcpuFailed {
                vcpu,
                reason,
                hint: Some(hint),
            } => write!(f, "vCPU {vcpu}: {reason}; {hint}"),
            Self::Internal(what) => write!(f, "VMM failure: {what}"),
        }
    }
}

/// The result of running a VM.
#[derive(Clone)]
pub struct VmExit {
    /// Why it stopped.
    pub reason: ExitReason,
    /// Its boot timeline, with the exit recorded.
    pub timeline: Timeline,
    /// Guest RAM the host held when the VM stopped (touched pages), in bytes.
    pub guest_memory_touched: u64,
}
