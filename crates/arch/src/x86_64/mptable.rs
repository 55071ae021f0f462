//! The Intel MultiProcessor Specification 1.4 table that tells a guest its CPUs
//! (one entry per vCPU, APIC ID = vCPU index), the ISA bus, the IOAPIC and how
//! the 24 IOAPIC pins and the LAPIC LINT0/LINT1 lines are wired.

use super::layout::{APIC_ADDR, HIMEM_START, IOAPIC_ADDR, IOAPIC_PINS, MAX_VCPUS, MPTABLE_START};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

const APIC_VERSION: u8 = 0x14;
const CPU_ENABLED: u8 = 1;
const CPU_BSP: u8 = 2;
/// Family 6 signature, and feature flags FPU | APIC.
const CPU_SIGNATURE: u32 = 0x600;
const CPU_FEATURES: u32 = 0x201;
const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_INTSRC: u8 = 3;
const ENTRY_LINTSRC: u8 = 4;
const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;
const FLOATING_POINTER_LEN: usize = 16;
const HEADER_LEN: usize = 44;

/// Errors building the MP table.
#[derive(Debug, thiserror::Error)]
pub enum MptableError {
    /// More vCPUs than an MP table with 8-bit APIC IDs can describe.
    #[error("{0} vCPUs do not fit in the MP table (at most {MAX_VCPUS})")]
    TooManyCpus(usize),
    /// The table would overlap the kernel at 1 MiB.
    #[error("MP table of {0} bytes does not fit below 1 MiB")]
    TooLarge(usize),
    /// Guest memory could not hold the table.
    #[error("cannot write the MP table to guest memory")]
    Write,
}

fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |acc, b| acc.wrapping_sub(*b))
}

/// The IOAPIC's APIC ID: the first one after the vCPUs'.
pub fn ioapic_id(num_cpus: usize) -> u8 {
    // num_cpus is bounded by MAX_VCPUS (254), so this never wraps.
    (num_cpus as u8).wrapping_add(1)
}

fn entries(num_cpus: usize) -> (Vec<u8>, u16) {
    let mut t = Vec::new();
    let mut count = 0u16;
    for cpu in 0..num_cpus {
        let flags = CPU_ENABLED | if cpu == 0 { CPU_BSP } else { 0 };
        t.extend_from_slice(&[ENTRY_PROCESSOR, cpu as u8, APIC_VERSION, flags]);
        t.extend_from_slice(&CPU_SIGNATURE.to_le_bytes());
        t.extend_from_slice(&CPU_FEATURES.to_le_bytes());
        t.extend_from_slice(&[0u8; 8]);
        count += 1;
    }
    t.extend_from_slice(&[ENTRY_BUS, 0]);
    t.extend_from_slice(b"ISA   ");
    count += 1;
    let ioapic = ioapic_id(num_cpus);
    t.extend_from_slice(&[ENTRY_IOAPIC, ioapic, APIC_VERSION, 1]);
    t.extend_from_slice(&(IOAPIC_ADDR as u32).to_le_bytes());
    count += 1;
    for pin in 0..IOAPIC_PINS {
        // Type, irq type, flags (conforming), source bus 0, source irq, dest IOAPIC, dest pin.
        t.extend_from_slice(&[ENTRY_INTSRC, INT_TYPE_INT, 0, 0, 0, pin, ioapic, pin]);
        count += 1;
    }
    // LINT0 is the 8259's ExtINT line, LINT1 the NMI line, on every LAPIC (0xff).
    t.extend_from_slice(&[ENTRY_LINTSRC, INT_TYPE_EXTINT, 0, 0, 0, 0, 0xff, 0]);
    t.extend_from_slice(&[ENTRY_LINTSRC, INT_TYPE_NMI, 0, 0, 0, 0, 0xff, 1]);
    count += 2;
    (t, count)
}

