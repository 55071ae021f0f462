//! ACPI tables, built with the acpi_tables crate: RSDP -> XSDT -> FADT (-> FACS, DSDT
//! with `\_S5_`) and MADT. They give an ACPI kernel a way to power off (SLP_TYP=S5 with
//! SLP_EN in the PM1a control register) and reset (the reset register), and describe
//! the CPUs and the IOAPIC as the MP table does.
//!
//! The platform is a full (not hardware-reduced) ACPI one on purpose: Linux drops the
//! legacy PIC and the ISA IRQ identity mapping on hardware-reduced platforms, and then
//! the serial port's IRQ 4 and the `virtio_mmio.device=...:IRQ` command-line devices
//! would need ACPI device descriptions instead. With fixed hardware, IRQ routing stays
//! what the MP table says, whether or not the guest kernel has ACPI.

use super::layout::{
    ACPI_PM_PORT_BASE, ACPI_RESET_VALUE, ACPI_SCI_IRQ, ACPI_START, APIC_ADDR, CMOS_IRQ,
    CMOS_PORT_BASE, CMOS_PORT_SIZE, GED_IRQ, IOAPIC_ADDR, PVPANIC_PORT, VMGENID_ADDR,
};
use super::mptable::ioapic_id;
use acpi_tables::facs::FACS;
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{EnabledStatus, IoApic, ProcessorLocalApic};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::{aml, Aml};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

const OEM_ID: [u8; 6] = *b"MINVMM";
const OEM_TABLE_ID: [u8; 8] = *b"MINIVMM ";
const OEM_REVISION: u32 = 1;
/// Offset of the PM1a event block (status, then enable) from [`ACPI_PM_PORT_BASE`].
pub const PM1_EVT_OFFSET: u64 = 0;
/// Bytes in the PM1a event block.
pub const PM1_EVT_LEN: u8 = 4;
/// Offset of the PM1a control block.
pub const PM1_CNT_OFFSET: u64 = 4;
/// Bytes in the PM1a control block.
pub const PM1_CNT_LEN: u8 = 2;
/// Offset of the reset register.
pub const RESET_OFFSET: u64 = 6;
/// The S5 (soft off) sleep type the DSDT's `\_S5_` package announces.
pub const S5_SLEEP_TYPE: u8 = 5;
/// IA-PC boot architecture flag: no VGA. The 8042 flag stays clear, so Linux does not
/// probe a keyboard controller (the reset line at port 0x64 still works).
const IAPC_BOOT_ARCH_NO_VGA: u16 = 1 << 2;
const MADT_PCAT_COMPAT: u32 = 1;
const TABLE_ALIGN: u64 = 64;

