//! The MC146818 CMOS real-time clock of a PC (index port 0x70, data port 0x71): the
//! guest reads the host's wall clock (UTC) from it at boot, so its date is right
//! without NTP, and its `rtc_cmos` driver finds a working clock at once. Without it an
//! unclaimed port reads 0xff, whose "update in progress" bit never clears: a
//! distribution kernel spun seconds in its RTC probe.
//!
//! What is modelled: the time and date registers (BCD or binary, 24- or 12-hour, as
//! register B selects), register A with "update in progress" always clear, register D
//! with "valid RAM and time" set, the century byte at 0x32 (named in the FADT), the
//! rest of the 128 bytes as plain RAM, and IRQ 8: the update-ended, alarm and periodic
//! flags of register C (cleared by reading it), each raising the interrupt when
//! register B enables it. The VMM polls the clock ([`Cmos::poll`]) from its event loop,
//! at least every 50 ms: update and alarm interrupts come within that of the second
//! boundary, and periodic ones faster than that are coalesced (one per poll, as a PC
//! emulator under load does). Not modelled: setting the clock (a guest's writes to the
//! time registers are ignored: it follows the host's).

use crate::bus::BusDevice;
use crate::trigger::EventFdTrigger;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vm_superio::Trigger;

/// Register indexes.
const SECONDS: u8 = 0x00;
const SECONDS_ALARM: u8 = 0x01;
const MINUTES: u8 = 0x02;
const MINUTES_ALARM: u8 = 0x03;
const HOURS: u8 = 0x04;
const HOURS_ALARM: u8 = 0x05;
const WEEKDAY: u8 = 0x06;
const DAY: u8 = 0x07;
const MONTH: u8 = 0x08;
const YEAR: u8 = 0x09;
const REG_A: u8 = 0x0a;
const REG_B: u8 = 0x0b;
const REG_C: u8 = 0x0c;
const REG_D: u8 = 0x0d;
/// Index of the century byte (the FADT's `century` field names it).
pub const CENTURY: u8 = 0x32;

/// Register A: update in progress.
const A_UIP: u8 = 0x80;
/// Register A at reset: 32.768 kHz time base, 1024 Hz periodic rate.
const A_DEFAULT: u8 = 0x26;
/// Register B: 24-hour mode.
const B_24H: u8 = 0x02;
/// Register B: update-ended interrupt enable.
const B_UIE: u8 = 0x10;
/// Register B: alarm interrupt enable.
const B_AIE: u8 = 0x20;
/// Register B: periodic interrupt enable.
const B_PIE: u8 = 0x40;
/// Register C: an enabled interrupt is pending.
const C_IRQF: u8 = 0x80;
/// Register C: periodic flag.
const C_PF: u8 = 0x40;
/// Register C: alarm flag.
const C_AF: u8 = 0x20;
/// Register C: update-ended flag.
const C_UF: u8 = 0x10;
/// An alarm byte with its top two bits set matches any value.
const ALARM_ANY: u8 = 0xc0;
/// Register B: binary (not BCD) data mode.
const B_BINARY: u8 = 0x04;
/// Register D: valid RAM and time.
const D_VRT: u8 = 0x80;

/// Where the clock's time comes from (the host's, or a fixed one in tests).
pub type Clock = Box<dyn Fn() -> SystemTime + Send>;

/// The CMOS clock, its RAM and its interrupt.
pub struct Cmos {
    index: u8,
    ram: [u8; 128],
    clock: Clock,
    /// IRQ 8, when the VMM wired it.
    irq: Option<EventFdTrigger>,
    /// Register C: pending flags.
    flags: u8,
    /// The UNIX second of the last poll (update and alarm events happen once a second).
    last_second: u64,
    /// When the last periodic event was due.
    last_periodic: SystemTime,
}

/// Broken-down UTC time.
struct CalendarTime {
    sec: u8,
    min: u8,
    hour: u8,
    weekday: u8,
    day: u8,
    month: u8,
    year: u16,
}

