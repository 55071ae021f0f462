//! The x86_64 guest-physical memory map and IRQ map: every fixed address minivmm uses.
//!
//! ```text
//! 0x0000_0500  GDT (4 entries)             0x0000_0520  IDT (empty)
//! 0x0000_7000  zero page (boot_params)     0x0000_8ff0  boot stack top
//! 0x0000_9000  PML4   0x0000_a000 PDPT     0x0000_b000  4 PDs (4 GiB identity map, 2 MiB pages)
//! 0x0002_0000  kernel command line (2 KiB)
//! 0x0009_fc00  MP table (EBDA; reserved up to 1 MiB)
//! 0x000e_0000  ACPI tables: RSDP, then FACS, DSDT, FADT, MADT, XSDT
//! 0x0010_0000  kernel (bzImage protected-mode code; ELF kernels load at their own paddr)
//!   ...        RAM, initrd at the top of low RAM
//! 0xd000_0000  32-bit MMIO gap starts: boot-timer device (4 KiB)
//! 0xd000_1000  virtio-mmio device slots, 4 KiB each
//! 0xfec0_0000  IOAPIC     0xfee0_0000  LAPIC    0xfffb_d000  KVM TSS (3 pages)
//! 0x1_0000_0000  RAM above 4 GiB, for guests larger than the MMIO gap start
//! ```

/// Start of the boot GDT.
pub const BOOT_GDT_START: u64 = 0x500;
/// Number of boot GDT entries (null, code, data, TSS).
pub const BOOT_GDT_MAX: usize = 4;
/// Start of the (empty) boot IDT.
pub const BOOT_IDT_START: u64 = 0x520;
/// The zero page (`struct boot_params`) handed to the kernel in RSI.
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Initial stack pointer of the boot vCPU.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Page-map level 4 table of the boot identity mapping.
pub const PML4_START: u64 = 0x9000;
/// Page directory pointer table of the boot identity mapping.
pub const PDPTE_START: u64 = 0xa000;
/// First of the four page directories of the boot identity mapping (4 x 512 x 2 MiB = 4 GiB).
pub const PDE_START: u64 = 0xb000;
/// Where the kernel command line is written.
pub const CMDLINE_START: u64 = 0x20000;
/// Largest command line, terminating NUL included (Linux x86 COMMAND_LINE_SIZE).
pub const CMDLINE_MAX_SIZE: usize = 2048;
/// Start of the extended BIOS data area, where the MP table lives.
pub const EBDA_START: u64 = 0x9fc00;
/// Start of the MP floating pointer and configuration table.
pub const MPTABLE_START: u64 = EBDA_START;
/// Where the ACPI tables start (the RSDP; Linux also finds it through the zero page).
pub const ACPI_START: u64 = 0xe_0000;
/// First address above the legacy region; low RAM resumes here.
pub const HIMEM_START: u64 = 0x10_0000;
/// The VM generation ID (16 bytes, ACPI `VM_GEN_COUNTER`): the last page below
/// [`HIMEM_START`], after the ACPI tables, in memory the e820 map does not give as RAM.
pub const VMGENID_ADDR: u64 = HIMEM_START - 0x1000;
/// Bytes of the VM generation ID.
pub const VMGENID_SIZE: usize = 16;
/// Start of the 32-bit MMIO gap: no RAM between here and 4 GiB.
pub const MMIO_GAP_START: u64 = 0xd000_0000;
/// End of the 32-bit MMIO gap (first address above 4 GiB).
pub const MMIO_GAP_END: u64 = 1 << 32;
/// The boot-timer device: a guest writes [`BOOT_TIMER_MAGIC`] here when it reaches user space.
pub const BOOT_TIMER_ADDR: u64 = MMIO_GAP_START;
/// Size of the boot-timer device's MMIO window.
pub const BOOT_TIMER_SIZE: u64 = 0x1000;
/// The byte a guest writes to the boot timer (offset 0) to mark "user space reached".
pub const BOOT_TIMER_MAGIC: u8 = 123;
/// First virtio-mmio device slot.
pub const VIRTIO_MMIO_START: u64 = MMIO_GAP_START + 0x1000;
/// Size of one virtio-mmio device slot.
pub const VIRTIO_MMIO_SLOT_SIZE: u64 = 0x1000;
/// Guest-physical address of the IOAPIC.
pub const IOAPIC_ADDR: u64 = 0xfec0_0000;
/// Guest-physical address of every local APIC.
pub const APIC_ADDR: u64 = 0xfee0_0000;
/// Three pages KVM needs for its real-mode TSS on Intel hosts.
pub const KVM_TSS_ADDRESS: u64 = 0xfffb_d000;

