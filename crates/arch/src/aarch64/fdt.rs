//! The flattened device tree an aarch64 Linux kernel boots from, built with vm-fdt:
//! memory, CPUs (PSCI), the command line and initrd, the GIC, the architected timer,
//! PSCI 0.2, the ns16550a serial port and every virtio-mmio device with its SPI.

use super::layout::{
    mpidr, GIC_CPU_ADDR, GIC_CPU_SIZE, GIC_DIST_ADDR, GIC_DIST_SIZE, GIC_REDIST_ADDR,
    GIC_REDIST_SIZE, SERIAL_ADDR, SERIAL_IRQ, SERIAL_SIZE,
};
use vm_fdt::FdtWriter;

const GIC_PHANDLE: u32 = 1;
const CLOCK_PHANDLE: u32 = 2;
const GIC_FDT_IRQ_TYPE_SPI: u32 = 0;
const GIC_FDT_IRQ_TYPE_PPI: u32 = 1;
const IRQ_TYPE_EDGE_RISING: u32 = 1;
const IRQ_TYPE_LEVEL_HIGH: u32 = 4;
/// The architected timer's PPIs: secure, non-secure, virtual, hypervisor.
const TIMER_PPIS: [u32; 4] = [13, 14, 11, 10];
/// The serial port's input clock (the 8250 driver derives baud rates from it).
const SERIAL_CLOCK_HZ: u32 = 24_000_000;

/// Which GIC the VM has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicVersion {
    /// GICv2 (distributor and CPU interface).
    V2,
    /// GICv3 (distributor and one redistributor per vCPU).
    V3,
}

/// A virtio-mmio device as the device tree lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioDevice {
    /// Base address.
    pub addr: u64,
    /// Window size.
    pub size: u64,
    /// Its SPI (interrupt ID 32 + spi).
    pub spi: u32,
}

/// What goes into the device tree.
pub struct FdtConfig<'a> {
    /// Number of vCPUs.
    pub cpus: u32,
    /// RAM regions (start, size).
    pub memory: &'a [(u64, u64)],
    /// Kernel command line.
    pub cmdline: &'a str,
    /// Initrd (start, size).
    pub initrd: Option<(u64, u64)>,
    /// The interrupt controller.
    pub gic: GicVersion,
    /// virtio-mmio devices.
    pub virtio: &'a [MmioDevice],
}

/// Errors building the device tree.
#[derive(Debug, thiserror::Error)]
pub enum FdtError {
    /// vm-fdt refused a node or property.
    #[error("device tree: {0}")]
    Writer(#[from] vm_fdt::Error),
}

fn reg(fdt: &mut FdtWriter, pairs: &[(u64, u64)]) -> Result<(), vm_fdt::Error> {
    let cells: Vec<u64> = pairs.iter().flat_map(|(a, s)| [*a, *s]).collect();
    fdt.property_array_u64("reg", &cells)
}

/// Builds the blob.
pub fn create_fdt(cfg: &FdtConfig) -> Result<Vec<u8>, FdtError> {
    let mut fdt = FdtWriter::new()?;
    let root = fdt.begin_node("")?;
    fdt.property_string("compatible", "linux,dummy-virt")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_u32("interrupt-parent", GIC_PHANDLE)?;

    let cpus = fdt.begin_node("cpus")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 0)?;
    for i in 0..u64::from(cfg.cpus) {
        let cpu = fdt.begin_node(&format!("cpu@{:x}", mpidr(i)))?;
        fdt.property_string("device_type", "cpu")?;
        fdt.property_string("compatible", "arm,arm-v8")?;
        fdt.property_string("enable-method", "psci")?;
        fdt.property_u64("reg", mpidr(i))?;
        fdt.end_node(cpu)?;
    }
    fdt.end_node(cpus)?;

    for (start, size) in cfg.memory {
        let mem = fdt.begin_node(&format!("memory@{start:x}"))?;
        fdt.property_string("device_type", "memory")?;
        reg(&mut fdt, &[(*start, *size)])?;
        fdt.end_node(mem)?;
    }

    let chosen = fdt.begin_node("chosen")?;
    fdt.property_string("bootargs", cfg.cmdline)?;
    fdt.property_string("stdout-path", &format!("/uart@{SERIAL_ADDR:x}"))?;
    if let Some((start, size)) = cfg.initrd {
        fdt.property_u64("linux,initrd-start", start)?;
        fdt.property_u64("linux,initrd-end", start + size)?;
    }
    fdt.end_node(chosen)?;