/// Errors writing the ACPI tables.
#[derive(Debug, thiserror::Error)]
pub enum AcpiError {
    /// The tables do not fit below 1 MiB.
    #[error("ACPI tables of {0} bytes do not fit below 1 MiB")]
    TooLarge(u64),
    /// Guest memory could not hold a table.
    #[error("cannot write ACPI table {0} to guest memory")]
    Write(&'static str),
}

fn bytes(table: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    table.to_aml_bytes(&mut v);
    v
}

fn io_register(port: u64, bytes: u8) -> GAS {
    let access = if bytes == 1 {
        AccessSize::ByteAccess
    } else {
        AccessSize::WordAccess
    };
    GAS::new(AddressSpace::SystemIo, bytes * 8, 0, access, port)
}

/// The VM generation ID device (`VM_GEN_COUNTER`, as QEMU and Hyper-V define it; Linux's
/// vmgenid driver): `ADDR` gives the ID's guest-physical address as two 32-bit halves.
/// And the generic event device (`ACPI0013`) whose interrupt [`GED_IRQ`] makes the
/// guest run `_EVT`, which notifies the ID device (0x80): the guest then reads the new
/// ID and, seeing it changed, reseeds its random number generator.
fn vmgenid_and_ged() -> Vec<u8> {
    let mut out = Vec::new();
    let hid: aml::AmlString = "MVMG0001".into();
    let cid: aml::AmlString = "VM_GEN_COUNTER".into();
    let low = (VMGENID_ADDR & 0xffff_ffff) as u32;
    let high = (VMGENID_ADDR >> 32) as u32;
    let addr = aml::Package::new(vec![&low, &high]);
    let gen_hid = aml::Name::new("_HID".into(), &hid);
    let gen_cid = aml::Name::new("_CID".into(), &cid);
    let gen_ddn = aml::Name::new("_DDN".into(), &cid);
    let gen_addr = aml::Name::new("ADDR".into(), &addr);
    let vmgenid = aml::Device::new(
        "_SB_.VGEN".into(),
        vec![&gen_hid, &gen_cid, &gen_ddn, &gen_addr],
    );
    vmgenid.to_aml_bytes(&mut out);

    let ged_hid: aml::AmlString = "ACPI0013".into();
    let irq = aml::Interrupt::new(true, true, false, false, GED_IRQ);
    let resources = aml::ResourceTemplate::new(vec![&irq]);
    let target = aml::Path::new("\\_SB_.VGEN");
    let notify = aml::Notify::new(&target, &0x80u8);
    let matches = aml::Equal::new(&aml::Arg(0), &GED_IRQ);
    let on_irq = aml::If::new(&matches, vec![&notify]);
    let evt = aml::Method::new("_EVT".into(), 1, true, vec![&on_irq]);
    let name_hid = aml::Name::new("_HID".into(), &ged_hid);
    let name_uid = aml::Name::new("_UID".into(), &aml::ZERO);
    let crs = aml::Name::new("_CRS".into(), &resources);
    let ged = aml::Device::new("_SB_.GED_".into(), vec![&name_hid, &name_uid, &crs, &evt]);
    ged.to_aml_bytes(&mut out);
    out
}

/// The DSDT: the `\_S5_` package, so the guest knows how to enter soft-off, the
/// pvpanic device (`QEMU0001` at [`PVPANIC_PORT`]), so it can report a kernel panic,
/// the CMOS clock (`PNP0B00`: its two ports and IRQ 8, edge-triggered, active high),
/// which the kernel's rtc_cmos driver binds through ACPI as on a PC, and the VM
/// generation ID with the event device that announces a new one.
pub fn dsdt() -> Vec<u8> {
    let mut dsdt = Sdt::new(*b"DSDT", 36, 6, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    let s5 = aml::Name::new(
        "_S5_".into(),
        &aml::Package::new(vec![&S5_SLEEP_TYPE, &0u8, &0u8, &0u8]),
    );
    dsdt.append_slice(&bytes(&s5));
    let hid: aml::AmlString = "QEMU0001".into();
    let port = PVPANIC_PORT as u16;
    let io = aml::IO::new(port, port, 1, 1);
    let resources = aml::ResourceTemplate::new(vec![&io]);
    let hid = aml::Name::new("_HID".into(), &hid);
    let crs = aml::Name::new("_CRS".into(), &resources);
    let pvpanic = aml::Device::new("_SB_.PEVT".into(), vec![&hid, &crs]);
    dsdt.append_slice(&bytes(&pvpanic));
    let rtc_hid = aml::EISAName::new("PNP0B00");
    let rtc_port = CMOS_PORT_BASE as u16;
    let rtc_io = aml::IO::new(rtc_port, rtc_port, 1, CMOS_PORT_SIZE as u8);
    let rtc_irq = aml::Interrupt::new(true, true, false, false, CMOS_IRQ);
    let rtc_resources = aml::ResourceTemplate::new(vec![&rtc_io, &rtc_irq]);
    let rtc_hid = aml::Name::new("_HID".into(), &rtc_hid);
    let rtc_crs = aml::Name::new("_CRS".into(), &rtc_resources);
    let rtc = aml::Device::new("_SB_.RTC_".into(), vec![&rtc_hid, &rtc_crs]);
    dsdt.append_slice(&bytes(&rtc));
    dsdt.append_slice(&vmgenid_and_ged());
    dsdt.as_slice().to_vec()
}

/// The FADT: fixed hardware at [`ACPI_PM_PORT_BASE`], no SMI command port (the
/// platform is always in ACPI mode), no PM timer, no GPEs, a fixed-feature power
/// button (PWRBTN_STS/EN in PM1a; the VMM presses it for a graceful stop) and no
/// sleep button.
pub fn fadt(facs_addr: u64, dsdt_addr: u64) -> Vec<u8> {
    let pm1_evt = ACPI_PM_PORT_BASE + PM1_EVT_OFFSET;
    let pm1_cnt = ACPI_PM_PORT_BASE + PM1_CNT_OFFSET;
    let mut f = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .firmware_ctrl_64(facs_addr)
        .dsdt_64(dsdt_addr)
        .flag(Flags::Wbinvd)
        .flag(Flags::ProcC1)
        .flag(Flags::SlpButton)
        .flag(Flags::ResetRegSup);
    f.sci_int = (ACPI_SCI_IRQ as u16).into();
    f.pm1a_evt_blk = (pm1_evt as u32).into();
    f.pm1_evt_len = PM1_EVT_LEN;
    f.x_pm1a_evt_blk = GAS::new(
        AddressSpace::SystemIo,
        PM1_EVT_LEN * 8,
        0,
        AccessSize::WordAccess,
        pm1_evt,
    );
    f.pm1a_cnt_blk = (pm1_cnt as u32).into();
    f.pm1_cnt_len = PM1_CNT_LEN;
    f.x_pm1a_cnt_blk = io_register(pm1_cnt, PM1_CNT_LEN);
    // A CMOS clock exists (the "no CMOS RTC" flag stays clear); its century byte:
    f.iapc_boot_arch = IAPC_BOOT_ARCH_NO_VGA.into();
    f.century = crate::x86_64::layout::CMOS_CENTURY;
    f.reset_reg = io_register(ACPI_PM_PORT_BASE + RESET_OFFSET, 1);
    f.reset_value = ACPI_RESET_VALUE;
    bytes(&f.finalize())
}

/// The MADT: one enabled local APIC per vCPU (ID = index), the IOAPIC at GSI 0, and
/// the PC-AT flag (the in-kernel 8259 pair exists).
pub fn madt(num_cpus: usize) -> Vec<u8> {
    let mut madt = Sdt::new(*b"APIC", 44, 5, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    madt.write_u32(36, APIC_ADDR as u32);
    madt.write_u32(40, MADT_PCAT_COMPAT);
    for cpu in 0..num_cpus {
        let id = cpu as u8;
        madt.append_slice(&bytes(&ProcessorLocalApic::new(
            id,
            id,
            EnabledStatus::Enabled,
        )));
    }
    madt.append_slice(&bytes(&IoApic::new(
        ioapic_id(num_cpus),
        IOAPIC_ADDR as u32,
        0,
    )));
    madt.as_slice().to_vec()
}

/// Writes all tables from [`ACPI_START`]; returns the RSDP's address.
pub fn setup_acpi<M: GuestMemoryBackend>(mem: &M, num_cpus: usize) -> Result<u64, AcpiError> {
    let rsdp_addr = ACPI_START;
    let mut next = ACPI_START + (Rsdp::len() as u64).next_multiple_of(TABLE_ALIGN);
    let mut place = |name: &'static str, table: &[u8]| -> Result<u64, AcpiError> {
        let addr = next;
        next = (addr + table.len() as u64).next_multiple_of(TABLE_ALIGN);
        if next > VMGENID_ADDR {
            return Err(AcpiError::TooLarge(next - ACPI_START));
        }
        mem.write_slice(table, GuestAddress(addr))
            .map_err(|_| AcpiError::Write(name))?;
        Ok(addr)
    };
    let facs_addr = place("FACS", &bytes(&FACS::new()))?;
    let dsdt_addr = place("DSDT", &dsdt())?;
    let fadt_addr = place("FACP", &fadt(facs_addr, dsdt_addr))?;
    let madt_addr = place("APIC", &madt(num_cpus))?;
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    xsdt.add_entry(fadt_addr);
    xsdt.add_entry(madt_addr);
    let xsdt_addr = place("XSDT", &bytes(&xsdt))?;
    mem.write_slice(
        &bytes(&Rsdp::new(OEM_ID, xsdt_addr)),
        GuestAddress(rsdp_addr),
    )
    .map_err(|_| AcpiError::Write("RSDP"))?;
    Ok(rsdp_addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    fn u16_at(b: &[u8], o: usize) -> u16 {
        u16::from_le_bytes([b[o], b[o + 1]])
    }

    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
    }

    fn u64_at(b: &[u8], o: usize) -> u64 {
        u64::from(u32_at(b, o)) | (u64::from(u32_at(b, o + 4)) << 32)
    }

    fn table(mem: &GuestMemoryMmap, addr: u64) -> Vec<u8> {
        let mut head = [0u8; 8];
        mem.read_slice(&mut head, GuestAddress(addr)).unwrap();
        let mut t = vec![0u8; u32_at(&head, 4) as usize];
        mem.read_slice(&mut t, GuestAddress(addr)).unwrap();
        assert_eq!(
            sum(&t),
            0,
            "checksum of {}",
            String::from_utf8_lossy(&t[..4])
        );
        t
    }

    #[test]
    fn tables_chain_from_the_rsdp_with_valid_checksums() {
        let mem: GuestMemoryMmap =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
        let rsdp_addr = setup_acpi(&mem, 2).unwrap();
        let mut rsdp = [0u8; 36];
        mem.read_slice(&mut rsdp, GuestAddress(rsdp_addr)).unwrap();
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert_eq!(sum(&rsdp[..20]), 0);
        assert_eq!(sum(&rsdp), 0);
        let xsdt = table(&mem, u64_at(&rsdp, 24));
        assert_eq!(&xsdt[..4], b"XSDT");
        let entries: Vec<u64> = (36..xsdt.len())
            .step_by(8)
            .map(|o| u64_at(&xsdt, o))
            .collect();
        assert_eq!(entries.len(), 2);
        let fadt = table(&mem, entries[0]);
        assert_eq!(&fadt[..4], b"FACP");
        // Full ACPI (not hardware reduced), SCI on GSI 9, no SMI command port.
        assert_eq!(u32_at(&fadt, 112) & (1 << 20), 0);
        // PWR_BUTTON clear: the power button is the fixed-feature one; SLP_BUTTON set.
        assert_eq!(u32_at(&fadt, 112) & (1 << 4), 0);
        assert_ne!(u32_at(&fadt, 112) & (1 << 5), 0);
        assert_eq!(u16_at(&fadt, 46), ACPI_SCI_IRQ as u16);
        assert_eq!(u32_at(&fadt, 48), 0);
        // PM1a event and control blocks, and their lengths.
        assert_eq!(
            u64::from(u32_at(&fadt, 56)),
            ACPI_PM_PORT_BASE + PM1_EVT_OFFSET
        );
        assert_eq!(
            u64::from(u32_at(&fadt, 64)),
            ACPI_PM_PORT_BASE + PM1_CNT_OFFSET
        );
        assert_eq!((fadt[88], fadt[89]), (PM1_EVT_LEN, PM1_CNT_LEN));
        // Reset register (GAS at 116, address at 120) and value.
        assert_eq!(u64_at(&fadt, 120), ACPI_PM_PORT_BASE + RESET_OFFSET);
        assert_eq!(fadt[128], ACPI_RESET_VALUE);
        let facs_addr = u64_at(&fadt, 132);
        let mut facs = [0u8; 4];
        mem.read_slice(&mut facs, GuestAddress(facs_addr)).unwrap();
        assert_eq!(&facs, b"FACS");
        assert_eq!(facs_addr % 64, 0);
        let dsdt = table(&mem, u64_at(&fadt, 140));
        assert_eq!(&dsdt[..4], b"DSDT");
        assert!(dsdt.windows(4).any(|w| w == b"_S5_"));
        let madt = table(&mem, entries[1]);
        assert_eq!(&madt[..4], b"APIC");
        assert_eq!(u32_at(&madt, 36) as u64, APIC_ADDR);
        assert_eq!(u32_at(&madt, 40), MADT_PCAT_COMPAT);
    }

    #[test]
    fn madt_lists_every_cpu_and_the_ioapic() {
        let madt = madt(3);
        let mut off = 44;
        let mut apic_ids = Vec::new();
        while off < madt.len() {
            match madt[off] {
                0 => apic_ids.push(madt[off + 3]),
                1 => {
                    assert_eq!(madt[off + 2], ioapic_id(3));
                    assert_eq!(u32_at(&madt, off + 4) as u64, IOAPIC_ADDR);
                }
                t => panic!("unexpected MADT entry {t}"),
            }
            off += madt[off + 1] as usize;
        }
        assert_eq!(apic_ids, vec![0, 1, 2]);
    }

    #[test]
    fn dsdt_describes_the_pvpanic_port() {
        let d = dsdt();
        assert!(d.windows(4).any(|w| w == b"PEVT"));
        assert!(d.windows(8).any(|w| w == b"QEMU0001"));
        // IO descriptor: tag 0x47, decode16, min and max = 0x505, alignment 1, length 1.
        assert!(d
            .windows(8)
            .any(|w| w == [0x47, 0x01, 0x05, 0x05, 0x05, 0x05, 0x01, 0x01]));
    }

    #[test]
    fn dsdt_describes_the_cmos_clock() {
        let d = dsdt();
        assert!(d.windows(4).any(|w| w == b"RTC_"));
        // PNP0B00 as a compressed EISA ID (DWordConst 0x000bd041).
        assert!(d.windows(5).any(|w| w == [0x0c, 0x41, 0xd0, 0x0b, 0x00]));
        // IO descriptor: decode16, min and max = 0x70, alignment 1, length 2.
        assert!(d
            .windows(8)
            .any(|w| w == [0x47, 0x01, 0x70, 0x00, 0x70, 0x00, 0x01, 0x02]));
        // Extended IRQ descriptor: consumer, edge, active high, exclusive, one IRQ: 8.
        assert!(d
            .windows(9)
            .any(|w| w == [0x89, 0x06, 0x00, 0x03, 0x01, 0x08, 0x00, 0x00, 0x00]));
    }

    #[test]
    fn dsdt_describes_the_vm_generation_id_and_its_event() {
        let d = dsdt();
        for name in [
            &b"VGEN"[..],
            b"VM_GEN_COUNTER",
            b"ADDR",
            b"GED_",
            b"ACPI0013",
            b"_EVT",
        ] {
            assert!(d.windows(name.len()).any(|w| w == name), "{name:?}");
        }
        // ADDR: Package(2) { DWord low, DWord high } of VMGENID_ADDR.
        let at = d.windows(4).position(|w| w == b"ADDR").unwrap();
        assert_eq!(d[at + 4], 0x12, "a package");
        let low = (VMGENID_ADDR as u32).to_le_bytes();
        assert!(d[at..at + 20]
            .windows(5)
            .any(|w| w[0] == 0x0c && w[1..] == low));
        // The GED's interrupt: consumer, edge, active high, exclusive, one IRQ: 5.
        assert!(d.windows(9).any(|w| w
            == [
                0x89,
                0x06,
                0x00,
                0x03,
                0x01,
                GED_IRQ as u8,
                0x00,
                0x00,
                0x00
            ]));
        // _EVT notifies \_SB_.VGEN with 0x80 (NotifyOp, then the path, then 0x80).
        assert!(d.windows(2).any(|w| w == [0x86, 0x5c]));
    }

    #[test]
    fn s5_package_encodes_sleep_type_5() {
        let d = dsdt();
        let at = d.windows(4).position(|w| w == b"_S5_").unwrap();
        // NameOp _S5_ PackageOp PkgLength NumElements BytePrefix 5 ...
        assert_eq!(d[at + 4], 0x12);
        assert_eq!(&d[at + 7..at + 9], &[0x0a, S5_SLEEP_TYPE]);
    }
}
