//! The 8250 serial console: vm-superio's UART on the port I/O bus, its interrupt an
//! eventfd, its output any writer, its input fed by the event loop.

use crate::bus::BusDevice;
use crate::trigger::EventFdTrigger;
use std::io::Write;
use vm_superio::serial::NoEvents;
use vm_superio::Serial;

/// Where guest console output goes.
pub type ConsoleWriter = Box<dyn Write + Send>;

/// The console writer as the UART sees it. vm-superio flushes its writer after every
/// byte the guest sends; passed on, that made every byte a host write (the console
/// writer buffers lines, and its flush means "write out now"). Here the UART's flushes
/// are dropped; [`SerialDevice::flush`] reaches the writer's own.
struct UartOut(ConsoleWriter);

impl Write for UartOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The serial console device.
pub struct SerialDevice {
    serial: Serial<EventFdTrigger, NoEvents, UartOut>,
}

impl SerialDevice {
    /// A UART that raises `interrupt` and writes guest output to `out`, whose `flush`
    /// is called only through [`SerialDevice::flush`].
    pub fn new(interrupt: EventFdTrigger, out: ConsoleWriter) -> Self {
        Self {
            serial: Serial::new(interrupt, UartOut(out)),
        }
    }

    /// Queues host input for the guest; returns how many bytes fit in the FIFO.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        match self.serial.enqueue_raw_bytes(bytes) {
            Ok(n) => n,
            Err(e) => {
                log::warn!("serial: cannot queue input: {e:?}");
                0
            }
        }
    }

    /// Free space in the receive FIFO.
    pub fn input_capacity(&self) -> usize {
        self.serial.fifo_capacity()
    }

    /// Flushes the output writer.
    pub fn flush(&mut self) {
        let _ = self.serial.writer_mut().0.flush();
    }
}

impl BusDevice for SerialDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match (data.len(), u8::try_from(offset)) {
            (1, Ok(off)) => data[0] = self.serial.read(off),
            _ => {
                log::debug!(
                    "serial: ignored {}-byte read at offset {offset}",
                    data.len()
                );
                data.fill(0xff);
            }
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        match (data, u8::try_from(offset)) {
            ([value], Ok(off)) => {
                if let Err(e) = self.serial.write(off, *value) {
                    log::warn!("serial: write at offset {off}: {e:?}");
                }
            }
            _ => log::debug!(
                "serial: ignored {}-byte write at offset {offset}",
                data.len()
            ),
        }
    }
}

/// The UART's registers and receive FIFO, for snapshots (vm-superio's `SerialState`,
/// which has no serde form).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SerialSnapshot {
    /// Divisor latch, low and high bytes.
    pub baud_divisor: [u8; 2],
    /// Interrupt enable register.
    pub interrupt_enable: u8,
    /// Interrupt identification register.
    pub interrupt_identification: u8,
    /// Line control register.
    pub line_control: u8,
    /// Line status register.
    pub line_status: u8,
    /// Modem control register.
    pub modem_control: u8,
    /// Modem status register.
    pub modem_status: u8,
    /// Scratch register.
    pub scratch: u8,
    /// Bytes the guest has not read yet.
    pub in_buffer: Vec<u8>,
}

/// Why a UART state cannot be taken back.
#[derive(Debug, thiserror::Error)]
pub enum SerialRestoreError {
    /// The interrupt eventfd could not be duplicated.
    #[error("serial: duplicating its interrupt eventfd: {0}")]
    Eventfd(#[source] std::io::Error),
    /// More input bytes than the UART's receive FIFO holds.
    #[error("serial: the saved receive FIFO holds {0} bytes, the UART {UART_FIFO}")]
    FifoTooLong(usize),
    /// vm-superio could not raise the restored interrupt (the console output is
    /// discarded from then on).
    #[error("serial: raising the restored interrupt: {0:?}")]
    State(vm_superio::serial::Error<std::io::Error>),
}

/// The 16550A's receive FIFO.
const UART_FIFO: usize = 64;

impl SerialDevice {
    /// The state a snapshot keeps.
    pub fn save(&self) -> SerialSnapshot {
        let s = self.serial.state();
        SerialSnapshot {
            baud_divisor: [s.baud_divisor_low, s.baud_divisor_high],
            interrupt_enable: s.interrupt_enable,
            interrupt_identification: s.interrupt_identification,
            line_control: s.line_control,
            line_status: s.line_status,
            modem_control: s.modem_control,
            modem_status: s.modem_status,
            scratch: s.scratch,
            in_buffer: s.in_buffer,
        }
    }

