//! Places an initrd at the top of low guest memory, page aligned, above the kernel.

use crate::BootError;
use std::path::Path;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, ReadVolatile};

const PAGE_SIZE: u64 = 4096;

/// Where an initrd of `size` bytes goes: the highest page-aligned address with the
/// whole image below `top`, and not below `floor`. None if it does not fit.
pub fn initrd_address(size: u64, floor: u64, top: u64) -> Option<u64> {
    let start = top.checked_sub(size)? & !(PAGE_SIZE - 1);
    (start >= floor && size > 0).then_some(start)
}

/// Checks that the initrd at `path` can be read and is not empty; returns its size.
pub fn check_initrd(path: &Path) -> Result<u64, BootError> {
    crate::open_nonempty(path).map(|(_, size)| size)
}

/// Copies the initrd at `path` into `mem` below `top` and above `floor` (the kernel's end).
/// Returns its address and size.
pub fn load_initrd<M: GuestMemoryBackend>(
    mem: &M,
    path: &Path,
    floor: u64,
    top: u64,
) -> Result<(GuestAddress, u64), BootError> {
    let (mut file, size) = crate::open_nonempty(path)?;
    load_initrd_from(mem, path, &mut file, size, floor, top)
}

/// Copies an initrd of `size` bytes read from `file` (named `path` in errors) into
/// `mem` below `top` and above `floor`. Returns its address and size.
pub fn load_initrd_from<M: GuestMemoryBackend, F: ReadVolatile>(
    mem: &M,
    path: &Path,
    file: &mut F,
    size: u64,
    floor: u64,
    top: u64,
) -> Result<(GuestAddress, u64), BootError> {
    let floor = floor.next_multiple_of(PAGE_SIZE);
    let addr = initrd_address(size, floor, top)
        .ok_or_else(|| BootError::InitrdTooBig(path.into(), size, top.saturating_sub(floor)))?;
    let len = usize::try_from(size)
        .map_err(|_| BootError::InitrdTooBig(path.into(), size, top - floor))?;
    mem.read_exact_volatile_from(GuestAddress(addr), file, len)
        .map_err(|_| BootError::InitrdCopy(path.into()))?;
    log::debug!("initrd {} at {addr:#x}, {size} bytes", path.display());
    Ok((GuestAddress(addr), size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use vm_memory::GuestMemoryMmap;
    use vmm_sys_util::tempfile::TempFile;

    #[test]
    fn address_is_page_aligned_at_the_top() {
        assert_eq!(initrd_address(0x1800, 0x100000, 0x800000), Some(0x7fe000));
        assert_eq!(initrd_address(0x1000, 0x100000, 0x800000), Some(0x7ff000));
        assert_eq!(initrd_address(0x800000, 0x100000, 0x800000), None);
        assert_eq!(initrd_address(u64::MAX, 0, 0x800000), None);
        assert_eq!(initrd_address(0, 0, 0x800000), None);
    }

    #[test]
    fn loads_contents_and_rejects_oversize() {
        let mem: GuestMemoryMmap =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap();
        let f = TempFile::new().unwrap();
        f.as_file().write_all(b"070701initrd-bytes").unwrap();
        let (addr, size) = load_initrd(&mem, f.as_path(), 0x200000, 4 << 20).unwrap();
        assert_eq!(size, 18);
        assert_eq!(addr.0, (4 << 20) - 4096);
        let mut back = [0u8; 18];
        mem.read_slice(&mut back, addr).unwrap();
        assert_eq!(&back, b"070701initrd-bytes");

        let big = TempFile::new().unwrap();
        big.as_file().set_len(3 << 20).unwrap();
        let err = load_initrd(&mem, big.as_path(), 0x200000, 4 << 20).unwrap_err();
        assert!(
            matches!(err, BootError::InitrdTooBig(_, n, _) if n == 3 << 20),
            "{err}"
        );

        let empty = TempFile::new().unwrap();
        assert!(matches!(
            load_initrd(&mem, empty.as_path(), 0, 4 << 20),
            Err(BootError::Empty(_))
        ));
    }
}
