//! The in-kernel GIC, made with KVM_CREATE_DEVICE: GICv3 when the host has it, else
//! GICv2. Created after the vCPUs (the redistributors are per vCPU) and initialised
//! before the first KVM_RUN.

use super::fdt::GicVersion;
use super::layout::{GIC_CPU_ADDR, GIC_DIST_ADDR, GIC_NR_IRQS, GIC_REDIST_ADDR};
use kvm_bindings::{
    kvm_create_device, kvm_device_attr, kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V2,
    kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3, KVM_DEV_ARM_VGIC_CTRL_INIT,
    KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_DEV_ARM_VGIC_GRP_CTRL, KVM_DEV_ARM_VGIC_GRP_NR_IRQS,
    KVM_VGIC_V2_ADDR_TYPE_CPU, KVM_VGIC_V2_ADDR_TYPE_DIST, KVM_VGIC_V3_ADDR_TYPE_DIST,
    KVM_VGIC_V3_ADDR_TYPE_REDIST,
};
use kvm_ioctls::{DeviceFd, VmFd};

/// Errors creating the GIC.
#[derive(Debug, thiserror::Error)]
pub enum GicError {
    /// Neither GICv3 nor GICv2 could be created.
    #[error("this host's KVM can create neither a GICv3 nor a GICv2 (v3: {0}; v2: {1})")]
    Create(kvm_ioctls::Error, kvm_ioctls::Error),
    /// Setting a GIC attribute failed.
    #[error("GIC attribute {0} failed")]
    Attribute(&'static str, #[source] kvm_ioctls::Error),
}

/// The VM's interrupt controller; keep it alive as long as the VM.
pub struct Gic {
    _fd: DeviceFd,
    version: GicVersion,
}

impl Gic {
    /// Which GIC this is (for the device tree).
    pub fn version(&self) -> GicVersion {
        self.version
    }
}

fn attr(
    fd: &DeviceFd,
    what: &'static str,
    group: u32,
    attr: u64,
    addr: u64,
) -> Result<(), GicError> {
    let a = kvm_device_attr {
        group,
        attr,
        addr,
        flags: 0,
    };
    fd.set_device_attr(&a)
        .map_err(|e| GicError::Attribute(what, e))
}

fn create(vm: &VmFd, type_: u32) -> Result<DeviceFd, kvm_ioctls::Error> {
    let mut dev = kvm_create_device {
        type_,
        fd: 0,
        flags: 0,
    };
    vm.create_device(&mut dev)
}

/// The address attributes of each GIC version: (what, KVM address type, address).
pub fn address_regions(version: GicVersion) -> [(&'static str, u32, u64); 2] {
    match version {
        GicVersion::V3 => [
            ("v3 distributor", KVM_VGIC_V3_ADDR_TYPE_DIST, GIC_DIST_ADDR),
            (
                "v3 redistributors",
                KVM_VGIC_V3_ADDR_TYPE_REDIST,
                GIC_REDIST_ADDR,
            ),
        ],
        GicVersion::V2 => [
            ("v2 distributor", KVM_VGIC_V2_ADDR_TYPE_DIST, GIC_DIST_ADDR),
            ("v2 CPU interface", KVM_VGIC_V2_ADDR_TYPE_CPU, GIC_CPU_ADDR),
        ],
    }
}

/// Creates and initialises the GIC for a VM whose vCPUs all exist.
pub fn create_gic(vm: &VmFd) -> Result<Gic, GicError> {
    // The attribute values are pointers to the addresses, which must outlive the calls.
    let (fd, version) = match create(vm, kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3) {
        Ok(fd) => (fd, GicVersion::V3),
        Err(v3) => match create(vm, kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V2) {
            Ok(fd) => {
                log::info!("no GICv3 on this host ({v3}); the guest gets a GICv2");
                (fd, GicVersion::V2)
            }
            Err(v2) => return Err(GicError::Create(v3, v2)),
        },
    };
    for (what, kind, address) in address_regions(version) {
        let address: u64 = address;
        attr(
            &fd,
            what,
            KVM_DEV_ARM_VGIC_GRP_ADDR,
            u64::from(kind),
            &address as *const u64 as u64,
        )?;
    }
    let nr_irqs: u32 = GIC_NR_IRQS;
    attr(
        &fd,
        "number of interrupts",
        KVM_DEV_ARM_VGIC_GRP_NR_IRQS,
        0,
        &nr_irqs as *const u32 as u64,
    )?;
    attr(
        &fd,
        "init",
        KVM_DEV_ARM_VGIC_GRP_CTRL,
        u64::from(KVM_DEV_ARM_VGIC_CTRL_INIT),
        0,
    )?;
    Ok(Gic { _fd: fd, version })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_version_gets_its_own_address_attributes() {
        let v3 = address_regions(GicVersion::V3);
        assert_eq!(
            (v3[0].1, v3[0].2),
            (KVM_VGIC_V3_ADDR_TYPE_DIST, 0x0800_0000)
        );
        assert_eq!(
            (v3[1].1, v3[1].2),
            (KVM_VGIC_V3_ADDR_TYPE_REDIST, 0x080a_0000)
        );
        let v2 = address_regions(GicVersion::V2);
        assert_eq!(
            (v2[0].1, v2[0].2),
            (KVM_VGIC_V2_ADDR_TYPE_DIST, 0x0800_0000)
        );
        assert_eq!((v2[1].1, v2[1].2), (KVM_VGIC_V2_ADDR_TYPE_CPU, 0x0801_0000));
        // Types as KVM defines them (linux/arch/arm64/include/uapi/asm/kvm.h).
        assert_eq!(
            (KVM_VGIC_V2_ADDR_TYPE_DIST, KVM_VGIC_V2_ADDR_TYPE_CPU),
            (0, 1)
        );
        assert_eq!(
            (KVM_VGIC_V3_ADDR_TYPE_DIST, KVM_VGIC_V3_ADDR_TYPE_REDIST),
            (2, 3)
        );
        assert_eq!(GIC_NR_IRQS % 32, 0);
    }
}
