//! aarch64: snapshots are not supported yet; the platform devices keep no state here.

use serde::{Deserialize, Serialize};

/// No handles yet.
#[derive(Clone)]
pub(crate) struct LegacyHandles;

/// No state yet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyState {}

impl LegacyHandles {
    /// Always refused.
    pub fn save(&self) -> Result<LegacyState, String> {
        Err("snapshots are not supported on aarch64 yet".into())
    }

    /// Nothing to write: no VM generation ID on aarch64 yet.
    pub fn first_generation(&self, _memory: &vm_memory::GuestMemoryMmap) -> Result<(), String> {
        Ok(())
    }

    /// Always refused.
    pub fn new_generation(&self, _memory: &vm_memory::GuestMemoryMmap) -> Result<(), String> {
        Err("snapshots are not supported on aarch64 yet".into())
    }

    /// Always refused.
    pub fn restore(&self, _state: &LegacyState) -> Result<(), String> {
        Err("snapshots are not supported on aarch64 yet".into())
    }
}