    /// Takes `state` back, keeping this UART's interrupt and output.
    pub fn restore(&mut self, state: &SerialSnapshot) -> Result<(), SerialRestoreError> {
        let dup = || {
            self.serial
                .interrupt_evt()
                .event_fd()
                .try_clone()
                .map(EventFdTrigger::new)
                .map_err(SerialRestoreError::Eventfd)
        };
        if state.in_buffer.len() > UART_FIFO {
            return Err(SerialRestoreError::FifoTooLong(state.in_buffer.len()));
        }
        let (placeholder, trigger) = (dup()?, dup()?);
        let sink: ConsoleWriter = Box::new(std::io::sink());
        let old = std::mem::replace(&mut self.serial, Serial::new(placeholder, UartOut(sink)));
        let out = old.into_writer();
        let s = vm_superio::serial::SerialState {
            baud_divisor_low: state.baud_divisor[0],
            baud_divisor_high: state.baud_divisor[1],
            interrupt_enable: state.interrupt_enable,
            interrupt_identification: state.interrupt_identification,
            line_control: state.line_control,
            line_status: state.line_status,
            modem_control: state.modem_control,
            modem_status: state.modem_status,
            scratch: state.scratch,
            in_buffer: state.in_buffer.clone(),
        };
        match Serial::from_state(&s, trigger, NoEvents, out) {
            Ok(serial) => {
                self.serial = serial;
                Ok(())
            }
            Err(e) => Err(SerialRestoreError::State(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>, Arc<Mutex<usize>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            *self.1.lock().unwrap() += 1;
            Ok(())
        }
    }

    #[test]
    fn the_uart_does_not_flush_the_writer_per_byte() {
        let sink = Sink::default();
        let evt = EventFd::new(EFD_NONBLOCK).unwrap();
        let mut s = SerialDevice::new(EventFdTrigger::new(evt), Box::new(sink.clone()));
        for b in b"a line\n" {
            s.write(0, &[*b]);
        }
        assert_eq!(
            *sink.1.lock().unwrap(),
            0,
            "the writer decides when to write out"
        );
        s.flush();
        assert_eq!(*sink.1.lock().unwrap(), 1);
    }

    const IER: u64 = 1;
    const LSR: u64 = 5;

    #[test]
    fn output_reaches_the_writer() {
        let sink = Sink::default();
        let evt = EventFd::new(EFD_NONBLOCK).unwrap();
        let mut s = SerialDevice::new(EventFdTrigger::new(evt), Box::new(sink.clone()));
        for b in b"hi\n" {
            s.write(0, &[*b]);
        }
        assert_eq!(&*sink.0.lock().unwrap(), b"hi\n");
    }

    #[test]
    fn input_raises_the_interrupt_and_is_read_back() {
        let evt = EventFd::new(EFD_NONBLOCK).unwrap();
        let irq = evt.try_clone().unwrap();
        let mut s = SerialDevice::new(EventFdTrigger::new(evt), Box::new(Sink::default()));
        s.write(IER, &[0x01]); // enable "received data available"
        assert_eq!(s.enqueue_input(b"ok"), 2);
        assert_eq!(irq.read().unwrap(), 1);
        let mut lsr = [0u8];
        s.read(LSR, &mut lsr);
        assert_eq!(lsr[0] & 1, 1, "data ready");
        let mut b = [0u8];
        s.read(0, &mut b);
        assert_eq!(b[0], b'o');
        s.read(0, &mut b);
        assert_eq!(b[0], b'k');
    }

    #[test]
    fn wrong_width_accesses_are_ignored() {
        let sink = Sink::default();
        let mut s = SerialDevice::new(
            EventFdTrigger::new(EventFd::new(EFD_NONBLOCK).unwrap()),
            Box::new(sink.clone()),
        );
        s.write(0, &[1, 2]);
        let mut d = [0u8; 2];
        s.read(0, &mut d);
        assert_eq!(d, [0xff, 0xff]);
        assert!(sink.0.lock().unwrap().is_empty());
        assert!(s.input_capacity() > 0);
    }
}