    gic(&mut fdt, cfg)?;
    timer(&mut fdt)?;

    let psci = fdt.begin_node("psci")?;
    fdt.property_string("compatible", "arm,psci-0.2")?;
    fdt.property_string("method", "hvc")?;
    fdt.end_node(psci)?;

    let clock = fdt.begin_node("apb-pclk")?;
    fdt.property_string("compatible", "fixed-clock")?;
    fdt.property_u32("#clock-cells", 0)?;
    fdt.property_u32("clock-frequency", SERIAL_CLOCK_HZ)?;
    fdt.property_phandle(CLOCK_PHANDLE)?;
    fdt.end_node(clock)?;

    let uart = fdt.begin_node(&format!("uart@{SERIAL_ADDR:x}"))?;
    fdt.property_string("compatible", "ns16550a")?;
    reg(&mut fdt, &[(SERIAL_ADDR, SERIAL_SIZE)])?;
    fdt.property_u32("clock-frequency", SERIAL_CLOCK_HZ)?;
    fdt.property_u32("clocks", CLOCK_PHANDLE)?;
    fdt.property_array_u32(
        "interrupts",
        &[GIC_FDT_IRQ_TYPE_SPI, SERIAL_IRQ, IRQ_TYPE_EDGE_RISING],
    )?;
    fdt.end_node(uart)?;

    for dev in cfg.virtio {
        let node = fdt.begin_node(&format!("virtio_mmio@{:x}", dev.addr))?;
        fdt.property_string("compatible", "virtio,mmio")?;
        reg(&mut fdt, &[(dev.addr, dev.size)])?;
        fdt.property_array_u32(
            "interrupts",
            &[GIC_FDT_IRQ_TYPE_SPI, dev.spi, IRQ_TYPE_EDGE_RISING],
        )?;
        fdt.property_null("dma-coherent")?;
        fdt.end_node(node)?;
    }

    fdt.end_node(root)?;
    Ok(fdt.finish()?)
}

fn gic(fdt: &mut FdtWriter, cfg: &FdtConfig) -> Result<(), vm_fdt::Error> {
    let node = fdt.begin_node(&format!("intc@{GIC_DIST_ADDR:x}"))?;
    match cfg.gic {
        GicVersion::V3 => {
            fdt.property_string("compatible", "arm,gic-v3")?;
            let redist = GIC_REDIST_SIZE * u64::from(cfg.cpus);
            reg(
                fdt,
                &[(GIC_DIST_ADDR, GIC_DIST_SIZE), (GIC_REDIST_ADDR, redist)],
            )?;
        }
        GicVersion::V2 => {
            fdt.property_string("compatible", "arm,cortex-a15-gic")?;
            reg(
                fdt,
                &[(GIC_DIST_ADDR, GIC_DIST_SIZE), (GIC_CPU_ADDR, GIC_CPU_SIZE)],
            )?;
        }
    }
    fdt.property_u32("#interrupt-cells", 3)?;
    fdt.property_null("interrupt-controller")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_phandle(GIC_PHANDLE)?;
    fdt.end_node(node)
}

