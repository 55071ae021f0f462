//! x86_64 kernel images: ELF `vmlinux` and `bzImage`, told apart by their headers.

use crate::BootError;
use arch::layout::HIMEM_START;
use linux_loader::loader::bootparam::setup_header;
use linux_loader::loader::{BzImage, Elf, KernelLoader};
use std::io::{Read, Seek};
use std::path::Path;
use vm_memory::{GuestAddress, GuestMemoryBackend, ReadVolatile};

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const EM_X86_64: u16 = 62;
const BZ_HDR_MAGIC_OFFSET: usize = 0x202;
const BZ_HDR_MAGIC: &[u8; 4] = b"HdrS";
/// 64-bit entry point of a bzImage, relative to where its protected-mode code loads.
const BZ_STARTUP_64_OFFSET: u64 = 0x200;
const XLF_KERNEL_64: u16 = 1;
/// Bytes of header read to tell formats apart and validate them.
const PROBE_LEN: usize = 0x280;

/// The kernel image formats minivmm boots on x86_64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelFormat {
    /// An uncompressed ELF `vmlinux`, entered at its 64-bit entry point.
    Elf,
    /// A `bzImage`, entered at its 64-bit `startup_64`.
    BzImage,
}

/// A kernel placed in guest memory.
#[derive(Clone, Copy, Debug)]
pub struct LoadedKernel {
    /// Which format the file was.
    pub format: KernelFormat,
    /// Guest-physical 64-bit entry point.
    pub entry: GuestAddress,
    /// First guest-physical byte after the loaded kernel.
    pub end: u64,
    /// The bzImage setup header, copied into the zero page.
    pub setup_header: Option<setup_header>,
}

fn machine_name(machine: u16) -> String {
    match machine {
        3 => "i386".into(),
        40 => "arm".into(),
        183 => "aarch64".into(),
        243 => "riscv".into(),
        m => format!("machine type {m}"),
    }
}

/// Identifies the kernel format from the first bytes of the file.
pub fn detect_format(path: &Path, head: &[u8], file_len: u64) -> Result<KernelFormat, BootError> {
    if head.starts_with(ELF_MAGIC) {
        if head.len() < 20 {
            return Err(BootError::Truncated(path.into(), 64, file_len));
        }
        if head[4] != ELFCLASS64 || head[5] != ELFDATA2LSB {
            return Err(BootError::WrongMachine(
                path.into(),
                "a 32-bit or big-endian machine".into(),
            ));
        }
        let machine = u16::from_le_bytes([head[18], head[19]]);
        if machine != EM_X86_64 {
            return Err(BootError::WrongMachine(path.into(), machine_name(machine)));
        }
        return Ok(KernelFormat::Elf);
    }
    if head.len() >= BZ_HDR_MAGIC_OFFSET + 4
        && &head[BZ_HDR_MAGIC_OFFSET..BZ_HDR_MAGIC_OFFSET + 4] == BZ_HDR_MAGIC
    {
        // setup_sects at 0x1f1, syssize (16-byte units) at 0x1f4, xloadflags at 0x236.
        let setup_sects = match head[0x1f1] {
            0 => 4,
            n => u64::from(n),
        };
        let syssize = u64::from(u32::from_le_bytes([
            head[0x1f4],
            head[0x1f5],
            head[0x1f6],
            head[0x1f7],
        ]));
        let needed = (setup_sects + 1) * 512 + syssize * 16;
        if file_len < needed {
            return Err(BootError::Truncated(path.into(), needed, file_len));
        }
        if head.len() >= 0x238
            && u16::from_le_bytes([head[0x236], head[0x237]]) & XLF_KERNEL_64 == 0
        {
            return Err(BootError::UnknownFormat(
                path.into(),
                "bzImage without a 64-bit entry point".into(),
            ));
        }
        return Ok(KernelFormat::BzImage);
    }
    Err(BootError::UnknownFormat(
        path.into(),
        "neither an ELF vmlinux nor a bzImage (no ELF magic, no HdrS header)".into(),
    ))
}

/// Checks that `path` is a kernel this architecture boots (readable, not empty, ELF
/// vmlinux or bzImage, complete as its header says) without loading it.
pub fn check_kernel(path: &Path) -> Result<KernelFormat, BootError> {
    let (mut file, len) = crate::open_nonempty(path)?;
    let mut head = vec![0u8; PROBE_LEN.min(usize::try_from(len).unwrap_or(usize::MAX))];
    file.read_exact(&mut head)
        .map_err(|e| BootError::Open(path.into(), e))?;
    detect_format(path, &head, len)
}

