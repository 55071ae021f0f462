//! The MC146818 CMOS real-time clock of a PC (index port 0x70, data port 0x71): the
//! guest reads the host's wall clock (UTC) from it at boot, so its date is right
//! without NTP, and its `rtc_cmos` driver finds a working clock at once. Without it an
//! unclaimed port reads 0xff, whose "update in progress" bit never clears: a
//! distribution kernel spun seconds in its RTC probe.
//!
//! What is modelled: the time and date registers (BCD or binary, 24- or 12-hour, as
//! register B selects), register A with "update in progress" always clear, register D
//! with "valid RAM and time" set, the century byte at 0x32 (named in the FADT), and the
//! rest of the 128 bytes as plain RAM. Not modelled: interrupts (register C reads 0;
//! periodic, alarm and update interrupts are never raised), and setting the clock (a
//! guest's writes to the time registers are ignored: it follows the host's).

use crate::bus::BusDevice;
use std::time::{SystemTime, UNIX_EPOCH};

/// Register indexes.
const SECONDS: u8 = 0x00;
const MINUTES: u8 = 0x02;
const HOURS: u8 = 0x04;
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
/// Register B: binary (not BCD) data mode.
const B_BINARY: u8 = 0x04;
/// Register D: valid RAM and time.
const D_VRT: u8 = 0x80;

/// Where the clock's time comes from (the host's, or a fixed one in tests).
pub type Clock = Box<dyn Fn() -> SystemTime + Send>;

/// The CMOS clock and its RAM.
pub struct Cmos {
    index: u8,
    ram: [u8; 128],
    clock: Clock,
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

fn calendar(t: SystemTime) -> CalendarTime {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // The C library's time type, inferred from gmtime_r's signature.
    let secs = secs.try_into().unwrap_or(0);
    // SAFETY: `tm` is a plain C struct for which all zeroes is a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: gmtime_r reads `secs` and writes only into `tm`, both live locals.
    unsafe { libc::gmtime_r(&secs, &mut tm) };
    let field = |v: libc::c_int| u8::try_from(v).unwrap_or(0);
    CalendarTime {
        sec: field(tm.tm_sec.min(59)),
        min: field(tm.tm_min),
        hour: field(tm.tm_hour),
        weekday: field(tm.tm_wday + 1),
        day: field(tm.tm_mday),
        month: field(tm.tm_mon + 1),
        year: u16::try_from(tm.tm_year + 1900).unwrap_or(1970),
    }
}

fn to_bcd(v: u8) -> u8 {
    ((v / 10) << 4) | (v % 10)
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
        Self {
            index: 0,
            ram,
            clock,
        }
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
            // No interrupt is ever pending.
            REG_C => 0,
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
            REG_B => self.ram[usize::from(REG_B)] = value,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// 2026-12-03 17:04:05 UTC, a Thursday.
    fn fixed() -> Cmos {
        let at = UNIX_EPOCH + Duration::from_secs(1_796_317_445);
        Cmos::with_clock(Box::new(move || at))
    }

    fn reg(c: &mut Cmos, index: u8) -> u8 {
        c.write(0, &[index]);
        let mut v = [0u8];
        c.read(1, &mut v);
        v[0]
    }

    #[test]
    fn reads_the_clock_in_bcd_24_hour_by_default() {
        let mut c = fixed();
        let got: Vec<u8> = [SECONDS, MINUTES, HOURS, WEEKDAY, DAY, MONTH, YEAR, CENTURY]
            .iter()
            .map(|&i| reg(&mut c, i))
            .collect();
        assert_eq!(got, vec![0x05, 0x04, 0x17, 0x05, 0x03, 0x12, 0x26, 0x20]);
    }

    #[test]
    fn binary_and_12_hour_modes() {
        let mut c = fixed();
        c.write(0, &[REG_B]);
        c.write(1, &[B_BINARY]);
        assert_eq!(reg(&mut c, HOURS), 5 | 0x80, "5 PM");
        assert_eq!(reg(&mut c, YEAR), 26);
        assert_eq!(reg(&mut c, MONTH), 12);
    }

    #[test]
    fn no_driver_waits_on_it() {
        let mut c = fixed();
        // An NMI-masking index write (bit 7) still selects register A.
        c.write(0, &[0x80 | REG_A]);
        let mut v = [0u8];
        c.read(1, &mut v);
        assert_eq!(v[0] & A_UIP, 0, "update never in progress");
        c.write(1, &[0xff]);
        assert_eq!(reg(&mut c, REG_A) & A_UIP, 0);
        assert_eq!(reg(&mut c, REG_D), D_VRT);
        assert_eq!(reg(&mut c, REG_C), 0);
    }

    #[test]
    fn ram_keeps_what_the_guest_writes_and_time_writes_are_ignored() {
        let mut c = fixed();
        c.write(0, &[0x40]);
        c.write(1, &[0x5a]);
        assert_eq!(reg(&mut c, 0x40), 0x5a);
        c.write(0, &[SECONDS]);
        c.write(1, &[0x59]);
        assert_eq!(reg(&mut c, SECONDS), 0x05);
        // Odd widths and offsets are answered, never a panic.
        let mut wide = [0u8; 4];
        c.read(0, &mut wide);
        assert_eq!(wide, [0xff; 4]);
        c.write(7, &[1, 2]);
    }

    #[test]
    fn the_host_clock_is_near_now() {
        let mut c = Cmos::new();
        c.write(0, &[REG_B]);
        c.write(1, &[B_24H | B_BINARY]);
        let century = u16::from(reg(&mut c, CENTURY));
        let year = century * 100 + u16::from(reg(&mut c, YEAR));
        assert!((2024..2200).contains(&year), "{year}");
    }
}
