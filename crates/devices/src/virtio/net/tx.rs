//! Transmit path: one TX descriptor chain (virtio-net header, then the frame) gathered
//! into a host buffer. The chain comes from an untrusted driver: device-readable
//! descriptors only, inside guest memory, bounded in count and total length, and long
//! enough for a header and an Ethernet header.

use super::rx::MAX_DESCRIPTORS;
use super::{ETH_HLEN, MAX_FRAME_LEN, VNET_HDR_LEN};
use virtio_queue::DescriptorChain;
use vm_memory::{Bytes, GuestMemoryBackend, GuestMemoryMmap};

/// Largest chain payload: header plus the largest frame.
pub const MAX_TX_LEN: usize = VNET_HDR_LEN + MAX_FRAME_LEN;

/// Why a TX chain is dropped.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// A descriptor is device-writable.
    #[error("TX descriptor is device-writable")]
    WrongDirection,
    /// A descriptor lies (partly) outside guest memory.
    #[error("TX descriptor outside guest memory")]
    OutOfRange,
    /// More than [`MAX_DESCRIPTORS`] descriptors, more than the queue holds (a loop),
    /// or a next index outside the table.
    #[error("TX chain loops, is cut short or has more than {MAX_DESCRIPTORS} descriptors")]
    TooManyDescriptors,
    /// Shorter than a virtio-net header plus an Ethernet header.
    #[error("TX chain of {0} bytes is too short for a frame")]
    TooShort(usize),
    /// Longer than the largest frame.
    #[error("TX frame longer than {MAX_FRAME_LEN} bytes")]
    TooLong,
}

/// Copies the chain into `buf` (at least [`MAX_TX_LEN`] bytes); returns its length,
/// header included.
pub fn gather<M>(
    mem: &GuestMemoryMmap,
    chain: DescriptorChain<M>,
    buf: &mut [u8],
) -> Result<usize, TxError>
where
    M: std::ops::Deref,
    M::Target: vm_memory::GuestMemory,
{
    let limit = buf.len().min(MAX_TX_LEN);
    let mut len = 0usize;
    let mut truncated = false;
    for (i, d) in chain.enumerate() {
        // See rx: a last descriptor that still points on means the chain was cut there.
        truncated = d.has_next();
        if i >= MAX_DESCRIPTORS {
            return Err(TxError::TooManyDescriptors);
        }
        if d.is_write_only() {
            return Err(TxError::WrongDirection);
        }
        let n = d.len() as usize;
        if n == 0 {
            continue;
        }
        if !mem.check_range(d.addr(), n) {
            return Err(TxError::OutOfRange);
        }
        if n > limit - len {
            return Err(TxError::TooLong);
        }
        mem.read_slice(&mut buf[len..len + n], d.addr())
            .map_err(|_| TxError::OutOfRange)?;
        len += n;
    }
    if truncated {
        return Err(TxError::TooManyDescriptors);
    }
    if len < VNET_HDR_LEN + ETH_HLEN {
        return Err(TxError::TooShort(len));
    }
    Ok(len)
}
