//! The guest's memory and queues as fuse-backend-rs sees them.
//!
//! fuse-backend-rs 0.14 builds its request reader and reply writer from vm-memory 0.17
//! and virtio-queue 0.17 types; the VMM uses 0.18 (linux-loader 0.14 requires it). The
//! device therefore gives the file server a second, non-owning view of the same host
//! mappings in 0.17 types ([`FuseMemory`]), and rebuilds each queue from its 0.18
//! state. Nothing is copied: requests and replies are read and written in place.

use crate::error::FsError;
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vm_memory_fuse::{GuestAddress as FuseAddress, GuestRegionMmap as FuseRegion, MmapRegion};

/// The guest memory type the file server reads requests from.
pub(crate) type FuseGuestMemory = vm_memory_fuse::GuestMemoryMmap;
/// The queue type the file server takes requests from.
pub(crate) type FuseQueue = virtio_queue_fuse::Queue;

/// Guest memory in both versions: the VMM's (which owns the mappings) and the file
/// server's view of the same pages.
pub(crate) struct FuseMemory {
    /// The file server's view. Declared first, so it is dropped before `_owner`.
    pub(crate) view: FuseGuestMemory,
    /// Keeps the mappings `view` points into alive for as long as `view` exists.
    _owner: GuestMemoryMmap,
}

impl FuseMemory {
    /// A view of every region of `memory`.
    pub(crate) fn new(memory: GuestMemoryMmap) -> Result<Self, FsError> {
        let mut regions = Vec::new();
        for region in memory.iter() {
            let size = usize::try_from(region.len()).map_err(|_| FsError::MemoryView)?;
            // SAFETY: the region's host mapping is `size` bytes at `as_ptr()`, readable
            // and writable, and stays mapped while `memory` lives: `FuseMemory` keeps
            // `memory` (its `_owner`) and drops the view first. The view never unmaps
            // it (a raw region does not own its mapping).
            let mapping = unsafe {
                MmapRegion::build_raw(
                    region.as_ptr(),
                    size,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                )
            }
            .map_err(|_| FsError::MemoryView)?;
            let start = FuseAddress(region.start_addr().0);
            regions.push(FuseRegion::new(mapping, start).ok_or(FsError::MemoryView)?);
        }
        let view = FuseGuestMemory::from_regions(regions).map_err(|_| FsError::MemoryView)?;
        Ok(Self {
            view,
            _owner: memory,
        })
    }
}

/// The driver's queue `queue` (0.18) as a 0.17 queue at the same position.
pub(crate) fn fuse_queue(queue: &virtio_queue::Queue) -> Result<FuseQueue, FsError> {
    let s = queue.state();
    let state = virtio_queue_fuse::QueueState {
        max_size: s.max_size,
        next_avail: s.next_avail,
        next_used: s.next_used,
        event_idx_enabled: s.event_idx_enabled,
        size: s.size,
        ready: s.ready,
        desc_table: s.desc_table,
        avail_ring: s.avail_ring,
        used_ring: s.used_ring,
    };
    FuseQueue::try_from(state).map_err(|e| FsError::Queue(format!("{e:?}")))
}
