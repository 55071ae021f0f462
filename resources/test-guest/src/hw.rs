//! Port I/O, MMIO and CPU instructions the test guest uses.

use core::arch::asm;

const COM1: u16 = 0x3f8;
const LSR: u16 = COM1 + 5;
const LSR_DATA_READY: u8 = 0x01;
const LSR_THR_EMPTY: u8 = 0x20;
const I8042_COMMAND: u16 = 0x64;
const I8042_RESET: u8 = 0xfe;
const ACPI_PM1A_STS: u16 = 0x600;
const ACPI_PM1A_EN: u16 = 0x602;
const ACPI_PM1A_CNT: u16 = 0x604;
const PWRBTN: u16 = 1 << 8;
const BOOT_TIMER: usize = 0xd000_0000;
const BOOT_TIMER_MAGIC: u8 = 123;
/// An address in the MMIO gap with no device behind it.
const UNBACKED_MMIO: usize = 0xe000_0000;

pub fn outb(port: u16, value: u8) {
    // SAFETY: port I/O has no memory effects in this guest.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack)) };
}

pub fn outw(port: u16, value: u16) {
    // SAFETY: port I/O has no memory effects in this guest.
    unsafe { asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack)) };
}

pub fn inw(port: u16) -> u16 {
    let v: u16;
    // SAFETY: port I/O has no memory effects in this guest.
    unsafe { asm!("in ax, dx", in("dx") port, out("ax") v, options(nomem, nostack)) };
    v
}

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

pub fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: as above.
    unsafe { asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack)) };
    v
}

/// The 8250 UART at COM1, polled.
pub struct Serial;

impl Serial {
    pub fn read_byte(&mut self) -> u8 {
        while inb(LSR) & LSR_DATA_READY == 0 {}
        inb(COM1)
    }
}

impl core::fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            while inb(LSR) & LSR_THR_EMPTY == 0 {}
            outb(COM1, b);
        }
        Ok(())
    }
}

/// CPUID leaf `leaf`, subleaf 0: (eax, ebx, ecx, edx).
pub fn cpuid(leaf: u32) -> (u32, u32, u32, u32) {
    let r = core::arch::x86_64::__cpuid(leaf);
    (r.eax, r.ebx, r.ecx, r.edx)
}

pub fn signal_boot_timer() {
    // SAFETY: the boot timer is an MMIO byte the VMM emulates.
    unsafe { core::ptr::write_volatile(BOOT_TIMER as *mut u8, BOOT_TIMER_MAGIC) };
}

/// ACPI PM1a control block: SLP_TYP=5 (S5, soft off), then with SLP_EN, as ACPICA does.
pub fn acpi_poweroff() -> ! {
    outw(ACPI_PM1A_CNT, 5 << 10);
    outw(ACPI_PM1A_CNT, (5 << 10) | (1 << 13));
    halt_forever()
}

/// Enables the ACPI fixed power button event (PM1a enable).
pub fn enable_power_button() {
    outw(ACPI_PM1A_EN, PWRBTN);
}

/// True (and acknowledged) if the power button was pressed.
pub fn power_button_pressed() -> bool {
    if inw(ACPI_PM1A_STS) & PWRBTN == 0 {
        return false;
    }
    outw(ACPI_PM1A_STS, PWRBTN);
    true
}

pub fn reset() -> ! {
    outb(I8042_COMMAND, I8042_RESET);
    halt_forever()
}

pub fn halt_forever() -> ! {
    loop {
        // SAFETY: stops this CPU with interrupts off; only the VMM can end it.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// An empty IDT makes any exception a triple fault.
pub fn triple_fault() -> ! {
    let idt = [0u16; 5];
    // SAFETY: deliberately loads an empty IDT and raises #UD: the CPU shuts down.
    unsafe { asm!("lidt [{}]", "ud2", in(reg) idt.as_ptr(), options(noreturn)) };
}

/// POPCNT with a memory operand in the MMIO gap: KVM must emulate the access and its
/// instruction emulator has no POPCNT, so KVM_RUN returns an emulation failure.
pub fn unemulatable_mmio_read() -> ! {
    let v: u64;
    // SAFETY: reads an unbacked MMIO address; the VMM stops the guest here.
    unsafe {
        asm!("popcnt {}, qword ptr [{}]", out(reg) v, in(reg) UNBACKED_MMIO, options(nostack))
    };
    let _ = v;
    halt_forever()
}
