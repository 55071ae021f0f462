//! Guest memory into a snapshot's memory file, sparsely: pages that hold only zeros
//! (everything the guest never touched, and much it freed) become holes, which take no
//! disk (or tmpfs) space and read back as zeros when a restored VM maps the file. The
//! caller sets the file's length to the whole layout afterwards.

use crate::snapshot::MemoryRegion;
use std::io::{Seek, SeekFrom, Write};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const PAGE: usize = 4096;
/// Guest memory is read through a buffer this large.
const CHUNK: usize = 1 << 20;

/// True if `page` holds only zeros.
fn is_zero(page: &[u8]) -> bool {
    let (head, words, tail) = {
        // SAFETY: any bit pattern is a valid u64; align_to only splits the slice.
        unsafe { page.align_to::<u64>() }
    };
    head.iter().all(|b| *b == 0) && words.iter().all(|w| *w == 0) && tail.iter().all(|b| *b == 0)
}

/// Writes each region of `layout` from `memory` at its file offset, skipping pages of
/// zeros; returns the bytes written.
pub(crate) fn write_sparse(
    memory: &GuestMemoryMmap,
    layout: &[MemoryRegion],
    file: &mut (impl Write + Seek),
) -> Result<u64, String> {
    let mut buf = vec![0u8; CHUNK];
    let mut written = 0u64;
    for region in layout {
        let mut done = 0u64;
        while done < region.size {
            let len = usize::try_from((region.size - done).min(CHUNK as u64))
                .map_err(|e| e.to_string())?;
            let chunk = &mut buf[..len];
            memory
                .read_slice(chunk, GuestAddress(region.guest_addr + done))
                .map_err(|e| {
                    format!(
                        "reading guest memory at {:#x}: {e}",
                        region.guest_addr + done
                    )
                })?;
            // Runs of non-zero pages, each written at its place.
            let mut page = 0;
            while page < len {
                let end = (page + PAGE).min(len);
                if is_zero(&chunk[page..end]) {
                    page = end;
                    continue;
                }
                let start = page;
                while page < len && !is_zero(&chunk[page..(page + PAGE).min(len)]) {
                    page = (page + PAGE).min(len);
                }
                file.seek(SeekFrom::Start(region.file_offset + done + start as u64))
                    .and_then(|_| file.write_all(&chunk[start..page]))
                    .map_err(|e| format!("writing guest memory: {e}"))?;
                written += (page - start) as u64;
            }
            done += len as u64;
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap fails the test
    use super::*;
    use std::io::Cursor;

    #[test]
    fn zero_pages_are_skipped_and_the_rest_lands_in_place() {
        let mem = GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0), 3 * CHUNK),
            (GuestAddress(1 << 32), 2 * PAGE),
        ])
        .unwrap();
        mem.write_slice(&[1, 2, 3], GuestAddress(5)).unwrap();
        mem.write_slice(&[9; PAGE + 1], GuestAddress(CHUNK as u64 - 1))
            .unwrap();
        mem.write_slice(&[7], GuestAddress((1 << 32) + PAGE as u64))
            .unwrap();
        let layout = crate::snapshot::memory_layout(&mem);
        let mut file = Cursor::new(Vec::new());
        let written = write_sparse(&mem, &layout, &mut file).unwrap();
        // Page 0; the last page of chunk 0 and the first of chunk 1, which the second
        // write straddles; the second region's second page.
        assert_eq!(written, 4 * PAGE as u64);
        let mut image = file.into_inner();
        image.resize(3 * CHUNK + 2 * PAGE, 0);
        let mut expect = vec![0u8; 3 * CHUNK + 2 * PAGE];
        mem.read_slice(&mut expect[..3 * CHUNK], GuestAddress(0))
            .unwrap();
        mem.read_slice(&mut expect[3 * CHUNK..], GuestAddress(1 << 32))
            .unwrap();
        assert!(image == expect, "the file differs from guest memory");
    }
}
