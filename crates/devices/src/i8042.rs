//! A small model of the PC's i8042 keyboard controller: the status and command/data
//! registers, the controller configuration byte, self tests, and the CPU reset line
//! that Linux's `reboot=k` pulls (0xfe on the command port, or output port bit 0).
//! No keyboard is attached: keyboard commands are accepted and ignored.

use crate::bus::BusDevice;
use std::collections::VecDeque;
use vmm_sys_util::eventfd::EventFd;

/// Offset of the command/status port (0x64) from the data port (0x60).
const COMMAND_OFFSET: u64 = 4;
const DATA_OFFSET: u64 = 0;

const STATUS_OUTPUT_FULL: u8 = 0x01;
const STATUS_SYSTEM_FLAG: u8 = 0x04;
const STATUS_LAST_WAS_COMMAND: u8 = 0x08;
/// Set when the keyboard is not inhibited by the (absent) key lock.
const STATUS_UNLOCKED: u8 = 0x10;

const CMD_READ_CTR: u8 = 0x20;
const CMD_WRITE_CTR: u8 = 0x60;
const CMD_TEST_AUX: u8 = 0xa9;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_TEST_KBD: u8 = 0xab;
const CMD_READ_OUTPUT_PORT: u8 = 0xd0;
const CMD_WRITE_OUTPUT_PORT: u8 = 0xd1;
const CMD_WRITE_KBD_BUFFER: u8 = 0xd2;
const CMD_RESET_CPU: u8 = 0xfe;

const SELF_TEST_OK: u8 = 0x55;
const PORT_TEST_OK: u8 = 0x00;
/// Keyboard interrupt enabled, system flag, translation: what a BIOS leaves.
const DEFAULT_CTR: u8 = 0x45;
/// Output port: bit 0 is the CPU reset line (active low), bit 1 the A20 gate.
const DEFAULT_OUTPUT_PORT: u8 = 0x03;
/// The guest fills the output buffer only through commands; bound it anyway.
const OUTPUT_CAPACITY: usize = 16;

/// The i8042 controller.
pub struct I8042Device {
    reset_evt: EventFd,
    ctr: u8,
    output_port: u8,
    last_was_command: bool,
    pending: Option<u8>,
    output: VecDeque<u8>,
}

impl I8042Device {
    /// A controller that writes `reset_evt` when the guest resets the CPU.
    pub fn new(reset_evt: EventFd) -> Self {
        Self {
            reset_evt,
            ctr: DEFAULT_CTR,
            output_port: DEFAULT_OUTPUT_PORT,
            last_was_command: false,
            pending: None,
            output: VecDeque::new(),
        }
    }

    fn push(&mut self, byte: u8) {
        if self.output.len() < OUTPUT_CAPACITY {
            self.output.push_back(byte);
        }
    }

    fn reset_cpu(&self) {
        log::debug!("i8042: guest requested a reset");
        if let Err(e) = self.reset_evt.write(1) {
            log::error!("i8042: cannot signal the reset: {e}");
        }
    }

    fn status(&self) -> u8 {
        let mut s = STATUS_SYSTEM_FLAG | STATUS_UNLOCKED;
        if !self.output.is_empty() {
            s |= STATUS_OUTPUT_FULL;
        }
        if self.last_was_command {
            s |= STATUS_LAST_WAS_COMMAND;
        }
        s
    }

    fn command(&mut self, cmd: u8) {
        self.last_was_command = true;
        self.pending = None;
        match cmd {
            CMD_READ_CTR => self.push(self.ctr),
            CMD_WRITE_CTR | CMD_WRITE_OUTPUT_PORT | CMD_WRITE_KBD_BUFFER => {
                self.pending = Some(cmd)
            }
            CMD_SELF_TEST => self.push(SELF_TEST_OK),
            CMD_TEST_KBD | CMD_TEST_AUX => self.push(PORT_TEST_OK),
            CMD_READ_OUTPUT_PORT => self.push(self.output_port),
            CMD_RESET_CPU => self.reset_cpu(),
            other => log::trace!("i8042: ignored command {other:#x}"),
        }
    }

    fn data(&mut self, value: u8) {
        self.last_was_command = false;
        match self.pending.take() {
            Some(CMD_WRITE_CTR) => self.ctr = value,
            Some(CMD_WRITE_OUTPUT_PORT) => {
                self.output_port = value;
                if value & 1 == 0 {
                    self.reset_cpu();
                }
            }
            Some(CMD_WRITE_KBD_BUFFER) => self.push(value),
            _ => log::trace!("i8042: ignored keyboard command {value:#x} (no keyboard)"),
        }
    }
}

impl BusDevice for I8042Device {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = match offset {
            COMMAND_OFFSET => self.status(),
            DATA_OFFSET => self.output.pop_front().unwrap_or(0),
            _ => 0,
        };
        data.fill(0);
        if let Some(first) = data.first_mut() {
            *first = value;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        match (offset, data) {
            (COMMAND_OFFSET, [cmd]) => self.command(*cmd),
            (DATA_OFFSET, [value]) => self.data(*value),
            _ => log::debug!(
                "i8042: ignored {}-byte write at offset {offset}",
                data.len()
            ),
        }
    }
}

