//! aarch64 kernel images: the arm64 `Image` (the PE/EFI-stub format of
//! arch/arm64/boot/Image), checked for its magic and loaded with linux-loader at the
//! 2 MiB-aligned start of RAM plus its text offset.

use crate::BootError;
use linux_loader::loader::pe::PE;
use linux_loader::loader::KernelLoader;
use std::io::Read;
use std::path::Path;
use vm_memory::{GuestAddress, GuestMemoryBackend};

/// "ARM\x64", little endian, at offset 56 of the Image header.
const IMAGE_MAGIC: u32 = 0x644d_5241;
const IMAGE_MAGIC_OFFSET: usize = 56;
const IMAGE_SIZE_OFFSET: usize = 16;
const HEADER_LEN: usize = 64;
const ELF_MAGIC: &[u8; 4] = b"\x7fELF";

/// The kernel image formats minivmm boots on aarch64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelFormat {
    /// An arm64 `Image`.
    Image,
}

/// A kernel placed in guest memory.
#[derive(Clone, Copy, Debug)]
pub struct LoadedKernel {
    /// Which format the file was.
    pub format: KernelFormat,
    /// Guest-physical entry point (the first byte of the image).
    pub entry: GuestAddress,
    /// First guest-physical byte after the kernel's memory footprint.
    pub end: u64,
}

/// Checks the header of an arm64 Image; returns its memory footprint (0 = unknown).
pub fn check_header(path: &Path, head: &[u8], file_len: u64) -> Result<u64, BootError> {
    if head.starts_with(ELF_MAGIC) {
        return Err(BootError::UnknownFormat(
            path.into(),
            "an ELF vmlinux; on aarch64 minivmm boots the arm64 Image (arch/arm64/boot/Image)"
                .into(),
        ));
    }
    if head.len() < HEADER_LEN {
        return Err(BootError::Truncated(
            path.into(),
            HEADER_LEN as u64,
            file_len,
        ));
    }
    let word = |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    if word(IMAGE_MAGIC_OFFSET) != IMAGE_MAGIC {
        return Err(BootError::UnknownFormat(
            path.into(),
            "no arm64 Image magic (\"ARM\\x64\" at offset 56)".into(),
        ));
    }
    let mut size = [0u8; 8];
    size.copy_from_slice(&head[IMAGE_SIZE_OFFSET..IMAGE_SIZE_OFFSET + 8]);
    Ok(u64::from_le_bytes(size))
}

/// Checks that `path` is an arm64 Image (readable, not empty, its magic present)
/// without loading it.
pub fn check_kernel(path: &Path) -> Result<KernelFormat, BootError> {
    let (mut file, len) = crate::open_nonempty(path)?;
    let mut head = vec![0u8; HEADER_LEN.min(usize::try_from(len).unwrap_or(usize::MAX))];
    file.read_exact(&mut head)
        .map_err(|e| BootError::Open(path.into(), e))?;
    check_header(path, &head, len)?;
    Ok(KernelFormat::Image)
}

/// Loads the Image at `ram_start` (2 MiB aligned); `ram_end` bounds its footprint.
pub fn load_kernel<M: GuestMemoryBackend>(
    mem: &M,
    path: &Path,
    ram_start: u64,
    ram_end: u64,
) -> Result<LoadedKernel, BootError> {
    let (mut file, len) = crate::open_nonempty(path)?;
    let mut head = vec![0u8; HEADER_LEN.min(len as usize)];
    file.read_exact(&mut head)
        .map_err(|e| BootError::Open(path.into(), e))?;
    let footprint = check_header(path, &head, len)?;
    let r = PE::load(mem, Some(GuestAddress(ram_start)), &mut file, None)
        .map_err(|e| BootError::Loader(path.into(), e))?;
    let end = r.kernel_load.0 + footprint.max(len);
    if end > ram_end {
        return Err(BootError::KernelTooBig(path.into(), end, ram_end));
    }
    Ok(LoadedKernel {
        format: KernelFormat::Image,
        entry: r.kernel_load,
        end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(magic: u32, size: u64) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_LEN];
        h[IMAGE_SIZE_OFFSET..IMAGE_SIZE_OFFSET + 8].copy_from_slice(&size.to_le_bytes());
        h[IMAGE_MAGIC_OFFSET..IMAGE_MAGIC_OFFSET + 4].copy_from_slice(&magic.to_le_bytes());
        h
    }

    #[test]
    fn the_magic_is_checked_with_a_clear_error() {
        let p = Path::new("Image");
        assert_eq!(
            check_header(p, &header(IMAGE_MAGIC, 0x200_0000), 100).unwrap(),
            0x200_0000
        );
        let e = check_header(p, &header(0x1234, 0), 100)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no arm64 Image magic"), "{e}");
        let e = check_header(p, b"\x7fELF\x02\x01", 6)
            .unwrap_err()
            .to_string();
        assert!(e.contains("arch/arm64/boot/Image"), "{e}");
        let e = check_header(p, &header(IMAGE_MAGIC, 0)[..20], 20)
            .unwrap_err()
            .to_string();
        assert!(e.contains("truncated"), "{e}");
    }

    #[test]
    fn an_image_loads_at_the_start_of_ram_plus_its_text_offset() {
        use vm_memory::{Bytes, GuestMemoryMmap};
        let ram = 0x8000_0000u64;
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(ram), 64 << 20)]).unwrap();
        let mut image = header(IMAGE_MAGIC, 0x10_0000);
        image.extend_from_slice(&[0xaa; 4096]);
        let path = std::env::temp_dir().join(format!("minivmm-image-{}", std::process::id()));
        std::fs::write(&path, &image).unwrap();
        let k = load_kernel(&mem, &path, ram, ram + (64 << 20)).unwrap();
        // text_offset 0 in this header and a non-zero image size: loaded at RAM start.
        assert_eq!(k.entry, GuestAddress(ram));
        assert_eq!(k.end, ram + 0x10_0000);
        let b: u8 = mem.read_obj(GuestAddress(ram + HEADER_LEN as u64)).unwrap();
        assert_eq!(b, 0xaa);
        let e = load_kernel(&mem, &path, ram, ram + 0x8_0000).unwrap_err();
        assert!(matches!(e, BootError::KernelTooBig(..)));
        std::fs::remove_file(&path).unwrap();
    }
}
