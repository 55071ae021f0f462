//! A vCPU's complete state, for snapshots: read from a parked vCPU and written into a
//! fresh one. x86_64 saves everything KVM keeps per vCPU; aarch64 says it is not
//! supported yet.

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86_64;

#[cfg(target_arch = "aarch64")]
pub use aarch64::{check_host_features, restore_vcpu, save_vcpu, snapshot_support, VcpuState};
#[cfg(target_arch = "x86_64")]
pub use x86_64::{
    check_host_features, check_xsave_size, missing_features, msrs_to_save, restore_vcpu, save_vcpu,
    snapshot_support, VcpuState, XSAVE2_CAP,
};

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
    /// The snapshot's guest was given CPU features this host lacks.
    #[error("this host's CPU lacks features the snapshot's guest was given: {0}")]
    HostLacksFeatures(String),
    /// The vCPU was in the middle of an instruction with more I/O to do.
    #[error("a vCPU was in the middle of an I/O instruction; take the snapshot again")]
    IoInFlight,
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
        // An exit came back: the instruction goes on with more I/O (string I/O, a
        // split MMIO access) that this thread would have to serve; not saved mid-way.
        Ok(()) => Err(VcpuStateError::IoInFlight),
        Err(e) => Err(VcpuStateError::Get("pending I/O completion", e)),
    }
}

/// A request to parked vCPU threads to save their state: each thread adds its own
/// vCPU's result; the VMM waits until all are in.
#[derive(Debug)]
pub struct SaveJob {
    msrs: Vec<u32>,
    results: std::sync::Mutex<Vec<(u8, Result<VcpuState, VcpuStateError>)>>,
    done: std::sync::Condvar,
}

impl SaveJob {
    /// A job saving `msrs` (see `msrs_to_save`) with the rest of each vCPU's state.
    pub fn new(msrs: Vec<u32>) -> Self {
        Self {
            msrs,
            results: std::sync::Mutex::new(Vec::new()),
            done: std::sync::Condvar::new(),
        }
    }

    /// Run by a parked vCPU thread with its own vCPU.
    pub fn serve(&self, id: u8, fd: &mut kvm_ioctls::VcpuFd) {
        let result = complete_pending_io(fd).and_then(|()| save_vcpu(fd, &self.msrs));
        let mut results = self.results.lock().unwrap_or_else(|p| p.into_inner());
        results.push((id, result));
        self.done.notify_all();
    }

    /// Waits until `count` vCPUs have answered or `timeout` passes; the states in vCPU
    /// order, or the first error.
    pub fn wait(
        &self,
        count: usize,
        timeout: std::time::Duration,
    ) -> Result<Vec<VcpuState>, String> {
        let deadline = std::time::Instant::now() + timeout;
        let mut results = self.results.lock().unwrap_or_else(|p| p.into_inner());
        while results.len() < count {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "{} of {count} vCPUs saved their state within {timeout:?}",
                    results.len()
                ));
            }
            results = self
                .done
                .wait_timeout(results, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        let mut taken: Vec<_> = results.drain(..).collect();
        taken.sort_by_key(|(id, _)| *id);
        taken
            .into_iter()
            .map(|(id, r)| r.map_err(|e| format!("vCPU {id}: {e}")))
            .collect()
    }
}
