//! The power-management registers of a hardware-reduced ACPI platform: the sleep
//! control register (a write of SLP_EN with sleep type S5 powers off), the sleep
//! status register, and the reset register.

use crate::bus::BusDevice;
use vmm_sys_util::eventfd::EventFd;

/// Register offsets, as the FADT names them.
const SLEEP_CONTROL: u64 = 0;
const SLEEP_STATUS: u64 = 1;
const RESET: u64 = 2;
/// Sleep control: SLP_EN (bit 5) and SLP_TYP (bits 2-4).
const SLP_EN: u8 = 1 << 5;
const SLP_TYP_SHIFT: u8 = 2;
const SLP_TYP_MASK: u8 = 0x7;

/// The ACPI power-management device.
pub struct AcpiPmDevice {
    poweroff_evt: EventFd,
    reset_evt: EventFd,
    s5_sleep_type: u8,
    reset_value: u8,
}

impl AcpiPmDevice {
    /// Signals `poweroff_evt` on entry to the sleep type `s5_sleep_type` (what the
    /// DSDT's `\_S5_` says) and `reset_evt` when `reset_value` is written to the
    /// reset register.
    pub fn new(
        poweroff_evt: EventFd,
        reset_evt: EventFd,
        s5_sleep_type: u8,
        reset_value: u8,
    ) -> Self {
        Self {
            poweroff_evt,
            reset_evt,
            s5_sleep_type,
            reset_value,
        }
    }

    fn signal(evt: &EventFd, what: &str) {
        log::debug!("acpi: guest requested {what}");
        if let Err(e) = evt.write(1) {
            log::error!("acpi: cannot signal {what}: {e}");
        }
    }
}

impl BusDevice for AcpiPmDevice {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // Sleep status never reports a wake: the VM is gone after S5.
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let [value] = data else {
            log::debug!("acpi: ignored {}-byte write at offset {offset}", data.len());
            return;
        };
        match offset {
            SLEEP_CONTROL if value & SLP_EN != 0 => {
                let sleep_type = (value >> SLP_TYP_SHIFT) & SLP_TYP_MASK;
                if sleep_type == self.s5_sleep_type {
                    Self::signal(&self.poweroff_evt, "power-off (S5)");
                } else {
                    log::warn!("acpi: sleep type {sleep_type} is not supported; ignored");
                }
            }
            RESET if *value == self.reset_value => Self::signal(&self.reset_evt, "reset"),
            SLEEP_CONTROL | SLEEP_STATUS | RESET => {}
            _ => log::debug!("acpi: ignored write at offset {offset}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    fn device() -> (AcpiPmDevice, EventFd, EventFd) {
        let off = EventFd::new(EFD_NONBLOCK).unwrap();
        let reset = EventFd::new(EFD_NONBLOCK).unwrap();
        let dev = AcpiPmDevice::new(off.try_clone().unwrap(), reset.try_clone().unwrap(), 5, 1);
        (dev, off, reset)
    }

    #[test]
    fn s5_with_sleep_enable_powers_off() {
        let (mut dev, off, reset) = device();
        dev.write(SLEEP_CONTROL, &[5 << 2]); // no SLP_EN
        assert!(off.read().is_err());
        dev.write(SLEEP_CONTROL, &[(3 << 2) | SLP_EN]); // S3: unsupported
        assert!(off.read().is_err());
        dev.write(SLEEP_CONTROL, &[(5 << 2) | SLP_EN]);
        assert_eq!(off.read().unwrap(), 1);
        assert!(reset.read().is_err());
    }

    #[test]
    fn reset_register_resets() {
        let (mut dev, off, reset) = device();
        dev.write(RESET, &[0x2]);
        assert!(reset.read().is_err());
        dev.write(RESET, &[0x1]);
        assert_eq!(reset.read().unwrap(), 1);
        assert!(off.read().is_err());
    }

    #[test]
    fn odd_accesses_are_ignored() {
        let (mut dev, off, reset) = device();
        dev.write(SLEEP_CONTROL, &[(5 << 2) | SLP_EN, 0]);
        dev.write(7, &[1]);
        let mut b = [0xffu8; 2];
        dev.read(SLEEP_STATUS, &mut b);
        assert_eq!(b, [0, 0]);
        assert!(off.read().is_err() && reset.read().is_err());
    }
}
