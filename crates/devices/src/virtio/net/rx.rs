//! Receive path: one frame (virtio-net header first) from the host into the guest's RX
//! buffers. Without VIRTIO_NET_F_MRG_RXBUF a frame must fit one buffer; with it, a
//! frame spans as many buffers as it needs and the header says how many. Buffers come
//! from an untrusted driver: every descriptor must be device-writable and inside guest
//! memory, else the buffer is returned unused (length 0) and skipped.

use super::{NetCounters, NUM_BUFFERS_OFFSET, VNET_HDR_LEN};
use std::sync::atomic::Ordering;
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::virtio::chain::Segments;
pub use crate::virtio::chain::MAX_DESCRIPTORS;

/// What happened to a frame offered to the RX queue.
#[derive(Debug, PartialEq, Eq)]
pub enum RxOutcome {
    /// Written into this many buffers, which are now used.
    Delivered(u16),
    /// Not enough buffers: nothing was consumed; offer the frame again once the driver
    /// adds buffers.
    NoBuffers,
    /// The buffers the frame may use (one without MRG_RXBUF, a ring's worth with it)
    /// are too small, or the driver's ring is malformed: frame dropped, buffers
    /// returned with length 0.
    Dropped,
}

struct Buffer {
    head: u16,
    segments: Vec<(GuestAddress, usize)>,
    capacity: usize,
}

/// The device-writable segments of a chain, checked; an empty chain is unusable.
fn writable_segments<M>(
    mem: &GuestMemoryMmap,
    chain: DescriptorChain<M>,
) -> Result<(Vec<(GuestAddress, usize)>, usize), String>
where
    M: std::ops::Deref,
    M::Target: vm_memory::GuestMemory,
{
    match Segments::of(mem, chain, true) {
        Ok(s) if s.len == 0 => Err("empty chain".into()),
        Ok(s) => Ok((s.parts, s.len)),
        Err(e) => Err(e.to_string()),
    }
}

/// The next usable buffer; unusable ones are returned to the driver (length 0),
/// counted in `counters` and `skipped`. `None` when the ring has no more.
fn next_buffer(
    mem: &GuestMemoryMmap,
    queue: &mut Queue,
    counters: &NetCounters,
    skipped: &mut usize,
) -> Option<Buffer> {
    loop {
        let chain = queue.pop_descriptor_chain(mem)?;
        let head = chain.head_index();
        match writable_segments(mem, chain) {
            Ok((segments, capacity)) => {
                return Some(Buffer {
                    head,
                    segments,
                    capacity,
                })
            }
            Err(e) => {
                counters.rx_bad_buffers.fetch_add(1, Ordering::Relaxed);
                *skipped += 1;
                log::debug!("virtio-net: RX buffer {head} unusable: {e}");
                if let Err(e) = queue.add_used(mem, head, 0) {
                    crate::guest_warn!("virtio-net: cannot return RX buffer {head}: {e:?}");
                    return None;
                }
            }
        }
    }
}

/// Copies `data` into `buffer`'s segments; returns the bytes written.
fn fill(mem: &GuestMemoryMmap, buffer: &Buffer, data: &[u8]) -> usize {
    let mut written = 0;
    for (addr, len) in &buffer.segments {
        if written == data.len() {
            break;
        }
        let n = (*len).min(data.len() - written);
        if mem.write_slice(&data[written..written + n], *addr).is_err() {
            // Checked when the buffer was taken; memory does not shrink while running.
            crate::guest_warn!("virtio-net: RX write at {:#x} failed", addr.0);
            break;
        }
        written += n;
    }
    written
}

fn drop_frame(
    mem: &GuestMemoryMmap,
    queue: &mut Queue,
    buffers: &[Buffer],
    len: usize,
    counters: &NetCounters,
) -> RxOutcome {
    counters.rx_dropped.fetch_add(1, Ordering::Relaxed);
    log::debug!("virtio-net: no room for a {len}-byte frame in the RX buffers; dropped");
    for buffer in buffers {
        if let Err(e) = queue.add_used(mem, buffer.head, 0) {
            crate::guest_warn!("virtio-net: cannot return RX buffer {}: {e:?}", buffer.head);
        }
    }
    RxOutcome::Dropped
}

/// Offers `frame` (header first, at least [`VNET_HDR_LEN`] bytes) to the RX queue.
/// The header's `num_buffers` is filled in here.
pub fn deliver(
    mem: &GuestMemoryMmap,
    queue: &mut Queue,
    frame: &mut [u8],
    mergeable: bool,
    counters: &NetCounters,
) -> RxOutcome {
    let mut buffers: Vec<Buffer> = Vec::new();
    let mut capacity = 0usize;
    // Without MRG_RXBUF a frame gets one buffer; with it, at most a ring's worth.
    let max_buffers = if mergeable {
        usize::from(queue.size())
    } else {
        1
    };
    let mut skipped_inside = 0;
    while capacity < frame.len() {
        if buffers.len() >= max_buffers {
            return drop_frame(mem, queue, &buffers, frame.len(), counters);
        }
        let mut skipped = 0;
        let next = next_buffer(mem, queue, counters, &mut skipped);
        if !buffers.is_empty() {
            skipped_inside += skipped;
        }
        let Some(buffer) = next else {
            if skipped_inside > 0 {
                // Returned bad buffers sit between the ones taken: the taken ones cannot
                // be put back in order, so they go back unused and the frame is lost.
                return drop_frame(mem, queue, &buffers, frame.len(), counters);
            }
            // Put back what was taken: the frame waits whole for more buffers.
            for _ in &buffers {
                queue.go_to_previous_position();
            }
            return RxOutcome::NoBuffers;
        };
        capacity = capacity.saturating_add(buffer.capacity);
        buffers.push(buffer);
    }
    // At most a ring's worth (queue sizes are at most 32768).
    let count = u16::try_from(buffers.len()).unwrap_or(u16::MAX);
    frame[NUM_BUFFERS_OFFSET..VNET_HDR_LEN].copy_from_slice(&count.to_le_bytes());
    let mut offset = 0;
    for buffer in &buffers {
        let written = fill(mem, buffer, &frame[offset..]);
        offset += written;
        if let Err(e) = queue.add_used(mem, buffer.head, written as u32) {
            crate::guest_warn!("virtio-net: cannot return RX buffer {}: {e:?}", buffer.head);
            break;
        }
    }
    counters.rx_frames.fetch_add(1, Ordering::Relaxed);
    counters
        .rx_bytes
        .fetch_add((frame.len() - VNET_HDR_LEN) as u64, Ordering::Relaxed);
    RxOutcome::Delivered(count)
}
