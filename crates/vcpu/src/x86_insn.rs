//! x86 instructions that a nested KVM which emulates guest kernel code cannot emulate,
//! and that the `emulated-kvm` command-line preset keeps a Linux guest away from
//! (`noxsave`, `clearcpuid=...`, `nosmap`). Used to name the preset in the error of an
//! emulation failure when the guest booted without it. A small decoder: legacy and REX
//! prefixes, then the opcode bytes that matter; anything else is "not one of those".

/// Legacy prefixes (operand/address size, segment overrides, lock, rep).
const LEGACY_PREFIXES: [u8; 11] = [
    0x66, 0x67, 0xf2, 0xf3, 0x2e, 0x36, 0x3e, 0x26, 0x64, 0x65, 0xf0,
];

/// The instruction at the start of `bytes`, when it is one the `emulated-kvm` preset
/// keeps the guest kernel from using (64-bit mode decoding); its name and CPU feature.
pub fn avoided_by_emulated_kvm_preset(bytes: &[u8]) -> Option<&'static str> {
    let mut at = 0;
    let (mut op66, mut rep, mut repne, mut rex_w) = (false, false, false, false);
    while let Some(&b) = bytes.get(at) {
        if LEGACY_PREFIXES.contains(&b) {
            op66 |= b == 0x66;
            rep |= b == 0xf3;
            repne |= b == 0xf2;
        } else if (0x40..=0x4f).contains(&b) {
            rex_w = b & 0x08 != 0;
        } else {
            break;
        }
        at += 1;
    }
    let op = &bytes[at.min(bytes.len())..];
    let modrm = |i: usize| op.get(i).map(|m| (m >> 6, (m >> 3) & 7));
    match op {
        [0xc4 | 0xc5, ..] => Some("a VEX-encoded (AVX, BMI) instruction"),
        [0x62, ..] => Some("an EVEX-encoded (AVX-512) instruction"),
        [0x0f, 0x01, 0xca, ..] => Some("clac (SMAP)"),
        [0x0f, 0x01, 0xcb, ..] => Some("stac (SMAP)"),
        [0x0f, 0x01, 0xd0, ..] => Some("xgetbv (XSAVE)"),
        [0x0f, 0x01, 0xd1, ..] => Some("xsetbv (XSAVE)"),
        [0x0f, 0x01, 0xee | 0xef, ..] => Some("rdpkru/wrpkru (PKU)"),
        [0x0f, 0xb8, ..] if rep => Some("popcnt (POPCNT)"),
        [0x0f, 0xbc | 0xbd, ..] if rep => Some("tzcnt/lzcnt (BMI1)"),
        [0x0f, 0x38, 0xf0 | 0xf1, ..] if !repne => Some("movbe (MOVBE)"),
        [0x0f, 0x38, 0x82, ..] if op66 => Some("invpcid (INVPCID)"),
        [0x0f, 0x38 | 0x3a, ..] => Some("an SSSE3/SSE4/AES/SHA instruction"),
        [0x0f, 0xae, ..] => match modrm(2)? {
            (3, 0..=3) if rep => Some("rd/wrfsbase or rd/wrgsbase (FSGSBASE)"),
            (3, _) => None,
            (_, 4) => Some("xsave (XSAVE)"),
            (_, 5) => Some("xrstor (XSAVE)"),
            (_, 6) if op66 => Some("clwb (CLWB)"),
            (_, 6) => Some("xsaveopt (XSAVEOPT)"),
            (_, 7) if op66 => Some("clflushopt (CLFLUSHOPT)"),
            _ => None,
        },
        [0x0f, 0xc7, ..] => match modrm(2)? {
            (3, 6) => Some("rdrand (RDRAND)"),
            (3, 7) if rep => Some("rdpid (RDPID)"),
            (3, 7) => Some("rdseed (RDSEED)"),
            (3, _) => None,
            (_, 1) if rex_w => Some("cmpxchg16b (CX16)"),
            (_, 3) => Some("xrstors (XSAVES)"),
            (_, 4) => Some("xsavec (XSAVEC)"),
            (_, 5) => Some("xsaves (XSAVES)"),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::avoided_by_emulated_kvm_preset as avoided;

    #[test]
    fn instructions_seen_failing_on_emulating_hosts() {
        // From PLATFORM.md and issue 11: xrstor, xsave, cmpxchg16b, popcnt, clac.
        assert_eq!(
            avoided(&[0x48, 0x0f, 0xae, 0x2f, 0x00]),
            Some("xrstor (XSAVE)")
        );
        assert_eq!(avoided(&[0x0f, 0xae, 0x27]), Some("xsave (XSAVE)"));
        assert_eq!(
            avoided(&[0x48, 0x0f, 0xc7, 0x0f]),
            Some("cmpxchg16b (CX16)")
        );
        assert_eq!(
            avoided(&[0xf3, 0x48, 0x0f, 0xb8, 0xc7]),
            Some("popcnt (POPCNT)")
        );
        assert_eq!(avoided(&[0x0f, 0x01, 0xca]), Some("clac (SMAP)"));
        assert_eq!(avoided(&[0x0f, 0xc7, 0xf0]), Some("rdrand (RDRAND)"));
        assert_eq!(avoided(&[0xf3, 0x0f, 0xc7, 0xf8]), Some("rdpid (RDPID)"));
        assert_eq!(
            avoided(&[0xf3, 0x48, 0x0f, 0xae, 0xc0]),
            Some("rd/wrfsbase or rd/wrgsbase (FSGSBASE)")
        );
        assert_eq!(
            avoided(&[0x66, 0x0f, 0xae, 0x38]),
            Some("clflushopt (CLFLUSHOPT)")
        );
        assert!(avoided(&[0xc5, 0xf9, 0x6f, 0x00]).is_some());
        assert!(avoided(&[0x66, 0x0f, 0x38, 0x00, 0xc1]).is_some());
    }

    #[test]
    fn ordinary_instructions_are_not_named() {
        for bytes in [
            &[][..],
            &[0xcc],                   // int3: no preset avoids it
            &[0xcd, 0x80],             // int 0x80
            &[0x0f, 0x0b],             // ud2
            &[0x0f, 0xb8, 0x00],       // jmpe form without F3
            &[0x0f, 0xae, 0x07],       // fxsave
            &[0x0f, 0xae, 0xf0],       // mfence
            &[0x0f, 0xc7, 0x0f],       // cmpxchg8b
            &[0x48, 0x89, 0xe5],       // mov rbp, rsp
            &[0x66, 0x66, 0x66, 0x66], // prefixes only
            &[0x0f],                   // cut short
            &[0x0f, 0xae],             // cut short before ModRM
        ] {
            assert_eq!(avoided(bytes), None, "{bytes:02x?}");
        }
    }
}