/// Builds the floating pointer followed by the configuration table, as bytes to be
/// placed at `base`.
pub fn build(num_cpus: usize, base: u64) -> Result<Vec<u8>, MptableError> {
    if num_cpus == 0 || num_cpus > MAX_VCPUS {
        return Err(MptableError::TooManyCpus(num_cpus));
    }
    let table_addr = base + FLOATING_POINTER_LEN as u64;
    let (body, count) = entries(num_cpus);

    let mut fp = Vec::with_capacity(FLOATING_POINTER_LEN);
    fp.extend_from_slice(b"_MP_");
    fp.extend_from_slice(&(table_addr as u32).to_le_bytes());
    fp.extend_from_slice(&[1, 4, 0, 0, 0, 0, 0, 0]);
    fp[10] = checksum(&fp);

    let table_len = HEADER_LEN + body.len();
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(b"PCMP");
    header.extend_from_slice(&(table_len as u16).to_le_bytes());
    header.extend_from_slice(&[4, 0]);
    header.extend_from_slice(b"MINIVMM ");
    header.extend_from_slice(b"000000000000");
    header.extend_from_slice(&0u32.to_le_bytes());
    header.extend_from_slice(&0u16.to_le_bytes());
    header.extend_from_slice(&count.to_le_bytes());
    header.extend_from_slice(&(APIC_ADDR as u32).to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    let sum = checksum(&header).wrapping_add(checksum(&body));
    header[7] = sum;

    let mut out = fp;
    out.extend_from_slice(&header);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Writes the MP table for `num_cpus` vCPUs at [`MPTABLE_START`].
pub fn setup_mptable<M: GuestMemoryBackend>(mem: &M, num_cpus: usize) -> Result<(), MptableError> {
    let bytes = build(num_cpus, MPTABLE_START)?;
    if MPTABLE_START + bytes.len() as u64 > HIMEM_START {
        return Err(MptableError::TooLarge(bytes.len()));
    }
    mem.write_slice(&bytes, GuestAddress(MPTABLE_START))
        .map_err(|_| MptableError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
    }

    #[test]
    fn floating_pointer_and_table_checksums_are_zero() {
        for cpus in [1, 2, 8, MAX_VCPUS] {
            let t = build(cpus, MPTABLE_START).unwrap();
            assert_eq!(&t[0..4], b"_MP_");
            assert_eq!(t[0..16].iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
            assert_eq!(u32_at(&t, 4) as u64, MPTABLE_START + 16);
            let table = &t[16..];
            assert_eq!(&table[0..4], b"PCMP");
            let len = u16::from_le_bytes([table[4], table[5]]) as usize;
            assert_eq!(len, table.len());
            assert_eq!(table.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        }
    }

    #[test]
    fn one_processor_entry_per_cpu_with_sequential_apic_ids() {
        let t = build(4, MPTABLE_START).unwrap();
        let table = &t[16..];
        let count = u16::from_le_bytes([table[34], table[35]]);
        assert_eq!(count as usize, 4 + 1 + 1 + IOAPIC_PINS as usize + 2);
        assert_eq!(u32_at(table, 36) as u64, APIC_ADDR);
        let mut off = HEADER_LEN;
        for cpu in 0..4u8 {
            assert_eq!(table[off], ENTRY_PROCESSOR);
            assert_eq!(table[off + 1], cpu);
            assert_eq!(table[off + 3] & CPU_BSP != 0, cpu == 0);
            assert_eq!(table[off + 3] & CPU_ENABLED, CPU_ENABLED);
            off += 20;
        }
        assert_eq!(table[off], ENTRY_BUS);
        assert_eq!(&table[off + 2..off + 8], b"ISA   ");
        off += 8;
        assert_eq!(table[off], ENTRY_IOAPIC);
        assert_eq!(table[off + 1], ioapic_id(4));
        assert_eq!(u32_at(table, off + 4) as u64, IOAPIC_ADDR);
    }

    #[test]
    fn rejects_zero_and_too_many_cpus() {
        assert!(matches!(build(0, 0), Err(MptableError::TooManyCpus(0))));
        assert!(build(MAX_VCPUS + 1, 0).is_err());
    }

    #[test]
    fn largest_table_fits_below_1mib() {
        let mem: GuestMemoryMmap =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
        setup_mptable(&mem, MAX_VCPUS).unwrap();
        let mut sig = [0u8; 4];
        mem.read_slice(&mut sig, GuestAddress(MPTABLE_START))
            .unwrap();
        assert_eq!(&sig, b"_MP_");
    }
}
