//! aarch64: VM snapshots are not supported yet (the GIC's distributor and
//! redistributor state would be saved here). Both calls say so.

use kvm_ioctls::VmFd;
use serde::{Deserialize, Serialize};

/// Why the VM's state cannot be saved or restored.
#[derive(Debug, thiserror::Error)]
pub enum VmStateError {
    /// Not implemented on this architecture.
    #[error("snapshots are not supported on aarch64 yet")]
    Unsupported,
}

/// Placeholder: no aarch64 VM state is saved yet.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct VmState {}

/// Always [`VmStateError::Unsupported`].
pub fn save_vm(_vm: &VmFd) -> Result<VmState, VmStateError> {
    Err(VmStateError::Unsupported)
}

/// Always [`VmStateError::Unsupported`].
pub fn restore_vm(_vm: &VmFd, _state: &VmState) -> Result<(), VmStateError> {
    Err(VmStateError::Unsupported)
}
