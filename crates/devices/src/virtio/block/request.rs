//! virtio-blk requests: a descriptor chain is validated into a [`Request`] (header,
//! data buffers, status byte), then executed against the [`Disk`]. The guest is
//! untrusted: every length, direction and address is checked, chains are bounded, and
//! whatever goes wrong is answered with a status byte when the chain has a usable one.

use super::disk::{Disk, ID_BYTES, SECTOR_SIZE};
use std::io::{Seek, SeekFrom};
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_FLUSH,
    VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// Most descriptors in one request: header, data segments, status.
pub const MAX_DESCRIPTORS: usize = 128;
/// Data segments per request, as advertised (VIRTIO_BLK_F_SEG_MAX).
pub const SEG_MAX: u32 = (MAX_DESCRIPTORS - 2) as u32;
const HEADER_LEN: u32 = 16;

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Read sectors into the guest.
    In,
    /// Write sectors from the guest.
    Out,
    /// Make writes durable.
    Flush,
    /// Return the device ID string.
    GetId,
    /// Anything else.
    Unsupported(u32),
}

/// Why a chain is not a valid request.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// More descriptors than [`MAX_DESCRIPTORS`] (or a looped chain).
    #[error("descriptor chain longer than {MAX_DESCRIPTORS}")]
    TooManyDescriptors,
    /// Too few descriptors for a header and a status byte.
    #[error("descriptor chain too short")]
    TooShort,
    /// The header descriptor is write-only or shorter than 16 bytes.
    #[error("bad request header descriptor")]
    BadHeader,
    /// The status descriptor is not write-only or has no room.
    #[error("bad status descriptor")]
    BadStatus,
    /// A buffer lies (partly) outside guest memory.
    #[error("buffer outside guest memory")]
    OutOfRange,
    /// A data buffer has the wrong direction for the request.
    #[error("data buffer has the wrong direction")]
    WrongDirection,
    /// Data length is not a whole number of sectors.
    #[error("data length is not a multiple of 512")]
    UnalignedLength,
    /// The request reaches beyond the end of the disk.
    #[error("request beyond the end of the disk")]
    BeyondEnd,
}

/// A validated request.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// Request type.
    pub kind: Kind,
    /// First sector.
    pub sector: u64,
    /// Data buffers (address, length), in order.
    pub data: Vec<(GuestAddress, u32)>,
    /// Where the status byte goes.
    pub status: GuestAddress,
}

fn in_memory(mem: &GuestMemoryMmap, d: &Descriptor) -> bool {
    d.len() == 0 || mem.check_range(d.addr(), d.len() as usize)
}

/// The status byte of a chain, if its last descriptor can hold one.
pub fn status_address(mem: &GuestMemoryMmap, descs: &[Descriptor]) -> Option<GuestAddress> {
    let last = descs.last()?;
    (descs.len() >= 2 && last.is_write_only() && last.len() >= 1 && in_memory(mem, last))
        .then(|| last.addr().unchecked_add(u64::from(last.len()) - 1))
}

