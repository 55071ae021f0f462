//! Identity page tables for entering a 64-bit kernel in long mode: the first 4 GiB
//! (RAM below the MMIO gap and the gap itself), mapped with 2 MiB pages.

use super::layout::{PDE_START, PDPTE_START, PML4_START};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

const PRESENT_WRITABLE: u64 = 0x3;
const PAGE_SIZE_2M: u64 = 0x80;

/// Errors writing the page tables.
#[derive(Debug, thiserror::Error)]
pub enum PagingError {
    /// A table did not fit in guest memory.
    #[error("cannot write boot page table at {0:#x}")]
    WriteTable(u64),
}

/// Number of page directories (1 GiB each).
pub const PD_COUNT: u64 = 4;

/// Writes PML4, PDPT and the page directories so that guest-virtual equals
/// guest-physical for the first 4 GiB. Returns the value for CR3.
pub fn setup_identity_map<M: GuestMemoryBackend>(mem: &M) -> Result<u64, PagingError> {
    let write = |addr: u64, val: u64| {
        mem.write_obj(val, GuestAddress(addr))
            .map_err(|_| PagingError::WriteTable(addr))
    };
    write(PML4_START, PDPTE_START | PRESENT_WRITABLE)?;
    for pd in 0..PD_COUNT {
        write(
            PDPTE_START + pd * 8,
            (PDE_START + pd * 0x1000) | PRESENT_WRITABLE,
        )?;
    }
    for i in 0..512 * PD_COUNT {
        write(
            PDE_START + i * 8,
            (i << 21) | PAGE_SIZE_2M | PRESENT_WRITABLE,
        )?;
    }
    Ok(PML4_START)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    #[test]
    fn maps_first_4_gib_identity() {
        let mem: GuestMemoryMmap =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        assert_eq!(setup_identity_map(&mem).unwrap(), PML4_START);
        let pml4: u64 = mem.read_obj(GuestAddress(PML4_START)).unwrap();
        assert_eq!(pml4, PDPTE_START | 3);
        let pdpte: u64 = mem.read_obj(GuestAddress(PDPTE_START)).unwrap();
        assert_eq!(pdpte, PDE_START | 3);
        // Walk a virtual address through the tables: it must map to itself.
        for va in [0x3fe0_1234u64, 0xd000_0010, 0xfee0_0020] {
            let pdpte: u64 = mem
                .read_obj(GuestAddress(PDPTE_START + ((va >> 30) & 0x1ff) * 8))
                .unwrap();
            assert_eq!(pdpte & 3, 3);
            let pd = pdpte & !0xfff;
            let pde: u64 = mem
                .read_obj(GuestAddress(pd + ((va >> 21) & 0x1ff) * 8))
                .unwrap();
            assert_eq!(pde & 0x83, 0x83);
            assert_eq!((pde & !0x1f_ffff) | (va & 0x1f_ffff), va);
        }
    }

    #[test]
    fn fails_cleanly_without_memory() {
        let mem: GuestMemoryMmap =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        assert!(matches!(
            setup_identity_map(&mem),
            Err(PagingError::WriteTable(PML4_START))
        ));
    }
}
