//! Guest RAM: allocated with vm-memory as anonymous mappings (or, for a restored
//! snapshot, private mappings of its memory file) and registered with KVM.

use crate::error::VmmError;
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::FileOffset;
use vm_memory::{
    Address, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, GuestRegionMmap,
};

pub(crate) const PAGE_SIZE: u64 = 4096;

/// Host RAM in bytes, from sysinfo(2).
pub fn host_ram() -> u64 {
    let mut info = std::mem::MaybeUninit::<libc::sysinfo>::zeroed();
    // SAFETY: sysinfo writes into the struct we own and has no other effect.
    let ret = unsafe { libc::sysinfo(info.as_mut_ptr()) };
    if ret != 0 {
        return u64::MAX;
    }
    // SAFETY: sysinfo returned 0, so it filled the whole struct.
    let info = unsafe { info.assume_init() };
    info.totalram.saturating_mul(u64::from(info.mem_unit))
}

/// Guest RAM size: every region's length.
pub fn total_bytes(memory: &GuestMemoryMmap) -> u64 {
    memory.iter().map(|r| r.len()).sum()
}

/// Bytes of guest RAM the host actually holds (pages the guest or the VMM touched),
/// from mincore(2) over every region.
pub fn resident_bytes(memory: &GuestMemoryMmap) -> u64 {
    let mut resident = 0u64;
    for region in memory.iter() {
        let len = region.len() as usize;
        let pages = len.div_ceil(PAGE_SIZE as usize);
        let mut vec = vec![0u8; pages];
        let Ok(host) = region.get_host_address(vm_memory::MemoryRegionAddress(0)) else {
            continue;
        };
        // SAFETY: `host` .. `host + len` is this region's live mapping (page aligned);
        // mincore writes one byte per page into `vec`, which has that many.
        let ret = unsafe { libc::mincore(host.cast(), len, vec.as_mut_ptr()) };
        if ret == 0 {
            resident += vec.iter().filter(|b| *b & 1 == 1).count() as u64 * PAGE_SIZE;
        }
    }
    resident
}

/// Checks a requested guest memory size against minivmm's minimum and the host.
pub fn check_size(size: u64, host: u64) -> Result<(), VmmError> {
    if size < crate::config::MIN_MEM_SIZE {
        return Err(VmmError::MemTooSmall(size));
    }
    if !size.is_multiple_of(PAGE_SIZE) {
        return Err(VmmError::MemUnaligned(size));
    }
    if size > host {
        return Err(VmmError::MemTooLarge(size, host));
    }
    Ok(())
}

/// The host's default huge page size and how many are free, from /proc/meminfo
/// (`None` where it has no hugetlbfs).
pub fn huge_pages() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some((field("Hugepagesize:")? << 10, field("HugePages_Free:")?))
}

/// Checks that `size` bytes of guest memory can be backed by the host's free huge pages.
pub fn check_huge_pages(size: u64) -> Result<(), VmmError> {
    let (page, free) = huge_pages().ok_or(VmmError::HugePagesUnavailable(size, 2 << 20, 0))?;
    if page == 0 || !size.is_multiple_of(page) {
        return Err(VmmError::MemNotHugeAligned(size, page));
    }
    if size / page > free {
        return Err(VmmError::HugePagesUnavailable(size, page, free));
    }
    Ok(())
}

/// Maps one region of `len` bytes at `base`, from the host's huge pages or not. A
/// huge-page mapping is made without MAP_NORESERVE, so that the kernel reserves every
/// page now and refuses the mapping (rather than the guest, with SIGBUS, later).
fn map_region(base: GuestAddress, len: usize, huge: bool) -> Result<GuestRegionMmap, String> {
    let mut flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    if huge {
        flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB;
    }
    let mapping = MmapRegionBuilder::new(len)
        .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
        .with_mmap_flags(flags)
        .with_hugetlbfs(huge)
        .build()
        .map_err(|e| e.to_string())?;
    GuestRegionMmap::new(mapping, base).ok_or_else(|| "region overflows the address space".into())
}

/// Where guest RAM comes from.
pub(crate) enum MemorySource<'a> {
    /// Fresh anonymous memory, from huge pages when `huge`.
    Anonymous {
        /// Use the host's reserved huge pages.
        huge: bool,
    },
    /// A snapshot's memory file, mapped private: nothing is copied, pages are read on
    /// first touch, and clones of one snapshot share the page cache.
    File {
        /// The memory file.
        file: &'a std::fs::File,
        /// Each region's guest address, length and offset in the file.
        regions: &'a [crate::snapshot::MemoryRegion],
    },
}

