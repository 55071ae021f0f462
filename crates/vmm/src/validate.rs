//! Checks of a [`VmConfig`] that need no KVM: memory size, vCPU count, kernel and
//! initrd files, the command line and the device count. They run before `/dev/kvm` is
//! opened, so bad input gets the same one-line answer on every host, with or without
//! KVM.

use crate::config::VmConfig;
use crate::error::VmmError;
use crate::memory::{check_size, host_ram};
use crate::virtio_devices::MAX_DEVICES;
use boot::cmdline::Preset;

/// Checks `config` (booting with `preset`) as far as that is possible without KVM; the
/// kernel, initrd and command line only when the guest is to boot (`booting`), not
/// when it continues from a snapshot.
pub(crate) fn check_config(
    config: &VmConfig,
    preset: Option<Preset>,
    booting: bool,
) -> Result<(), VmmError> {
    check_size(config.spec.mem_size, host_ram())?;
    check_vcpu_count(config.spec.vcpus, arch::layout::MAX_VCPUS)?;
    config
        .spec
        .check_devices()
        .map_err(VmmError::InvalidDevice)?;
    if crate::builder::virtio_device_count(config) > MAX_DEVICES {
        return Err(VmmError::TooManyDevices(MAX_DEVICES));
    }
    // A restored guest's memory is its snapshot's file, not huge pages, and its kernel
    // has long been loaded.
    if !booting {
        return Ok(());
    }
    if config.spec.mem_hugepages {
        crate::memory::check_huge_pages(config.spec.mem_size)?;
    }
    boot::check_kernel(&config.spec.kernel)?;
    if let Some(initrd) = &config.spec.initrd {
        let size = boot::initrd::check_initrd(initrd)?;
        if size >= config.spec.mem_size {
            return Err(VmmError::InitrdBiggerThanMemory(
                initrd.clone(),
                size,
                config.spec.mem_size,
            ));
        }
    }
    boot::cmdline::build_cmdline(
        config.spec.default_cmdline,
        preset,
        config.spec.cmdline.as_deref(),
        arch::layout::CMDLINE_MAX_SIZE,
    )?;
    Ok(())
}

/// Checks a vCPU count against `max` (the platform's limit; KVM's own is checked too,
/// once it is open).
pub(crate) fn check_vcpu_count(requested: usize, max: usize) -> Result<u8, VmmError> {
    match requested {
        0 => Err(VmmError::NoVcpus),
        n if n > max => Err(VmmError::TooManyVcpus(n, max)),
        n => u8::try_from(n).map_err(|_| VmmError::TooManyVcpus(n, max)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vcpu_counts() {
        assert!(matches!(check_vcpu_count(0, 254), Err(VmmError::NoVcpus)));
        assert_eq!(check_vcpu_count(1, 254).unwrap(), 1);
        assert_eq!(check_vcpu_count(254, 254).unwrap(), 254);
        assert!(matches!(
            check_vcpu_count(255, 254),
            Err(VmmError::TooManyVcpus(255, 254))
        ));
        assert!(matches!(
            check_vcpu_count(300, 1024),
            Err(VmmError::TooManyVcpus(300, 1024))
        ));
    }

    #[test]
    fn bad_files_are_found_without_kvm() {
        let mut config = VmConfig::new("/nonexistent/vmlinux");
        config.spec.kvm_path = "/nonexistent/kvm".into();
        let err = check_config(&config, None, true).unwrap_err().to_string();
        assert!(err.contains("cannot read /nonexistent/vmlinux"), "{err}");
        config.spec.mem_size = 0;
        let err = check_config(&config, None, true).unwrap_err().to_string();
        assert!(err.contains("too small"), "{err}");
    }
}