/// I/O port base of the 8250 serial console (COM1).
pub const SERIAL_PORT_BASE: u64 = 0x3f8;
/// Number of I/O ports of the serial console.
pub const SERIAL_PORT_SIZE: u64 = 8;
/// GSI of the serial console.
pub const SERIAL_IRQ: u32 = 4;
/// I/O port base of the CMOS real-time clock (index port 0x70, data port 0x71).
pub const CMOS_PORT_BASE: u64 = 0x70;
/// Number of I/O ports of the CMOS clock.
pub const CMOS_PORT_SIZE: u64 = 2;
/// CMOS index of the century byte, named in the FADT.
pub const CMOS_CENTURY: u8 = 0x32;
/// GSI of the CMOS clock (ISA IRQ 8, identity-mapped in the MP table; the clock
/// raises no interrupt yet).
pub const CMOS_IRQ: u32 = 8;
/// GSI of the ACPI generic event device (`ACPI0013`), raised after a restore so the
/// guest reads its new VM generation ID (an ISA IRQ: edge, active high).
pub const GED_IRQ: u32 = 5;
/// I/O port of the pvpanic device (QEMU's "QEMU0001" ACPI device; the guest writes
/// bit 0 when its kernel panics).
pub const PVPANIC_PORT: u64 = 0x505;
/// I/O port base of the i8042 controller stub (data port 0x60 .. command port 0x64).
pub const I8042_PORT_BASE: u64 = 0x60;
/// Number of I/O ports of the i8042 stub.
pub const I8042_PORT_SIZE: u64 = 5;
/// I/O port base of the ACPI fixed hardware the FADT names: PM1a event block (status
/// +0, enable +2), PM1a control block (+4), reset register (+6).
pub const ACPI_PM_PORT_BASE: u64 = 0x600;
/// Number of I/O ports of the ACPI fixed hardware.
pub const ACPI_PM_PORT_SIZE: u64 = 8;
/// Value the guest writes to the ACPI reset register to reset.
pub const ACPI_RESET_VALUE: u8 = 0x1;
/// GSI of the ACPI system control interrupt (never raised; reserved so no device gets
/// a pin Linux configures level-triggered, active-low).
pub const ACPI_SCI_IRQ: u32 = 9;
/// First GSI handed to virtio-mmio devices (above the SCI).
pub const VIRTIO_IRQ_BASE: u32 = 10;
/// Last GSI handed to virtio-mmio devices (the IOAPIC has 24 pins).
pub const VIRTIO_IRQ_MAX: u32 = 23;
/// Number of IOAPIC pins described in the MP table.
pub const IOAPIC_PINS: u8 = 24;

/// Most vCPUs the MP table and the xAPIC ID space allow.
pub const MAX_VCPUS: usize = 254;

// The map's invariants, checked at compile time.
const _: () =
    assert!(BOOT_STACK_POINTER > ZERO_PAGE_START + 0x1000 && BOOT_STACK_POINTER < PML4_START);
const _: () = assert!(BOOT_TIMER_ADDR + BOOT_TIMER_SIZE <= VIRTIO_MMIO_START);
const _: () = assert!(VIRTIO_MMIO_START >= MMIO_GAP_START && IOAPIC_ADDR < MMIO_GAP_END);
const _: () = assert!(VIRTIO_IRQ_BASE > SERIAL_IRQ && VIRTIO_IRQ_BASE > ACPI_SCI_IRQ);
const _: () = assert!(GED_IRQ < VIRTIO_IRQ_BASE && GED_IRQ != SERIAL_IRQ && GED_IRQ != CMOS_IRQ);
const _: () =
    assert!(ACPI_START < VMGENID_ADDR && VMGENID_ADDR + VMGENID_SIZE as u64 <= HIMEM_START);
const _: () = assert!(VIRTIO_IRQ_MAX < IOAPIC_PINS as u32);
const _: () = assert!(EBDA_START < ACPI_START && ACPI_START < HIMEM_START);
