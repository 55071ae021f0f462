//! The boot GDT: flat 64-bit code and data segments and a TSS, as KVM segment registers.

use kvm_bindings::kvm_segment;

/// GDT index of the 64-bit code segment.
pub const CODE_INDEX: u8 = 1;
/// GDT index of the data segment.
pub const DATA_INDEX: u8 = 2;
/// GDT index of the task state segment.
pub const TSS_INDEX: u8 = 3;

/// Builds a GDT entry from its flags, base and limit (Intel SDM vol. 3, 3.4.5).
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << (56 - 24))
        | ((flags as u64 & 0x0000_f0ff) << 40)
        | ((limit as u64 & 0x000f_0000) << (48 - 16))
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
}

/// The boot GDT: null, code (64-bit, exec/read), data (read/write), TSS.
pub fn boot_gdt() -> [u64; super::layout::BOOT_GDT_MAX] {
    [
        gdt_entry(0, 0, 0),
        gdt_entry(0xa09b, 0, 0xfffff),
        gdt_entry(0xc093, 0, 0xfffff),
        gdt_entry(0x808b, 0, 0xfffff),
    ]
}

fn base(entry: u64) -> u64 {
    ((entry & 0xff00_0000_0000_0000) >> 32)
        | ((entry & 0x0000_00ff_0000_0000) >> 16)
        | ((entry & 0x0000_0000_ffff_0000) >> 16)
}

fn limit(entry: u64) -> u32 {
    let raw = (((entry & 0x000f_0000_0000_0000) >> 32) | (entry & 0x0000_0000_0000_ffff)) as u32;
    // With the granularity bit set the limit counts 4 KiB pages.
    if (entry >> 55) & 1 == 1 {
        (raw << 12) | 0xfff
    } else {
        raw
    }
}

/// Converts a GDT entry into the segment register KVM expects.
pub fn segment_from_gdt(entry: u64, index: u8) -> kvm_segment {
    kvm_segment {
        base: base(entry),
        limit: limit(entry),
        selector: u16::from(index) * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present: ((entry >> 47) & 1) as u8,
        dpl: ((entry >> 45) & 0x3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g: ((entry >> 55) & 1) as u8,
        avl: ((entry >> 52) & 1) as u8,
        unusable: u8::from((entry >> 47) & 1 == 0),
        padding: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_segment_is_64bit_present_and_flat() {
        let gdt = boot_gdt();
        let seg = segment_from_gdt(gdt[CODE_INDEX as usize], CODE_INDEX);
        assert_eq!(seg.selector, 0x8);
        assert_eq!(seg.l, 1);
        assert_eq!(seg.db, 0);
        assert_eq!(seg.present, 1);
        assert_eq!(seg.s, 1);
        assert_eq!(seg.type_, 0xb);
        assert_eq!(seg.g, 1);
        assert_eq!(seg.base, 0);
        assert_eq!(seg.limit, 0xffff_ffff);
        assert_eq!(seg.unusable, 0);
    }

    #[test]
    fn data_and_tss_segments() {
        let gdt = boot_gdt();
        let data = segment_from_gdt(gdt[DATA_INDEX as usize], DATA_INDEX);
        assert_eq!(data.selector, 0x10);
        assert_eq!(data.type_, 0x3);
        assert_eq!(data.db, 1);
        let tss = segment_from_gdt(gdt[TSS_INDEX as usize], TSS_INDEX);
        assert_eq!(tss.selector, 0x18);
        assert_eq!(tss.type_, 0xb);
        assert_eq!(tss.s, 0);
    }

    #[test]
    fn entry_encoding_round_trips_base_and_limit() {
        let e = gdt_entry(0x4093, 0x1234_5678, 0xabcde);
        assert_eq!(base(e), 0x1234_5678);
        assert_eq!(limit(e), 0xabcde);
        assert_eq!(segment_from_gdt(gdt_entry(0, 0, 0), 0).unusable, 1);
    }
}