/// The UTC calendar time of `t` (the epoch for a time before it or past year 9999).
/// Pure arithmetic: no C library call, which on glibc opens /etc/localtime the first
/// time, and that the threads' seccomp filters do not allow.
fn calendar(t: SystemTime) -> CalendarTime {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .unwrap_or(0);
    let t =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    CalendarTime {
        sec: t.second(),
        min: t.minute(),
        hour: t.hour(),
        weekday: t.weekday().number_from_sunday(),
        day: t.day(),
        month: u8::from(t.month()),
        year: u16::try_from(t.year()).unwrap_or(1970),
    }
}

fn to_bcd(v: u8) -> u8 {
    ((v / 10) << 4) | (v % 10)
}

fn from_bcd(v: u8) -> u8 {
    (v >> 4) * 10 + (v & 0x0f)
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The periodic interrupt's period for register A's rate bits (0: off; 1 and 2 are
/// 3.90625 ms and 7.8125 ms on a 32.768 kHz base, as 8 and 9 are).
fn periodic_period(reg_a: u8) -> Option<Duration> {
    let rate = u32::from(reg_a & 0x0f);
    let rate = match rate {
        0 => return None,
        1 | 2 => rate + 7,
        r => r,
    };
    // 32768 Hz >> (rate - 1).
    Some(Duration::from_nanos(
        (1_000_000_000u64 << (rate - 1)) / 32_768,
    ))
}

impl Cmos {
    /// A clock that reads the host's wall clock.
    pub fn new() -> Self {
        Self::with_clock(Box::new(SystemTime::now))
    }

    /// A clock that reads `clock`.
    pub fn with_clock(clock: Clock) -> Self {
        let mut ram = [0u8; 128];
        ram[usize::from(REG_A)] = A_DEFAULT;
        ram[usize::from(REG_B)] = B_24H;
        ram[usize::from(REG_D)] = D_VRT;
        let now = clock();
        Self {
            index: 0,
            ram,
            clock,
            irq: None,
            flags: 0,
            last_second: unix_seconds(now),
            last_periodic: now,
        }
    }

    /// Raises IRQ 8 through `irq` when an enabled event happens.
    pub fn with_irq(mut self, irq: EventFdTrigger) -> Self {
        self.irq = Some(irq);
        self
    }

    /// Catches up with the clock: sets the update-ended flag when a second has passed,
    /// the alarm flag when the time matches the alarm, the periodic flag when a period
    /// (register A's rate) has passed, and raises IRQ 8 once if any of them is enabled
    /// in register B.
    pub fn poll(&mut self) {
        let now = (self.clock)();
        let b = self.ram[usize::from(REG_B)];
        let mut new = 0;
        let second = unix_seconds(now);
        if second != self.last_second {
            self.last_second = second;
            new |= C_UF;
            if self.alarm_matches(&calendar(now)) {
                new |= C_AF;
            }
        }
        match periodic_period(self.ram[usize::from(REG_A)]) {
            Some(period) if b & B_PIE != 0 => {
                if now.duration_since(self.last_periodic).unwrap_or_default() >= period {
                    self.last_periodic = now;
                    new |= C_PF;
                }
            }
            _ => self.last_periodic = now,
        }
        self.raise(new, b);
    }

    /// Adds `new` flags to register C and interrupts if one of them is enabled.
    fn raise(&mut self, new: u8, b: u8) {
        self.flags |= new;
        let enabled = (new & C_UF != 0 && b & B_UIE != 0)
            || (new & C_AF != 0 && b & B_AIE != 0)
            || (new & C_PF != 0 && b & B_PIE != 0);
        if enabled {
            self.flags |= C_IRQF;
            if let Some(irq) = &self.irq {
                if let Err(e) = irq.trigger() {
                    log::error!("cmos: cannot raise IRQ 8: {e}");
                }
            }
        }
    }

    fn alarm_matches(&self, t: &CalendarTime) -> bool {
        let b = self.ram[usize::from(REG_B)];
        let decode = |v: u8| if b & B_BINARY != 0 { v } else { from_bcd(v) };
        let hour = if b & B_24H != 0 {
            t.hour
        } else {
            // The alarm byte in 12-hour mode: 1..12 with bit 7 for PM.
            let pm = if t.hour >= 12 { 0x80 } else { 0 };
            let h12 = match t.hour % 12 {
                0 => 12,
                h => h,
            };
            h12 | pm
        };
        [
            (SECONDS_ALARM, t.sec),
            (MINUTES_ALARM, t.min),
            (HOURS_ALARM, hour),
        ]
        .iter()
        .all(|&(index, now)| {
            let alarm = self.ram[usize::from(index)];
            if alarm & ALARM_ANY == ALARM_ANY {
                return true;
            }
            if index == HOURS_ALARM && b & B_24H == 0 {
                return (decode(alarm & 0x7f) | (alarm & 0x80)) == now;
            }
            decode(alarm) == now
        })
    }

    fn read_register(&mut self, index: u8) -> u8 {
        let b = self.ram[usize::from(REG_B)];
        let encode = |v: u8| if b & B_BINARY != 0 { v } else { to_bcd(v) };
        let now = || calendar((self.clock)());
        match index {
            SECONDS => encode(now().sec),
            MINUTES => encode(now().min),
            HOURS => {
                let hour = now().hour;
                if b & B_24H != 0 {
                    encode(hour)
                } else {
                    // 12-hour mode: 12, 1..11, with bit 7 for PM.
                    let pm = if hour >= 12 { 0x80 } else { 0 };
                    let h12 = match hour % 12 {
                        0 => 12,
                        h => h,
                    };
                    encode(h12) | pm
                }
            }
            WEEKDAY => encode(now().weekday),
            DAY => encode(now().day),
            MONTH => encode(now().month),
            YEAR => encode((now().year % 100) as u8),
            CENTURY => encode((now().year / 100) as u8),
            REG_A => self.ram[usize::from(REG_A)] & !A_UIP,
            // Reading register C acknowledges the interrupt: the flags clear.
            REG_C => {
                self.poll();
                std::mem::take(&mut self.flags)
            }
            REG_D => D_VRT,
            other => self.ram[usize::from(other & 0x7f)],
        }
    }

    fn write_register(&mut self, index: u8, value: u8) {
        match index {
            SECONDS | MINUTES | HOURS | WEEKDAY | DAY | MONTH | YEAR | CENTURY => {
                log::debug!("cmos: ignored a write of {value:#x} to time register {index:#x}");
            }
            REG_A => self.ram[usize::from(REG_A)] = value & !A_UIP,
            REG_B => {
                self.ram[usize::from(REG_B)] = value;
                // A flag already pending interrupts as soon as its enable is set.
                let pending = self.flags & (C_UF | C_AF | C_PF);
                if pending != 0 && self.flags & C_IRQF == 0 {
                    self.raise(pending, value);
                }
            }
            REG_C | REG_D => {}
            other => self.ram[usize::from(other & 0x7f)] = value,
        }
    }
}

impl Default for Cmos {
    fn default() -> Self {
        Self::new()
    }
}

impl BusDevice for Cmos {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match (offset, data) {
            (0, [value]) => *value = self.index,
            (1, [value]) => *value = self.read_register(self.index),
            (_, data) => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        match (offset, data) {
            // Bit 7 of the index port masks NMIs on a PC; here it is only dropped.
            (0, [value]) => self.index = value & 0x7f,
            (1, [value]) => self.write_register(self.index, *value),
            _ => log::debug!("cmos: ignored {}-byte write at offset {offset}", data.len()),
        }
    }
}

/// The clock's guest-visible state, for snapshots (the time itself is the host's).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CmosState {
    /// The selected register.
    pub index: u8,
    /// The 128 bytes of registers and RAM.
    pub ram: Vec<u8>,
    /// Register C's pending flags.
    pub flags: u8,
}

impl Cmos {
    /// The state a snapshot keeps.
    pub fn save(&self) -> CmosState {
        CmosState {
            index: self.index,
            ram: self.ram.to_vec(),
            flags: self.flags,
        }
    }

    /// Takes `state` back; update, alarm and periodic events count from now.
    pub fn restore(&mut self, state: &CmosState) {
        self.index = state.index & 0x7f;
        let n = state.ram.len().min(self.ram.len());
        self.ram[..n].copy_from_slice(&state.ram[..n]);
        self.flags = state.flags;
        let now = (self.clock)();
        self.last_second = unix_seconds(now);
        self.last_periodic = now;
    }
}

#[cfg(test)]
mod tests;
