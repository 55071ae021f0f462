//! pvpanic: one I/O register through which a guest kernel reports a panic (QEMU's
//! device, ACPI id `QEMU0001`; Linux's pvpanic driver). Reading it gives the events
//! the host understands; the guest writes `PANICKED` from its panic notifier, before
//! it reboots (`panic=N`) or halts, so the VMM can say why the guest went away.

use crate::bus::BusDevice;
use vmm_sys_util::eventfd::EventFd;

/// The guest kernel panicked.
pub const PVPANIC_PANICKED: u8 = 1 << 0;
/// The guest loaded a crash kernel (kdump) and is about to run it.
pub const PVPANIC_CRASH_LOADED: u8 = 1 << 1;

/// The pvpanic register.
pub struct PvPanic {
    panic_evt: EventFd,
    reported: bool,
}

impl PvPanic {
    /// A device that writes `panic_evt` when the guest reports a panic.
    pub fn new(panic_evt: EventFd) -> Self {
        Self {
            panic_evt,
            reported: false,
        }
    }
}

impl BusDevice for PvPanic {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let Some(first) = data.first_mut() {
            *first = PVPANIC_PANICKED;
        }
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else {
            return;
        };
        if value & PVPANIC_PANICKED != 0 && !self.reported {
            self.reported = true;
            log::error!("the guest kernel reported a panic (pvpanic)");
            if let Err(e) = self.panic_evt.write(1) {
                log::error!("pvpanic: cannot signal the VMM: {e}");
            }
        } else if value & PVPANIC_CRASH_LOADED != 0 {
            log::info!("the guest kernel is starting its crash kernel (pvpanic)");
        }
    }
}

impl PvPanic {
    /// Whether the guest already reported a panic (the snapshot's whole state).
    pub fn save(&self) -> bool {
        self.reported
    }

    /// Takes the reported flag back.
    pub fn restore(&mut self, reported: bool) {
        self.reported = reported;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    #[test]
    fn advertises_panicked_and_signals_once() {
        let evt = EventFd::new(EFD_NONBLOCK).unwrap();
        let mut dev = PvPanic::new(evt.try_clone().unwrap());
        let mut b = [0xffu8; 2];
        dev.read(0, &mut b);
        assert_eq!(b, [PVPANIC_PANICKED, 0]);
        dev.write(0, &[PVPANIC_CRASH_LOADED]);
        dev.write(0, &[]);
        assert!(evt.read().is_err(), "no panic yet");
        dev.write(0, &[PVPANIC_PANICKED]);
        dev.write(0, &[PVPANIC_PANICKED]);
        assert_eq!(evt.read().unwrap(), 1, "signalled once");
    }
}