/// Validates a descriptor chain (already collected, at most `MAX_DESCRIPTORS + 1` long)
/// against a disk of `sectors` sectors.
pub fn parse(
    mem: &GuestMemoryMmap,
    descs: &[Descriptor],
    sectors: u64,
) -> Result<Request, RequestError> {
    if descs.len() > MAX_DESCRIPTORS {
        return Err(RequestError::TooManyDescriptors);
    }
    if descs.len() < 2 {
        return Err(RequestError::TooShort);
    }
    let header = &descs[0];
    if header.is_write_only() || header.len() < HEADER_LEN {
        return Err(RequestError::BadHeader);
    }
    if !descs.iter().all(|d| in_memory(mem, d)) {
        return Err(RequestError::OutOfRange);
    }
    let status = status_address(mem, descs).ok_or(RequestError::BadStatus)?;
    let ty: u32 = mem
        .read_obj(header.addr())
        .map_err(|_| RequestError::OutOfRange)?;
    let sector: u64 = mem
        .read_obj(header.addr().unchecked_add(8))
        .map_err(|_| RequestError::OutOfRange)?;
    let kind = match ty {
        VIRTIO_BLK_T_IN => Kind::In,
        VIRTIO_BLK_T_OUT => Kind::Out,
        VIRTIO_BLK_T_FLUSH => Kind::Flush,
        VIRTIO_BLK_T_GET_ID => Kind::GetId,
        other => Kind::Unsupported(other),
    };
    let middle = &descs[1..descs.len() - 1];
    let data: Vec<(GuestAddress, u32)> = middle.iter().map(|d| (d.addr(), d.len())).collect();
    let wants_write_only = match kind {
        Kind::In | Kind::GetId => Some(true),
        Kind::Out => Some(false),
        Kind::Flush | Kind::Unsupported(_) => None,
    };
    if let Some(w) = wants_write_only {
        if middle.iter().any(|d| d.is_write_only() != w) {
            return Err(RequestError::WrongDirection);
        }
    }
    if matches!(kind, Kind::In | Kind::Out) {
        let len: u64 = data.iter().map(|(_, l)| u64::from(*l)).sum();
        if !len.is_multiple_of(SECTOR_SIZE) {
            return Err(RequestError::UnalignedLength);
        }
        let end = sector
            .checked_add(len / SECTOR_SIZE)
            .ok_or(RequestError::BeyondEnd)?;
        if end > sectors {
            return Err(RequestError::BeyondEnd);
        }
    }
    Ok(Request {
        kind,
        sector,
        data,
        status,
    })
}

/// Executes `req`; returns the status byte and the bytes written into guest buffers
/// (not counting the status byte).
pub fn execute(disk: &mut Disk, mem: &GuestMemoryMmap, req: &Request) -> (u8, u32) {
    let ioerr = (VIRTIO_BLK_S_IOERR as u8, 0);
    match req.kind {
        Kind::In | Kind::Out => {
            if req.kind == Kind::Out && disk.read_only {
                return ioerr;
            }
            let Some(offset) = req.sector.checked_mul(SECTOR_SIZE) else {
                return ioerr;
            };
            if let Err(e) = disk.file.seek(SeekFrom::Start(offset)) {
                crate::guest_warn!("virtio-blk: seek: {e}");
                return ioerr;
            }
            let mut written = 0u32;
            for (addr, len) in &req.data {
                let len = *len as usize;
                let res = if req.kind == Kind::In {
                    mem.read_exact_volatile_from(*addr, &mut disk.file, len)
                } else {
                    mem.write_all_volatile_to(*addr, &mut disk.file, len)
                };
                if let Err(e) = res {
                    let what = if req.kind == Kind::In {
                        "read"
                    } else {
                        "write"
                    };
                    let cause = match &e {
                        vm_memory::GuestMemoryError::IOError(io) => io.to_string(),
                        other => other.to_string(),
                    };
                    crate::guest_warn!(
                        "virtio-blk: {what} at sector {} failed on the host: {cause}; the guest gets IOERR",
                        req.sector
                    );
                    return (VIRTIO_BLK_S_IOERR as u8, written);
                }
                if req.kind == Kind::In {
                    written = written.saturating_add(len as u32);
                }
            }
            (VIRTIO_BLK_S_OK as u8, written)
        }
        Kind::Flush => {
            if disk.read_only {
                return (VIRTIO_BLK_S_OK as u8, 0);
            }
            match disk.file.sync_all() {
                Ok(()) => (VIRTIO_BLK_S_OK as u8, 0),
                Err(e) => {
                    crate::guest_warn!(
                        "virtio-blk: flush failed on the host: {e}; the guest gets IOERR"
                    );
                    ioerr
                }
            }
        }
        Kind::GetId => {
            let mut remaining: &[u8] = &disk.id[..ID_BYTES];
            let mut written = 0u32;
            for (addr, len) in &req.data {
                let n = remaining.len().min(*len as usize);
                if mem.write_slice(&remaining[..n], *addr).is_err() {
                    return ioerr;
                }
                remaining = &remaining[n..];
                written += n as u32;
            }
            (VIRTIO_BLK_S_OK as u8, written)
        }
        Kind::Unsupported(ty) => {
            log::debug!("virtio-blk: unsupported request type {ty}");
            (VIRTIO_BLK_S_UNSUPP as u8, 0)
        }
    }
}

#[cfg(test)]
mod tests;
