//! A stub of the PC's i8042 keyboard controller: enough for Linux's `reboot=k`, whose
//! reset command (0xfe on the command port) tells the VMM the guest wants to restart.

use crate::bus::BusDevice;
use vmm_sys_util::eventfd::EventFd;

/// Offset of the command/status port (0x64) from the data port (0x60).
const COMMAND_OFFSET: u64 = 4;
const CMD_RESET_CPU: u8 = 0xfe;

/// The i8042 stub.
pub struct I8042Device {
    reset_evt: EventFd,
}

impl I8042Device {
    /// A controller that writes `reset_evt` when the guest asks for a CPU reset.
    pub fn new(reset_evt: EventFd) -> Self {
        Self { reset_evt }
    }
}

impl BusDevice for I8042Device {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // Status 0: output buffer empty, input buffer empty; data port reads 0.
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == COMMAND_OFFSET && data.first() == Some(&CMD_RESET_CPU) {
            log::debug!("i8042: guest requested a reset");
            if let Err(e) = self.reset_evt.write(1) {
                log::error!("i8042: cannot signal the reset: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    #[test]
    fn reset_command_signals_the_vmm() {
        let evt = EventFd::new(EFD_NONBLOCK).unwrap();
        let mut dev = I8042Device::new(evt.try_clone().unwrap());
        dev.write(0, &[CMD_RESET_CPU]);
        assert!(evt.read().is_err(), "data port must not reset");
        dev.write(COMMAND_OFFSET, &[0xaa]);
        assert!(evt.read().is_err());
        dev.write(COMMAND_OFFSET, &[CMD_RESET_CPU]);
        assert_eq!(evt.read().unwrap(), 1);
        let mut status = [0xffu8];
        dev.read(COMMAND_OFFSET, &mut status);
        assert_eq!(status[0], 0);
    }
}
