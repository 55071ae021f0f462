//! ACPI fixed hardware: the PM1a event block (status, enable) with the fixed-feature
//! power button, the PM1a control block (SLP_EN with sleep type S5 powers off), and the
//! reset register, as a little-endian register file that takes byte and word accesses.

use crate::bus::BusDevice;
use crate::trigger::EventFdTrigger;
use vm_superio::Trigger;
use vmm_sys_util::eventfd::EventFd;

const PM1_STS: usize = 0;
const PM1_EN: usize = 2;
const PM1_CNT: usize = 4;
const RESET: usize = 6;
const SIZE: usize = 8;
/// PM1 control: SCI_EN (the platform is in ACPI mode), SLP_TYP (bits 10-12), SLP_EN.
const SCI_EN: u16 = 1 << 0;
const SLP_TYP_SHIFT: u16 = 10;
const SLP_TYP_MASK: u16 = 0x7;
const SLP_EN: u16 = 1 << 13;
/// PM1 status and enable: the fixed-feature power button.
const PWRBTN: u16 = 1 << 8;

/// The ACPI power-management device.
pub struct AcpiPmDevice {
    sci: Option<EventFdTrigger>,
    poweroff_evt: EventFd,
    reset_evt: EventFd,
    s5_sleep_type: u8,
    reset_value: u8,
    regs: [u8; SIZE],
}

impl AcpiPmDevice {
    /// Signals `poweroff_evt` when the guest enters sleep type `s5_sleep_type` (what the
    /// DSDT's `\_S5_` says) and `reset_evt` when it writes `reset_value` to the reset
    /// register.
    pub fn new(
        poweroff_evt: EventFd,
        reset_evt: EventFd,
        s5_sleep_type: u8,
        reset_value: u8,
    ) -> Self {
        let mut regs = [0u8; SIZE];
        regs[PM1_CNT] = SCI_EN as u8;
        Self {
            sci: None,
            poweroff_evt,
            reset_evt,
            s5_sleep_type,
            reset_value,
            regs,
        }
    }

    /// Raises the SCI through `sci` when an enabled event occurs.
    pub fn with_sci(mut self, sci: EventFdTrigger) -> Self {
        self.sci = Some(sci);
        self
    }

    /// Presses the power button: sets PWRBTN_STS and raises the SCI if the guest
    /// enabled the event. Returns whether it was enabled (a guest that never enabled
    /// it will not act on the press).
    pub fn press_power_button(&mut self) -> bool {
        let status = self.word(PM1_STS) | PWRBTN;
        self.regs[PM1_STS..PM1_STS + 2].copy_from_slice(&status.to_le_bytes());
        let enabled = self.word(PM1_EN) & PWRBTN != 0;
        if enabled {
            if let Some(sci) = &self.sci {
                if let Err(e) = sci.trigger() {
                    log::error!("acpi: cannot raise the SCI: {e}");
                }
            }
        }
        enabled
    }

    fn word(&self, at: usize) -> u16 {
        u16::from_le_bytes([self.regs[at], self.regs[at + 1]])
    }

    fn signal(evt: &EventFd, what: &str) {
        log::debug!("acpi: guest requested {what}");
        if let Err(e) = evt.write(1) {
            log::error!("acpi: cannot signal {what}: {e}");
        }
    }

    /// Acts on a PM1 control value that had SLP_EN set.
    fn sleep(&self, control: u16) {
        let sleep_type = (control >> SLP_TYP_SHIFT) & SLP_TYP_MASK;
        if sleep_type == u16::from(self.s5_sleep_type) {
            Self::signal(&self.poweroff_evt, "power-off (S5)");
        } else {
            crate::guest_warn!("acpi: sleep type {sleep_type} is not supported; ignored");
        }
    }
}

impl BusDevice for AcpiPmDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        for (i, byte) in data.iter_mut().enumerate() {
            if let Some(v) = usize::try_from(offset)
                .ok()
                .and_then(|o| self.regs.get(o.checked_add(i)?))
            {
                *byte = *v;
            }
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(start) = usize::try_from(offset)
            .ok()
            .filter(|o| o.checked_add(data.len()).is_some_and(|end| end <= SIZE))
        else {
            log::debug!("acpi: ignored {}-byte write at offset {offset}", data.len());
            return;
        };
        let mut control_written = false;
        for (i, value) in data.iter().enumerate() {
            let at = start + i;
            match at {
                // Status bits are write-one-to-clear.
                a if (PM1_STS..PM1_EN).contains(&a) => self.regs[a] &= !value,
                a if a < PM1_CNT => self.regs[a] = *value,
                a if a < RESET => {
                    self.regs[a] = *value;
                    control_written = true;
                }
                RESET if *value == self.reset_value => Self::signal(&self.reset_evt, "reset"),
                _ => {}
            }
        }
        if control_written {
            let control = self.word(PM1_CNT);
            // SLP_EN is write-only; SCI_EN stays set: there is no legacy mode.
            let kept = (control & !SLP_EN) | SCI_EN;
            self.regs[PM1_CNT..PM1_CNT + 2].copy_from_slice(&kept.to_le_bytes());
            if control & SLP_EN != 0 {
                self.sleep(control);
            }
        }
    }
}

