//! Checked access to descriptor chains from an untrusted driver: the segments of a
//! chain in one direction, each inside guest memory, bounded in number, and copies
//! into and out of them. Shared by the devices that move byte streams (vsock, rng).

use virtio_queue::DescriptorChain;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// Most descriptors one chain may have.
pub const MAX_DESCRIPTORS: usize = 256;

/// Why a chain cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A descriptor has the wrong direction for its use.
    #[error("descriptor has the wrong direction")]
    WrongDirection,
    /// A descriptor lies (partly) outside guest memory.
    #[error("descriptor outside guest memory")]
    OutOfRange,
    /// More than [`MAX_DESCRIPTORS`] descriptors, more than the queue holds (a loop),
    /// or a next index outside the table.
    #[error("chain loops, is cut short or has more than {MAX_DESCRIPTORS} descriptors")]
    TooManyDescriptors,
}

/// The segments of one chain, all in one direction, and their total length.
#[derive(Debug, Default)]
pub struct Segments {
    /// Address and length of each non-empty descriptor, in chain order.
    pub parts: Vec<(GuestAddress, usize)>,
    /// Sum of the lengths.
    pub len: usize,
}

impl Segments {
    /// The segments of `chain`, which must all be device-writable (`writable`) or all
    /// device-readable.
    pub fn of<M>(
        mem: &GuestMemoryMmap,
        chain: DescriptorChain<M>,
        writable: bool,
    ) -> Result<Self, ChainError>
    where
        M: std::ops::Deref,
        M::Target: vm_memory::GuestMemory,
    {
        let mut segments = Segments::default();
        let mut truncated = false;
        for (i, d) in chain.enumerate() {
            // The iterator stops quietly after a queue's worth of descriptors or at a
            // bad index; a last descriptor that still points on means it was cut there.
            truncated = d.has_next();
            if i >= MAX_DESCRIPTORS {
                return Err(ChainError::TooManyDescriptors);
            }
            if d.is_write_only() != writable {
                return Err(ChainError::WrongDirection);
            }
            let len = d.len() as usize;
            if len == 0 {
                continue;
            }
            if !mem.check_range(d.addr(), len) {
                return Err(ChainError::OutOfRange);
            }
            segments.parts.push((d.addr(), len));
            segments.len = segments.len.saturating_add(len);
        }
        if truncated {
            return Err(ChainError::TooManyDescriptors);
        }
        Ok(segments)
    }

    /// Copies `data` into the segments from byte `offset` on; returns the bytes
    /// written (fewer than `data.len()` when the segments end first).
    pub fn write_at(&self, mem: &GuestMemoryMmap, offset: usize, data: &[u8]) -> usize {
        self.copy(offset, data.len(), |addr, range| {
            mem.write_slice(&data[range], addr).is_ok()
        })
    }

    /// Copies from the segments at byte `offset` into `buf`; returns the bytes read.
    pub fn read_at(&self, mem: &GuestMemoryMmap, offset: usize, buf: &mut [u8]) -> usize {
        self.copy(offset, buf.len(), |addr, range| {
            mem.read_slice(&mut buf[range], addr).is_ok()
        })
    }

    /// Walks `count` bytes from `offset`, calling `copy(address, range in the caller's
    /// buffer)` per piece; stops at the end or at a failed copy.
    fn copy(
        &self,
        offset: usize,
        count: usize,
        mut copy: impl FnMut(GuestAddress, std::ops::Range<usize>) -> bool,
    ) -> usize {
        let mut skip = offset;
        let mut done = 0;
        for &(addr, len) in &self.parts {
            if done == count {
                break;
            }
            if skip >= len {
                skip -= len;
                continue;
            }
            let n = (len - skip).min(count - done);
            // Checked when the chain was taken; guest memory does not shrink.
            let Some(at) = addr.0.checked_add(skip as u64) else {
                break;
            };
            if !copy(GuestAddress(at), done..done + n) {
                crate::guest_warn!("virtio: copy at {at:#x} failed");
                break;
            }
            done += n;
            skip = 0;
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x1_0000)]).unwrap()
    }

    #[test]
    fn copies_span_segments_from_an_offset() {
        let mem = mem();
        let s = Segments {
            parts: vec![(GuestAddress(0x100), 4), (GuestAddress(0x200), 4)],
            len: 8,
        };
        assert_eq!(s.write_at(&mem, 2, b"abcdefgh"), 6);
        let mut back = [0u8; 8];
        assert_eq!(s.read_at(&mem, 0, &mut back), 8);
        assert_eq!(&back, b"\0\0abcdef");
        let mut tail = [0u8; 3];
        assert_eq!(s.read_at(&mem, 5, &mut tail), 3);
        assert_eq!(&tail, b"def");
        assert_eq!(s.read_at(&mem, 8, &mut tail), 0);
    }
}
