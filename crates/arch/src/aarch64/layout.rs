//! Every guest-physical address and interrupt number of an aarch64 minivmm guest.
//!
//! ```text
//! 0x0800_0000  GIC distributor (64 KiB)
//! 0x0801_0000  GICv2 CPU interface (8 KiB, GICv2 fallback only)
//! 0x080a_0000  GICv3 redistributors, 128 KiB per vCPU
//! 0x0900_0000  serial, ns16550a (4 KiB), SPI 1
//! 0x0900_1000  boot timer (one byte; the guest writes 123)
//! 0x0a00_0000  virtio-mmio slots, 4 KiB each, SPI 2 + n
//! 0x8000_0000  RAM (DRAM_START): kernel at its text offset, initrd, FDT at the end
//! ```

/// Start of guest RAM.
pub const DRAM_START: u64 = 0x8000_0000;
/// Largest guest RAM: up to the end of a 40-bit IPA space.
pub const DRAM_MAX: u64 = (1 << 40) - DRAM_START;
/// GIC distributor.
pub const GIC_DIST_ADDR: u64 = 0x0800_0000;
/// Size of the distributor.
pub const GIC_DIST_SIZE: u64 = 0x1_0000;
/// GICv2 CPU interface (the GICv2 fallback).
pub const GIC_CPU_ADDR: u64 = 0x0801_0000;
/// Size of the GICv2 CPU interface.
pub const GIC_CPU_SIZE: u64 = 0x2000;
/// First GICv3 redistributor.
pub const GIC_REDIST_ADDR: u64 = 0x080a_0000;
/// One redistributor (RD and SGI frames).
pub const GIC_REDIST_SIZE: u64 = 0x2_0000;
/// Serial port (ns16550a, byte registers).
pub const SERIAL_ADDR: u64 = 0x0900_0000;
/// Size of the serial window.
pub const SERIAL_SIZE: u64 = 0x1000;
/// The serial port's SPI (interrupt ID 32 + this; also its KVM_IRQFD GSI).
pub const SERIAL_IRQ: u32 = 1;
/// Boot-timer byte (same protocol as on x86_64).
pub const BOOT_TIMER_ADDR: u64 = 0x0900_1000;
/// Size of the boot-timer window.
pub const BOOT_TIMER_SIZE: u64 = 0x1000;
/// Value the guest writes to mark "user space reached".
pub const BOOT_TIMER_MAGIC: u8 = 123;
/// First virtio-mmio slot.
pub const VIRTIO_MMIO_START: u64 = 0x0a00_0000;
/// Size of one virtio-mmio slot.
pub const VIRTIO_MMIO_SLOT_SIZE: u64 = 0x1000;
/// SPI of virtio-mmio slot 0; slot n gets `VIRTIO_IRQ_BASE + n`.
pub const VIRTIO_IRQ_BASE: u32 = 2;
/// Last SPI for virtio-mmio devices.
pub const VIRTIO_IRQ_MAX: u32 = 15;
/// Interrupts the GIC implements: 32 private + 96 shared (a multiple of 32).
pub const GIC_NR_IRQS: u32 = 128;
/// Most vCPUs: the redistributors must end below the serial port.
pub const MAX_VCPUS: usize = ((SERIAL_ADDR - GIC_REDIST_ADDR) / GIC_REDIST_SIZE) as usize;
/// Longest kernel command line (the FDT carries it).
pub const CMDLINE_MAX_SIZE: usize = 2048;
/// Room reserved for the FDT at the end of RAM.
pub const FDT_MAX_SIZE: u64 = 0x20_0000;

const _: () = assert!(VIRTIO_IRQ_BASE > SERIAL_IRQ);
const _: () = assert!(32 + VIRTIO_IRQ_MAX < GIC_NR_IRQS);
const _: () = assert!(GIC_CPU_ADDR >= GIC_DIST_ADDR + GIC_DIST_SIZE);
const _: () = assert!(GIC_REDIST_ADDR >= GIC_CPU_ADDR + GIC_CPU_SIZE);

/// The MPIDR KVM gives vCPU `index` (affinity levels 0 and 1, 16 CPUs per cluster).
pub const fn mpidr(index: u64) -> u64 {
    (index & 0xf) | (((index >> 4) & 0xff) << 8)
}
