//! A vCPU's complete state, for snapshots: read from a parked vCPU and written into a
//! fresh one. x86_64 saves everything KVM keeps per vCPU; aarch64 says it is not
//! supported yet.

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86_64;

#[cfg(target_arch = "aarch64")]
pub use aarch64::{restore_vcpu, save_vcpu, VcpuState};
#[cfg(target_arch = "x86_64")]
pub use x86_64::{check_xsave_size, msrs_to_save, restore_vcpu, save_vcpu, VcpuState, XSAVE2_CAP};

/// Why a vCPU's state cannot be saved or restored.
#[derive(Debug, thiserror::Error)]
pub enum VcpuStateError {
    /// A KVM_GET_* ioctl failed.
    #[error("reading the vCPU's {0}: {1}")]
    Get(&'static str, #[source] kvm_ioctls::Error),
    /// A KVM_SET_* ioctl failed.
    #[error("writing the vCPU's {0}: {1}")]
    Set(&'static str, #[source] kvm_ioctls::Error),
    /// KVM took only part of the saved MSRs.
    #[error("KVM refused MSR {index:#x} ({set} of {total} MSRs written)")]
    MsrRefused {
        /// The first MSR KVM did not take.
        index: u32,
        /// MSRs written before it.
        set: usize,
        /// MSRs saved.
        total: usize,
    },
    /// A list too long for KVM's interface.
    #[error("too many {0} entries for KVM")]
    TooMany(&'static str),
    /// The vCPU's extended state is larger than the 4 KiB KVM_GET_XSAVE area (AMX).
    #[error(
        "the vCPU's XSAVE state needs {0} bytes; snapshots hold 4096 (AMX is not supported yet)"
    )]
    XsaveTooLarge(usize),
    /// The guest ran at a TSC frequency this host cannot give it.
    #[error("the guest's TSC ran at {0} kHz; this host cannot set it ({1})")]
    TscFrequency(u32, #[source] kvm_ioctls::Error),
    /// The architecture has no snapshot support yet.
    #[error("snapshots are not supported on {0} yet")]
    Unsupported(&'static str),
}

/// Finishes what the vCPU's last exit left for KVM to complete (the value of a port or
/// MMIO read, the instruction pointer past an `out`): KVM does that on the next
/// KVM_RUN, so one with immediate_exit set runs it without entering the guest. Call
/// it on a parked vCPU before saving its state, or the snapshot holds a half-done
/// instruction.
pub fn complete_pending_io(fd: &mut kvm_ioctls::VcpuFd) -> Result<(), VcpuStateError> {
    fd.set_kvm_immediate_exit(1);
    let result = fd.run().map(|_| ());
    fd.set_kvm_immediate_exit(0);
    match result {
        Err(e) if e.errno() == libc::EINTR => Ok(()),
        // Some exit came back instead: nothing was pending that needed the guest.
        Ok(()) => Ok(()),
        Err(e) => Err(VcpuStateError::Get("pending I/O completion", e)),
    }
}