/// The PM registers, for snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AcpiPmState {
    /// PM1 status, enable and control, and the reset register.
    pub regs: Vec<u8>,
}

impl AcpiPmDevice {
    /// The state a snapshot keeps.
    pub fn save(&self) -> AcpiPmState {
        AcpiPmState {
            regs: self.regs.to_vec(),
        }
    }

    /// Takes `state` back (registers beyond the device's are ignored).
    pub fn restore(&mut self, state: &AcpiPmState) {
        let n = state.regs.len().min(SIZE);
        self.regs[..n].copy_from_slice(&state.regs[..n]);
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

    fn cnt(sleep_type: u16, enable: bool) -> [u8; 2] {
        ((sleep_type << SLP_TYP_SHIFT) | if enable { SLP_EN } else { 0 } | SCI_EN).to_le_bytes()
    }

    #[test]
    fn s5_with_sleep_enable_powers_off() {
        let (mut dev, off, reset) = device();
        // ACPICA writes the sleep type first, then the same with SLP_EN.
        dev.write(PM1_CNT as u64, &cnt(5, false));
        assert!(off.read().is_err());
        dev.write(PM1_CNT as u64, &cnt(3, true)); // S3: unsupported
        assert!(off.read().is_err());
        dev.write(PM1_CNT as u64, &cnt(5, true));
        assert_eq!(off.read().unwrap(), 1);
        assert!(reset.read().is_err());
    }

    #[test]
    fn byte_writes_to_the_control_block_work_too() {
        let (mut dev, off, _reset) = device();
        let [lo, hi] = cnt(5, true);
        dev.write(PM1_CNT as u64, &[lo]);
        assert!(off.read().is_err());
        dev.write(PM1_CNT as u64 + 1, &[hi]);
        assert_eq!(off.read().unwrap(), 1);
    }

    #[test]
    fn control_reads_back_sci_enabled_without_slp_en() {
        let (mut dev, _off, _reset) = device();
        let mut b = [0u8; 2];
        dev.read(PM1_CNT as u64, &mut b);
        assert_eq!(u16::from_le_bytes(b), SCI_EN);
        dev.write(PM1_CNT as u64, &cnt(5, true));
        dev.read(PM1_CNT as u64, &mut b);
        assert_eq!(u16::from_le_bytes(b), (5 << SLP_TYP_SHIFT) | SCI_EN);
    }

    #[test]
    fn status_is_write_one_to_clear_and_enable_is_stored() {
        let (mut dev, _off, _reset) = device();
        dev.regs[PM1_STS] = 0x81;
        dev.write(PM1_STS as u64, &[0x80, 0]);
        let mut b = [0u8; 2];
        dev.read(PM1_STS as u64, &mut b);
        assert_eq!(b, [0x01, 0]);
        dev.write(PM1_EN as u64, &[0x20, 0x01]);
        dev.read(PM1_EN as u64, &mut b);
        assert_eq!(b, [0x20, 0x01]);
    }

    #[test]
    fn power_button_sets_status_and_raises_the_sci_once_enabled() {
        let (dev, _off, _reset) = device();
        let sci = EventFd::new(EFD_NONBLOCK).unwrap();
        let mut dev = dev.with_sci(EventFdTrigger::new(sci.try_clone().unwrap()));
        assert!(!dev.press_power_button(), "not enabled yet");
        assert!(sci.read().is_err());
        let mut b = [0u8; 2];
        dev.read(PM1_STS as u64, &mut b);
        assert_eq!(u16::from_le_bytes(b), PWRBTN);
        dev.write(PM1_STS as u64, &PWRBTN.to_le_bytes());
        dev.write(PM1_EN as u64, &PWRBTN.to_le_bytes());
        assert!(dev.press_power_button());
        assert_eq!(sci.read().unwrap(), 1);
        dev.read(PM1_STS as u64, &mut b);
        assert_eq!(u16::from_le_bytes(b), PWRBTN);
    }

    #[test]
    fn reset_register_resets() {
        let (mut dev, off, reset) = device();
        dev.write(RESET as u64, &[0x2]);
        assert!(reset.read().is_err());
        dev.write(RESET as u64, &[0x1]);
        assert_eq!(reset.read().unwrap(), 1);
        assert!(off.read().is_err());
    }

    #[test]
    fn out_of_range_accesses_are_ignored() {
        let (mut dev, off, reset) = device();
        dev.write(7, &[1, 2]);
        dev.write(u64::MAX, &[1]);
        let mut b = [0xffu8; 4];
        dev.read(6, &mut b);
        assert_eq!(b, [0, 0, 0, 0]);
        assert!(off.read().is_err() && reset.read().is_err());
    }
}
