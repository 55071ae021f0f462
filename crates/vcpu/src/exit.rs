//! Why a vCPU stopped, and the details gathered when KVM gives up on the guest.

use kvm_ioctls::VcpuFd;
use std::fmt;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Longest x86 instruction.
const MAX_INSN_LEN: usize = 15;

/// Details of a KVM_EXIT_INTERNAL_ERROR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InternalErrorInfo {
    /// KVM's suberror (1 = emulation failure).
    pub suberror: u32,
    /// Guest RIP at the failure.
    pub rip: u64,
    /// The bytes at RIP, when they could be read.
    pub instruction: Vec<u8>,
}

impl fmt::Display for InternalErrorInfo {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let what = match self.suberror {
            1 => " (emulation failure)",
            2 => " (simultaneous exception)",
            3 => " (delivery event)",
            _ => "",
        };
        write!(
            f,
            "suberror {}{what}, RIP {:#x}, instruction bytes [",
            self.suberror, self.rip
        )?;
        for (i, b) in self.instruction.iter().enumerate() {
            write!(f, "{}{b:02x}", if i > 0 { " " } else { "" })?;
        }
        if self.instruction.is_empty() {
            write!(f, "unreadable")?;
        }
        write!(f, "]")
    }
}

/// Why a vCPU's run loop ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VcpuExitReason {
    /// The guest asked for a reset (i8042, or KVM system event).
    Reset,
    /// The guest asked to power off.
    PowerOff,
    /// The VMM stopped the vCPU.
    Stopped,
    /// The guest executed HLT without an in-kernel LAPIC to wake it.
    Halted,
    /// KVM_EXIT_SHUTDOWN: the guest triple-faulted.
    TripleFault {
        /// RIP when it happened.
        rip: u64,
    },
    /// KVM could not run or emulate the guest.
    InternalError(InternalErrorInfo),
    /// VM entry failed.
    FailEntry {
        /// Hardware entry-failure reason.
        reason: u64,
        /// Host CPU.
        cpu: u32,
    },
    /// KVM_RUN returned an error.
    RunFailed(i32),
    /// An exit the VMM does not handle.
    Unexpected(String),
}

impl VcpuExitReason {
    /// True when the guest itself asked to stop (reset or power-off).
    pub fn is_guest_request(&self) -> bool {
        matches!(self, Self::Reset | Self::PowerOff)
    }
}

impl fmt::Display for VcpuExitReason {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Self::Reset => write!(f, "guest requested a reset"),
            Self::PowerOff => write!(f, "guest powered off"),
            Self::Stopped => write!(f, "stopped by the VMM"),
            Self::Halted => write!(f, "guest halted"),
            Self::TripleFault { rip } => {
                write!(f, "guest triple fault (KVM_EXIT_SHUTDOWN) at RIP {rip:#x}")
            }
            Self::InternalError(info) => write!(f, "KVM internal error: {info}"),
            Self::FailEntry { reason, cpu } => {
                write!(
                    f,
                    "VM entry failed: hardware reason {reason:#x} on host CPU {cpu}"
                )
            }
            Self::RunFailed(errno) => {
                write!(
                    f,
                    "KVM_RUN failed: {}",
                    std::io::Error::from_raw_os_error(*errno)
                )
            }
            Self::Unexpected(what) => write!(f, "unexpected vCPU exit: {what}"),
        }
    }
}

/// Gathers suberror, RIP and the instruction bytes after KVM_EXIT_INTERNAL_ERROR.
pub(crate) fn internal_error_info(fd: &mut VcpuFd, mem: &GuestMemoryMmap) -> InternalErrorInfo {
    // SAFETY: the exit reason is KVM_EXIT_INTERNAL_ERROR, so `internal` is the active
    // member of the kvm_run exit union.
    let suberror = unsafe { fd.get_kvm_run().__bindgen_anon_1.internal.suberror };
    let rip = crate::arch::program_counter(fd);
    let mut instruction = Vec::new();
    if let Some(physical) = crate::arch::guest_physical(fd, rip) {
        // Read byte by byte so an instruction at the end of RAM still shows its start.
        for i in 0..MAX_INSN_LEN as u64 {
            match mem.read_obj::<u8>(GuestAddress(physical + i)) {
                Ok(v) => instruction.push(v),
                Err(_) => break,
            }
        }
    }
    InternalErrorInfo {
        suberror,
        rip,
        instruction,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_error_names_suberror_rip_and_bytes() {
        let info = InternalErrorInfo {
            suberror: 1,
            rip: 0x200123,
            instruction: vec![0xf3, 0x48, 0x0f, 0xb8, 0x00],
        };
        let text = VcpuExitReason::InternalError(info).to_string();
        assert_eq!(
            text,
            "KVM internal error: suberror 1 (emulation failure), RIP 0x200123, instruction bytes [f3 48 0f b8 00]"
        );
    }

    #[test]
    fn guest_requests() {
        assert!(VcpuExitReason::Reset.is_guest_request());
        assert!(VcpuExitReason::PowerOff.is_guest_request());
        assert!(!VcpuExitReason::TripleFault { rip: 0 }.is_guest_request());
        assert!(!VcpuExitReason::Stopped.is_guest_request());
        assert!(VcpuExitReason::TripleFault { rip: 0x10 }
            .to_string()
            .contains("triple fault"));
    }
}
