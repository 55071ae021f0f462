//! The zero page (`struct boot_params`, Linux boot protocol) and its e820 memory map.

use super::layout::{
    CMDLINE_MAX_SIZE, EBDA_START, HIMEM_START, MMIO_GAP_END, MMIO_GAP_START, ZERO_PAGE_START,
};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

/// e820 type of usable RAM.
pub const E820_RAM: u32 = 1;
/// e820 type of reserved memory.
pub const E820_RESERVED: u32 = 2;

const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448; // "HdrS"
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT: u32 = 0x0100_0000;

/// Errors filling the zero page.
#[derive(Debug, thiserror::Error)]
pub enum BootParamsError {
    /// More e820 entries than the zero page holds.
    #[error("too many e820 entries for the zero page")]
    E820Full,
    /// The zero page could not be written.
    #[error("cannot write the zero page to guest memory")]
    Write,
}

/// Where the initrd sits in guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitrdRange {
    /// Guest-physical start.
    pub addr: GuestAddress,
    /// Size in bytes.
    pub size: u64,
}

/// The e820 map for a guest whose RAM is `mem`: low RAM below the EBDA, RAM from
/// 1 MiB up to the end of memory or the MMIO gap, and RAM above 4 GiB if any.
pub fn e820_entries<M: GuestMemoryBackend>(mem: &M) -> Vec<(u64, u64, u32)> {
    let mut map = vec![
        (0, EBDA_START, E820_RAM),
        (EBDA_START, HIMEM_START - EBDA_START, E820_RESERVED),
    ];
    for region in mem.iter() {
        let start = region.start_addr().raw_value().max(HIMEM_START);
        let end = region.start_addr().raw_value() + region.len();
        if end > start {
            map.push((start, end - start, E820_RAM));
        }
    }
    debug_assert!(map
        .iter()
        .all(|(a, s, _)| a + s <= MMIO_GAP_START || *a >= MMIO_GAP_END));
    map
}

/// What the zero page tells the kernel.
#[derive(Clone, Copy, Default)]
pub struct BootInfo {
    /// The bzImage's setup header (None for ELF kernels).
    pub header: Option<setup_header>,
    /// Where the command line is.
    pub cmdline_addr: GuestAddress,
    /// Command-line bytes without the NUL.
    pub cmdline_len: usize,
    /// The initrd, if any.
    pub initrd: Option<InitrdRange>,
    /// The ACPI RSDP, if the VMM wrote ACPI tables.
    pub acpi_rsdp: Option<u64>,
}

/// Fills and writes the zero page.
pub fn setup_boot_params<M: GuestMemoryBackend>(
    mem: &M,
    info: &BootInfo,
) -> Result<boot_params, BootParamsError> {
    let BootInfo {
        header,
        cmdline_addr,
        cmdline_len,
        initrd,
        acpi_rsdp,
    } = *info;
    let mut params = boot_params {
        acpi_rsdp_addr: acpi_rsdp.unwrap_or(0),
        ..Default::default()
    };
    if let Some(hdr) = header {
        params.hdr = hdr;
    }
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
    params.hdr.header = KERNEL_HDR_MAGIC;
    params.hdr.cmd_line_ptr = cmdline_addr.raw_value() as u32;
    params.hdr.cmdline_size = cmdline_len.min(CMDLINE_MAX_SIZE - 1) as u32;
    params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT;
    if let Some(initrd) = initrd {
        let addr = initrd.addr.raw_value();
        params.hdr.ramdisk_image = addr as u32;
        params.ext_ramdisk_image = (addr >> 32) as u32;
        params.hdr.ramdisk_size = initrd.size as u32;
        params.ext_ramdisk_size = (initrd.size >> 32) as u32;
    }
    let entries = e820_entries(mem);
    if entries.len() > params.e820_table.len() {
        return Err(BootParamsError::E820Full);
    }
    for (i, (addr, size, kind)) in entries.iter().enumerate() {
        params.e820_table[i] = boot_e820_entry {
            addr: *addr,
            size: *size,
            r#type: *kind,
        };
    }
    params.e820_entries = entries.len() as u8;
    mem.write_obj(params, GuestAddress(ZERO_PAGE_START))
        .map_err(|_| BootParamsError::Write)?;
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::x86_64::guest_memory_regions;
    use vm_memory::GuestMemoryMmap;

    fn mem(size: u64) -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&guest_memory_regions(size)).unwrap()
    }

    #[test]
    fn e820_small_guest() {
        let m = mem(128 << 20);
        assert_eq!(
            e820_entries(&m),
            vec![
                (0, EBDA_START, E820_RAM),
                (EBDA_START, HIMEM_START - EBDA_START, E820_RESERVED),
                (HIMEM_START, (128 << 20) - HIMEM_START, E820_RAM),
            ]
        );
    }

    #[test]
    fn e820_leaves_the_mmio_gap_for_large_guests() {
        let m = mem(6 << 30);
        let e = e820_entries(&m);
        assert_eq!(e[2], (HIMEM_START, MMIO_GAP_START - HIMEM_START, E820_RAM));
        assert_eq!(e[3], (MMIO_GAP_END, (6 << 30) - MMIO_GAP_START, E820_RAM));
        let ram: u64 = e.iter().filter(|x| x.2 == E820_RAM).map(|x| x.1).sum();
        assert_eq!(ram, (6 << 30) - (HIMEM_START - EBDA_START));
    }

    #[test]
    fn zero_page_fields() {
        let m = mem(256 << 20);
        let initrd = InitrdRange {
            addr: GuestAddress(0x0f00_0000),
            size: 0x1234,
        };
        let info = BootInfo {
            cmdline_addr: GuestAddress(0x20000),
            cmdline_len: 10,
            initrd: Some(initrd),
            acpi_rsdp: Some(0xe0000),
            ..Default::default()
        };
        setup_boot_params(&m, &info).unwrap();
        let p: boot_params = m.read_obj(GuestAddress(ZERO_PAGE_START)).unwrap();
        let hdr = p.hdr;
        assert_eq!({ hdr.boot_flag }, 0xaa55);
        assert_eq!({ hdr.header }, KERNEL_HDR_MAGIC);
        assert_eq!({ hdr.type_of_loader }, 0xff);
        assert_eq!({ hdr.cmd_line_ptr }, 0x20000);
        assert_eq!({ hdr.cmdline_size }, 10);
        assert_eq!({ hdr.ramdisk_image }, 0x0f00_0000);
        assert_eq!({ hdr.ramdisk_size }, 0x1234);
        assert_eq!({ p.e820_entries }, 3);
        assert_eq!({ p.acpi_rsdp_addr }, 0xe0000);
        let last = p.e820_table[2];
        assert_eq!({ last.addr }, HIMEM_START);
        assert_eq!({ last.size }, (256 << 20) - HIMEM_START);
    }

    #[test]
    fn bzimage_header_is_kept() {
        let m = mem(64 << 20);
        let hdr = setup_header {
            version: 0x020f,
            setup_sects: 27,
            ..Default::default()
        };
        let info = BootInfo {
            header: Some(hdr),
            cmdline_addr: GuestAddress(0x20000),
            ..Default::default()
        };
        let p = setup_boot_params(&m, &info).unwrap();
        assert_eq!({ p.hdr.version }, 0x020f);
        assert_eq!({ p.hdr.setup_sects }, 27);
        assert_eq!({ p.hdr.ramdisk_image }, 0);
    }
}