/// Loads the kernel at `path` into `mem`, whose RAM below the MMIO gap ends at `low_end`.
pub fn load_kernel<M: GuestMemoryBackend>(
    mem: &M,
    path: &Path,
    low_end: u64,
) -> Result<LoadedKernel, BootError> {
    let (mut file, len) = crate::open_nonempty(path)?;
    load_kernel_from(mem, path, &mut file, len, low_end)
}

/// Loads a kernel image of `len` bytes read from `file` (named `path` in errors).
pub fn load_kernel_from<M: GuestMemoryBackend, F: Read + ReadVolatile + Seek>(
    mem: &M,
    path: &Path,
    file: &mut F,
    len: u64,
    low_end: u64,
) -> Result<LoadedKernel, BootError> {
    let mut head = vec![0u8; PROBE_LEN.min(usize::try_from(len).unwrap_or(usize::MAX))];
    file.read_exact(&mut head)
        .map_err(|e| BootError::Open(path.into(), e))?;
    let format = detect_format(path, &head, len)?;
    let himem = Some(GuestAddress(HIMEM_START));
    let loaded = match format {
        KernelFormat::Elf => {
            let r =
                Elf::load(mem, None, file, himem).map_err(|e| BootError::Loader(path.into(), e))?;
            LoadedKernel {
                format,
                entry: r.kernel_load,
                end: r.kernel_end,
                setup_header: None,
            }
        }
        KernelFormat::BzImage => {
            let r = BzImage::load(mem, None, file, himem)
                .map_err(|e| BootError::Loader(path.into(), e))?;
            let hdr = r.setup_header;
            // The kernel decompresses itself to pref_address and needs init_size bytes there.
            // (Both come from the file: an absurd pair must not wrap around.)
            let need = hdr
                .map(|h| u64::from(h.init_size).saturating_add(h.pref_address))
                .unwrap_or(r.kernel_end);
            LoadedKernel {
                format,
                entry: GuestAddress(r.kernel_load.0 + BZ_STARTUP_64_OFFSET),
                end: r.kernel_end.max(need),
                setup_header: hdr,
            }
        }
    };
    if loaded.end > low_end {
        return Err(BootError::KernelTooBig(path.into(), loaded.end, low_end));
    }
    if loaded.entry.0 < HIMEM_START || loaded.entry.0 >= loaded.end {
        return Err(BootError::EntryOutside(
            path.into(),
            loaded.entry.0,
            HIMEM_START,
            loaded.end,
        ));
    }
    log::debug!(
        "loaded {:?} kernel, entry {:#x}, end {:#x}",
        loaded.format,
        loaded.entry.0,
        loaded.end
    );
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use vm_memory::GuestMemoryMmap;
    use vmm_sys_util::tempfile::TempFile;

    fn file_with(bytes: &[u8]) -> TempFile {
        let f = TempFile::new().unwrap();
        f.as_file().write_all(bytes).unwrap();
        f
    }

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 64 << 20)]).unwrap()
    }

    fn elf_header(machine: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(ELF_MAGIC);
        h[4] = ELFCLASS64;
        h[5] = ELFDATA2LSB;
        h[6] = 1;
        h[16] = 2; // ET_EXEC
        h[18..20].copy_from_slice(&machine.to_le_bytes());
        h
    }

    fn bzimage(setup_sects: u8, syssize: u32, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        b[0x1f1] = setup_sects;
        b[0x1f4..0x1f8].copy_from_slice(&syssize.to_le_bytes());
        b[0x202..0x206].copy_from_slice(BZ_HDR_MAGIC);
        b[0x236] = 1;
        b
    }

    #[test]
    fn detects_formats() {
        let p = Path::new("k");
        assert_eq!(
            detect_format(p, &elf_header(EM_X86_64), 64).unwrap(),
            KernelFormat::Elf
        );
        let bz = bzimage(4, 0x10, 0x1000);
        assert_eq!(
            detect_format(p, &bz[..PROBE_LEN], 0x1000).unwrap(),
            KernelFormat::BzImage
        );
    }

    #[test]
    fn rejects_foreign_elf() {
        let err = detect_format(Path::new("k"), &elf_header(183), 64).unwrap_err();
        assert!(err.to_string().contains("aarch64"), "{err}");
        let mut h = elf_header(EM_X86_64);
        h[4] = 1;
        assert!(matches!(
            detect_format(Path::new("k"), &h, 64),
            Err(BootError::WrongMachine(..))
        ));
    }

    #[test]
    fn rejects_truncated_bzimage() {
        let bz = bzimage(4, 0x1000, 0x1000);
        let err = detect_format(Path::new("k"), &bz[..PROBE_LEN], 0x1000).unwrap_err();
        assert!(matches!(err, BootError::Truncated(_, n, 0x1000) if n == 5 * 512 + 0x10000));
    }

    #[test]
    fn rejects_32bit_only_bzimage() {
        let mut bz = bzimage(4, 0x10, 0x1000);
        bz[0x236] = 0;
        assert!(matches!(
            detect_format(Path::new("k"), &bz, 0x1000),
            Err(BootError::UnknownFormat(..))
        ));
    }

    #[test]
    fn rejects_empty_and_random_files() {
        let m = mem();
        let empty = file_with(&[]);
        assert!(matches!(
            load_kernel(&m, empty.as_path(), 64 << 20),
            Err(BootError::Empty(_))
        ));
        let random: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let f = file_with(&random);
        assert!(matches!(
            load_kernel(&m, f.as_path(), 64 << 20),
            Err(BootError::UnknownFormat(..))
        ));
        assert!(matches!(
            load_kernel(&m, Path::new("/nonexistent/k"), 64 << 20),
            Err(BootError::Open(..))
        ));
    }

    #[test]
    fn loads_bzimage_and_reports_64bit_entry() {
        let m = mem();
        let f = file_with(&bzimage(4, 0x100, 5 * 512 + 0x1000));
        let mut img = bzimage(4, 0x100, 5 * 512 + 0x1000);
        img[0x214..0x218].copy_from_slice(&(HIMEM_START as u32).to_le_bytes()); // code32_start
        img[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes()); // version
        img[0x211] = 1; // loadflags: LOADED_HIGH
        let f2 = file_with(&img);
        let k = load_kernel(&m, f2.as_path(), 64 << 20).unwrap();
        assert_eq!(k.format, KernelFormat::BzImage);
        assert_eq!(k.entry, GuestAddress(HIMEM_START + 0x200));
        assert!(k.setup_header.is_some());
        // Without LOADED_HIGH the loader refuses it.
        assert!(matches!(
            load_kernel(&m, f.as_path(), 64 << 20),
            Err(BootError::Loader(..))
        ));
    }

    /// Found by the kernel_loader fuzz target: an ELF whose one segment loads fine but
    /// whose entry point lies far outside guest memory was accepted.
    #[test]
    fn rejects_entry_point_outside_the_image() {
        let mut elf = elf_header(EM_X86_64);
        let entry: u64 = 0xa200_0000_0100_0000;
        elf[24..32].copy_from_slice(&entry.to_le_bytes());
        elf[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        elf[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        elf[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        elf[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        let mut phdr = vec![0u8; 56];
        phdr[0..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        phdr[4..8].copy_from_slice(&5u32.to_le_bytes());
        phdr[8..16].copy_from_slice(&120u64.to_le_bytes()); // p_offset
        phdr[24..32].copy_from_slice(&HIMEM_START.to_le_bytes()); // p_paddr
        phdr[32..40].copy_from_slice(&64u64.to_le_bytes()); // p_filesz
        phdr[40..48].copy_from_slice(&64u64.to_le_bytes()); // p_memsz
        elf.extend_from_slice(&phdr);
        elf.extend_from_slice(&[0xf4; 64]);
        let f = file_with(&elf);
        let err = load_kernel(&mem(), f.as_path(), 64 << 20).unwrap_err();
        assert!(matches!(err, BootError::EntryOutside(..)), "{err}");
        assert!(
            err.to_string().contains("entry point 0xa200000001000000"),
            "{err}"
        );
        // The same file with its entry at the segment start loads.
        elf[24..32].copy_from_slice(&HIMEM_START.to_le_bytes());
        let f = file_with(&elf);
        let k = load_kernel(&mem(), f.as_path(), 64 << 20).unwrap();
        assert_eq!(k.entry.0, HIMEM_START);
    }

    /// Found by the kernel_loader fuzz target: pref_address + init_size from the setup
    /// header overflowed (a panic in debug builds, a wrapped small end in release).
    #[test]
    fn absurd_bzimage_sizes_do_not_wrap() {
        let mut b = bzimage(4, 4, 5 * 512 + 64);
        b[0x214..0x218].copy_from_slice(&(HIMEM_START as u32).to_le_bytes()); // code32_start
        b[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes()); // version
        b[0x211] = 1; // loadflags: LOADED_HIGH
        b[0x258..0x260].copy_from_slice(&u64::MAX.to_le_bytes()); // pref_address
        b[0x260..0x264].copy_from_slice(&0x10_0000u32.to_le_bytes()); // init_size
        let f = file_with(&b);
        let err = load_kernel(&mem(), f.as_path(), 64 << 20).unwrap_err();
        assert!(matches!(err, BootError::KernelTooBig(..)), "{err}");
    }
}
