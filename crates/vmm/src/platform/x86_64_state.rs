//! The x86_64 platform devices' state for snapshots: the handles the VMM keeps to the
//! serial port, i8042, ACPI PM registers, CMOS clock and pvpanic, and what each saves.

use devices::acpi_pm::{AcpiPmDevice, AcpiPmState};
use devices::cmos::{Cmos, CmosState};
use devices::i8042::{I8042Device, I8042State};
use devices::pvpanic::PvPanic;
use devices::serial::{SerialDevice, SerialSnapshot};
use devices::vmgenid::VmGenId;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, MutexGuard};
use vm_memory::GuestMemoryMmap;

/// The platform devices, as a snapshot sees them.
#[derive(Clone)]
pub(crate) struct LegacyHandles {
    pub serial: Arc<Mutex<SerialDevice>>,
    pub i8042: Arc<Mutex<I8042Device>>,
    pub acpi_pm: Arc<Mutex<AcpiPmDevice>>,
    pub cmos: Arc<Mutex<Cmos>>,
    pub pvpanic: Arc<Mutex<PvPanic>>,
    pub vmgenid: Arc<VmGenId>,
}

/// Their saved state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyState {
    /// The 8250 UART.
    pub serial: SerialSnapshot,
    /// The i8042 controller.
    pub i8042: I8042State,
    /// The ACPI PM registers.
    pub acpi_pm: AcpiPmState,
    /// The CMOS clock's registers and RAM.
    pub cmos: CmosState,
    /// pvpanic: a panic was already reported.
    pub pvpanic_reported: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LegacyHandles {
    /// Reads every device's state.
    pub fn save(&self) -> Result<LegacyState, String> {
        Ok(LegacyState {
            serial: lock(&self.serial).save(),
            i8042: lock(&self.i8042).save(),
            acpi_pm: lock(&self.acpi_pm).save(),
            cmos: lock(&self.cmos).save(),
            pvpanic_reported: lock(&self.pvpanic).save(),
        })
    }

    /// The guest's first VM generation ID, written at boot.
    pub fn first_generation(&self, memory: &GuestMemoryMmap) -> Result<(), String> {
        self.vmgenid
            .write_new_id(memory)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// A new VM generation (a restored snapshot): a fresh ID and its interrupt, so the
    /// guest reseeds its random number generator.
    pub fn new_generation(&self, memory: &GuestMemoryMmap) -> Result<(), String> {
        self.vmgenid
            .new_generation(memory)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Puts `state` back into freshly built devices.
    pub fn restore(&self, state: &LegacyState) -> Result<(), String> {
        lock(&self.serial)
            .restore(&state.serial)
            .map_err(|e| e.to_string())?;
        lock(&self.i8042).restore(&state.i8042);
        lock(&self.acpi_pm).restore(&state.acpi_pm);
        lock(&self.cmos).restore(&state.cmos);
        lock(&self.pvpanic).restore(state.pvpanic_reported);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap fails the test
    use super::*;
    use devices::trigger::EventFdTrigger;
    use devices::BusDevice;
    use vmm_sys_util::eventfd::EventFd;

    fn evt() -> EventFd {
        EventFd::new(0).unwrap()
    }

    fn handles() -> LegacyHandles {
        LegacyHandles {
            serial: Arc::new(Mutex::new(SerialDevice::new(
                EventFdTrigger::new(evt()),
                Box::new(std::io::sink()),
            ))),
            i8042: Arc::new(Mutex::new(I8042Device::new(evt()))),
            acpi_pm: Arc::new(Mutex::new(AcpiPmDevice::new(evt(), evt(), 5, 1))),
            cmos: Arc::new(Mutex::new(Cmos::new())),
            pvpanic: Arc::new(Mutex::new(PvPanic::new(evt()))),
            vmgenid: Arc::new(VmGenId::new(
                vm_memory::GuestAddress(0xf_f000),
                EventFdTrigger::new(evt()),
            )),
        }
    }

    #[test]
    fn platform_state_moves_to_fresh_devices() {
        let a = handles();
        // What a guest leaves behind: UART registers and unread input, a CMOS
        // register selected and NVRAM written, the PM enable bits, a panic reported.
        {
            let mut s = lock(&a.serial);
            s.write(3, &[0x03]); // LCR: 8 bits
            s.write(7, &[0x5a]); // scratch
            s.enqueue_input(b"hi");
        }
        lock(&a.cmos).write(0, &[0x30]);
        lock(&a.cmos).write(1, &[0x77]);
        lock(&a.acpi_pm).write(2, &[0x00, 0x01]);
        lock(&a.pvpanic).restore(true);
        let saved = a.save().unwrap();
        let json = serde_json::to_string(&saved).unwrap();
        let saved: LegacyState = serde_json::from_str(&json).unwrap();

        let b = handles();
        assert_ne!(b.save().unwrap(), saved);
        b.restore(&saved).unwrap();
        assert_eq!(b.save().unwrap(), saved);
        let mut byte = [0u8];
        lock(&b.serial).read(7, &mut byte);
        assert_eq!(byte[0], 0x5a);
        lock(&b.serial).read(0, &mut byte);
        assert_eq!(byte[0], b'h');
        lock(&b.cmos).write(0, &[0x30]);
        lock(&b.cmos).read(1, &mut byte);
        assert_eq!(byte[0], 0x77);

        let mut too_long = saved.clone();
        too_long.serial.in_buffer = vec![0; 65];
        assert!(b.restore(&too_long).unwrap_err().contains("FIFO"));
    }
}