/// Maps `len` bytes of `file` at `offset`, private (the guest's writes stay in this
/// process).
fn map_file_region(
    base: GuestAddress,
    len: usize,
    file: &std::fs::File,
    offset: u64,
) -> Result<GuestRegionMmap, String> {
    let file = file.try_clone().map_err(|e| e.to_string())?;
    let mapping = MmapRegionBuilder::new(len)
        .with_file_offset(FileOffset::new(file, offset))
        .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
        .with_mmap_flags(libc::MAP_PRIVATE | libc::MAP_NORESERVE)
        .build()
        .map_err(|e| e.to_string())?;
    GuestRegionMmap::new(mapping, base).ok_or_else(|| "region overflows the address space".into())
}

/// Maps guest RAM of `size` bytes from `source`, split around the MMIO gap (a file's
/// regions must be that layout), and registers every region with KVM as one slot.
pub(crate) fn create_guest_memory_from(
    vm: &VmFd,
    size: u64,
    source: MemorySource,
) -> Result<GuestMemoryMmap, VmmError> {
    match source {
        MemorySource::Anonymous { huge } => create_guest_memory(vm, size, huge),
        MemorySource::File { file, regions } => {
            let layout = arch::guest_memory_regions(size);
            let matches = layout.len() == regions.len()
                && layout
                    .iter()
                    .zip(regions)
                    .all(|((base, len), r)| base.0 == r.guest_addr && *len as u64 == r.size);
            if !matches {
                return Err(VmmError::Snapshot(format!(
                    "its memory regions do not match a {size}-byte guest"
                )));
            }
            let mut mapped = Vec::new();
            for ((base, len), r) in layout.into_iter().zip(regions) {
                let region = map_file_region(base, len, file, r.file_offset)
                    .map_err(|e| VmmError::GuestMemory(size, e))?;
                mapped.push(region);
            }
            let mem = GuestMemoryMmap::from_regions(mapped)
                .map_err(|e| VmmError::GuestMemory(size, e.to_string()))?;
            register_slots(vm, &mem)?;
            Ok(mem)
        }
    }
}

/// Allocates `size` bytes of guest RAM (from huge pages when `huge`), split around the
/// MMIO gap, and registers every region with KVM as one memory slot.
pub fn create_guest_memory(vm: &VmFd, size: u64, huge: bool) -> Result<GuestMemoryMmap, VmmError> {
    check_size(size, host_ram())?;
    if huge {
        check_huge_pages(size)?;
    }
    let mut regions = Vec::new();
    for (base, len) in arch::guest_memory_regions(size) {
        let region = map_region(base, len, huge).map_err(|e| match huge_pages() {
            // Another process took the free pages since the check above.
            Some((page, free)) if huge && size / page.max(1) > free => {
                VmmError::HugePagesUnavailable(size, page, free)
            }
            _ => VmmError::GuestMemory(size, e),
        })?;
        regions.push(region);
    }
    let mem = GuestMemoryMmap::from_regions(regions)
        .map_err(|e| VmmError::GuestMemory(size, e.to_string()))?;
    register_slots(vm, &mem)?;
    Ok(mem)
}

/// Registers every region of `mem` with KVM, one slot each.
fn register_slots(vm: &VmFd, mem: &GuestMemoryMmap) -> Result<(), VmmError> {
    for (slot, region) in mem.iter().enumerate() {
        let kvm_region = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().raw_value(),
            memory_size: region.len(),
            userspace_addr: region.as_ptr() as u64,
        };
        // SAFETY: the host range is a live mapping owned by `mem`, which the VM keeps
        // alive for as long as the VM fd exists; slots do not overlap.
        unsafe { vm.set_user_memory_region(kvm_region) }.map_err(VmmError::SetMemoryRegion)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_limits() {
        let host = 8u64 << 30;
        assert!(check_size(128 << 20, host).is_ok());
        assert!(matches!(check_size(0, host), Err(VmmError::MemTooSmall(0))));
        assert!(matches!(
            check_size((64 << 20) + 1, host),
            Err(VmmError::MemUnaligned(_))
        ));
        assert!(matches!(
            check_size(4096u64 << 30, host),
            Err(VmmError::MemTooLarge(..))
        ));
        assert!(host_ram() > 0);
    }
}