fn timer(fdt: &mut FdtWriter) -> Result<(), vm_fdt::Error> {
    let node = fdt.begin_node("timer")?;
    fdt.property_string("compatible", "arm,armv8-timer")?;
    fdt.property_null("always-on")?;
    let cells: Vec<u32> = TIMER_PPIS
        .iter()
        .flat_map(|ppi| [GIC_FDT_IRQ_TYPE_PPI, *ppi, IRQ_TYPE_LEVEL_HIGH])
        .collect();
    fdt.property_array_u32("interrupts", &cells)?;
    fdt.end_node(node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aarch64::layout::DRAM_START;

    fn parse(blob: &[u8]) -> fdt::Fdt<'_> {
        fdt::Fdt::new(blob).expect("a valid device tree")
    }

    fn u32s(bytes: &[u8]) -> Vec<u32> {
        bytes
            .chunks(4)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
            .collect()
    }

    fn u64s(bytes: &[u8]) -> Vec<u64> {
        bytes
            .chunks(8)
            .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
            .collect()
    }

    fn sample(gic: GicVersion) -> Vec<u8> {
        let virtio = [
            MmioDevice {
                addr: 0x0a00_0000,
                size: 0x1000,
                spi: 2,
            },
            MmioDevice {
                addr: 0x0a00_1000,
                size: 0x1000,
                spi: 3,
            },
        ];
        create_fdt(&FdtConfig {
            cpus: 2,
            memory: &[(DRAM_START, 512 << 20)],
            cmdline: "console=ttyS0 panic=1",
            initrd: Some((DRAM_START + 0x100_0000, 0x2000)),
            gic,
            virtio: &virtio,
        })
        .unwrap()
    }

    #[test]
    fn the_blob_parses_back_with_every_node() {
        let blob = sample(GicVersion::V3);
        let t = parse(&blob);
        let root = t.find_node("/").unwrap();
        assert_eq!(
            root.property("compatible").unwrap().as_str(),
            Some("linux,dummy-virt")
        );
        let chosen = t.find_node("/chosen").unwrap();
        assert_eq!(
            chosen.property("bootargs").unwrap().as_str(),
            Some("console=ttyS0 panic=1")
        );
        assert_eq!(
            chosen.property("linux,initrd-start").unwrap().as_usize(),
            Some((DRAM_START + 0x100_0000) as usize)
        );
        assert_eq!(
            chosen.property("linux,initrd-end").unwrap().as_usize(),
            Some((DRAM_START + 0x100_2000) as usize)
        );
        let mem = t.find_node("/memory@80000000").unwrap();
        assert_eq!(
            u64s(mem.property("reg").unwrap().value),
            vec![DRAM_START, 512 << 20]
        );
        let cpus: Vec<_> = t.cpus().collect();
        assert_eq!(cpus.len(), 2);
        let cpu1 = t.find_node("/cpus/cpu@1").unwrap();
        assert_eq!(u64s(cpu1.property("reg").unwrap().value), vec![1]);
        assert_eq!(
            cpu1.property("enable-method").unwrap().as_str(),
            Some("psci")
        );
        let psci = t.find_node("/psci").unwrap();
        assert_eq!(psci.property("method").unwrap().as_str(), Some("hvc"));
        assert_eq!(
            psci.property("compatible").unwrap().as_str(),
            Some("arm,psci-0.2")
        );
        let timer = t.find_node("/timer").unwrap();
        assert_eq!(
            u32s(timer.property("interrupts").unwrap().value),
            vec![1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4]
        );
        let uart = t.find_node("/uart@9000000").unwrap();
        assert_eq!(
            uart.property("compatible").unwrap().as_str(),
            Some("ns16550a")
        );
        assert_eq!(
            u64s(uart.property("reg").unwrap().value),
            vec![SERIAL_ADDR, SERIAL_SIZE]
        );
        assert_eq!(
            u32s(uart.property("interrupts").unwrap().value),
            vec![0, 1, 1]
        );
        for (i, addr) in [0x0a00_0000u64, 0x0a00_1000].iter().enumerate() {
            let node = t.find_node(&format!("/virtio_mmio@{addr:x}")).unwrap();
            assert_eq!(
                u64s(node.property("reg").unwrap().value),
                vec![*addr, 0x1000]
            );
            assert_eq!(
                u32s(node.property("interrupts").unwrap().value),
                vec![0, 2 + i as u32, 1]
            );
        }
    }

    #[test]
    fn the_gic_node_matches_its_version() {
        let blob = sample(GicVersion::V3);
        let t = parse(&blob);
        let gic = t.find_node("/intc@8000000").unwrap();
        assert_eq!(
            gic.property("compatible").unwrap().as_str(),
            Some("arm,gic-v3")
        );
        assert_eq!(
            u64s(gic.property("reg").unwrap().value),
            vec![
                GIC_DIST_ADDR,
                GIC_DIST_SIZE,
                GIC_REDIST_ADDR,
                2 * GIC_REDIST_SIZE
            ]
        );
        assert_eq!(
            gic.property("phandle").unwrap().as_usize(),
            Some(GIC_PHANDLE as usize)
        );
        let blob = sample(GicVersion::V2);
        let t = parse(&blob);
        let gic = t.find_node("/intc@8000000").unwrap();
        assert_eq!(
            gic.property("compatible").unwrap().as_str(),
            Some("arm,cortex-a15-gic")
        );
        assert_eq!(
            u64s(gic.property("reg").unwrap().value),
            vec![GIC_DIST_ADDR, GIC_DIST_SIZE, GIC_CPU_ADDR, GIC_CPU_SIZE]
        );
    }

    #[test]
    fn mpidr_follows_kvm() {
        assert_eq!(mpidr(0), 0);
        assert_eq!(mpidr(15), 15);
        assert_eq!(mpidr(16), 0x100);
        assert_eq!(mpidr(17), 0x101);
    }
}