/// The controller's guest-visible state, for snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct I8042State {
    /// Controller configuration byte.
    pub ctr: u8,
    /// Output port (A20, reset line).
    pub output_port: u8,
    /// The last write went to the command port.
    pub last_was_command: bool,
    /// A command waiting for its data byte.
    pub pending: Option<u8>,
    /// Bytes waiting in the output buffer.
    pub output: Vec<u8>,
}

impl I8042Device {
    /// The state a snapshot keeps.
    pub fn save(&self) -> I8042State {
        I8042State {
            ctr: self.ctr,
            output_port: self.output_port,
            last_was_command: self.last_was_command,
            pending: self.pending,
            output: self.output.iter().copied().collect(),
        }
    }

    /// Takes `state` back (the output buffer cut to its capacity).
    pub fn restore(&mut self, state: &I8042State) {
        self.ctr = state.ctr;
        self.output_port = state.output_port;
        self.last_was_command = state.last_was_command;
        self.pending = state.pending;
        self.output = state.output.iter().take(OUTPUT_CAPACITY).copied().collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    fn device() -> (I8042Device, EventFd) {
        let evt = EventFd::new(EFD_NONBLOCK).unwrap();
        (I8042Device::new(evt.try_clone().unwrap()), evt)
    }

    fn read(dev: &mut I8042Device, offset: u64) -> u8 {
        let mut b = [0xffu8];
        dev.read(offset, &mut b);
        b[0]
    }

    #[test]
    fn reset_command_signals_the_vmm() {
        let (mut dev, evt) = device();
        dev.write(DATA_OFFSET, &[CMD_RESET_CPU]);
        assert!(evt.read().is_err(), "a keyboard byte must not reset");
        dev.write(COMMAND_OFFSET, &[0xa7]);
        assert!(evt.read().is_err());
        dev.write(COMMAND_OFFSET, &[CMD_RESET_CPU]);
        assert_eq!(evt.read().unwrap(), 1);
    }

    #[test]
    fn output_port_reset_line() {
        let (mut dev, evt) = device();
        dev.write(COMMAND_OFFSET, &[CMD_WRITE_OUTPUT_PORT]);
        dev.write(DATA_OFFSET, &[0x03]);
        assert!(evt.read().is_err());
        dev.write(COMMAND_OFFSET, &[CMD_WRITE_OUTPUT_PORT]);
        dev.write(DATA_OFFSET, &[0x02]);
        assert_eq!(evt.read().unwrap(), 1);
    }

    #[test]
    fn configuration_byte_round_trips_through_the_output_buffer() {
        let (mut dev, _evt) = device();
        assert_eq!(read(&mut dev, COMMAND_OFFSET) & STATUS_OUTPUT_FULL, 0);
        dev.write(COMMAND_OFFSET, &[CMD_READ_CTR]);
        assert_ne!(read(&mut dev, COMMAND_OFFSET) & STATUS_OUTPUT_FULL, 0);
        assert_eq!(read(&mut dev, DATA_OFFSET), DEFAULT_CTR);
        assert_eq!(read(&mut dev, COMMAND_OFFSET) & STATUS_OUTPUT_FULL, 0);
        dev.write(COMMAND_OFFSET, &[CMD_WRITE_CTR]);
        dev.write(DATA_OFFSET, &[0x65]);
        dev.write(COMMAND_OFFSET, &[CMD_READ_CTR]);
        assert_eq!(read(&mut dev, DATA_OFFSET), 0x65);
    }

    #[test]
    fn self_tests_pass() {
        let (mut dev, _evt) = device();
        dev.write(COMMAND_OFFSET, &[CMD_SELF_TEST]);
        assert_eq!(read(&mut dev, DATA_OFFSET), SELF_TEST_OK);
        dev.write(COMMAND_OFFSET, &[CMD_TEST_KBD]);
        assert_eq!(read(&mut dev, DATA_OFFSET), PORT_TEST_OK);
        assert_ne!(read(&mut dev, COMMAND_OFFSET) & STATUS_SYSTEM_FLAG, 0);
    }

    #[test]
    fn a_guest_cannot_grow_the_buffer_without_bound() {
        let (mut dev, _evt) = device();
        for _ in 0..1000 {
            dev.write(COMMAND_OFFSET, &[CMD_READ_CTR]);
        }
        assert_eq!(dev.output.len(), OUTPUT_CAPACITY);
        dev.write(COMMAND_OFFSET, &[CMD_READ_CTR, 0]);
        let mut wide = [0xffu8; 4];
        dev.read(DATA_OFFSET, &mut wide);
        assert_eq!(wide, [DEFAULT_CTR, 0, 0, 0]);
    }
}
