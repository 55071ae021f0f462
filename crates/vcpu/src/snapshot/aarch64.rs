//! aarch64: vCPU snapshots are not supported yet (the registers are reached one by one
//! through KVM_GET_ONE_REG; the GIC needs its own state). Both calls say so.

use super::VcpuStateError;
use kvm_ioctls::VcpuFd;
use serde::{Deserialize, Serialize};

/// Placeholder: no aarch64 vCPU state is saved yet.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct VcpuState {}

/// Always [`VcpuStateError::Unsupported`].
pub fn save_vcpu(_fd: &VcpuFd, _msrs: &[u32]) -> Result<VcpuState, VcpuStateError> {
    Err(VcpuStateError::Unsupported("aarch64"))
}

/// Always [`VcpuStateError::Unsupported`].
pub fn restore_vcpu(_fd: &VcpuFd, _state: &VcpuState) -> Result<(), VcpuStateError> {
    Err(VcpuStateError::Unsupported("aarch64"))
}

/// Always [`VcpuStateError::Unsupported`].
pub fn snapshot_support(_kvm: &kvm_ioctls::Kvm) -> Result<Vec<u32>, VcpuStateError> {
    Err(VcpuStateError::Unsupported("aarch64"))
}

/// Always [`VcpuStateError::Unsupported`].
pub fn check_host_features(
    _kvm: &kvm_ioctls::Kvm,
    _probe: &VcpuFd,
    _vcpus: &[VcpuState],
) -> Result<(), VcpuStateError> {
    Err(VcpuStateError::Unsupported("aarch64"))
}
