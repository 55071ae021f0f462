use super::*;
use std::sync::{Arc, Mutex};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

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

/// A clock the test moves, and a CMOS reading it with its IRQ on an eventfd.
fn ticking() -> (Cmos, Arc<Mutex<SystemTime>>, EventFd) {
    let now = Arc::new(Mutex::new(UNIX_EPOCH + Duration::from_secs(1_796_317_445)));
    let clock = now.clone();
    let irq = EventFd::new(EFD_NONBLOCK).unwrap();
    let cmos = Cmos::with_clock(Box::new(move || *clock.lock().unwrap()))
        .with_irq(EventFdTrigger::new(irq.try_clone().unwrap()));
    (cmos, now, irq)
}

fn advance(now: &Arc<Mutex<SystemTime>>, by: Duration) {
    *now.lock().unwrap() += by;
}

fn set(c: &mut Cmos, index: u8, value: u8) {
    c.write(0, &[index]);
    c.write(1, &[value]);
}

#[test]
fn update_ended_interrupt_once_a_second_when_enabled() {
    let (mut c, now, irq) = ticking();
    c.poll();
    assert!(irq.read().is_err(), "no interrupt within the same second");
    // Disabled: the flag is set (a polling driver sees it), no interrupt.
    advance(&now, Duration::from_secs(1));
    c.poll();
    assert!(irq.read().is_err());
    assert_eq!(reg(&mut c, REG_C), C_UF);
    assert_eq!(reg(&mut c, REG_C), 0, "reading C clears it");
    set(&mut c, REG_B, B_24H | B_UIE);
    advance(&now, Duration::from_millis(1500));
    c.poll();
    assert_eq!(irq.read().unwrap(), 1);
    c.poll();
    assert!(irq.read().is_err(), "once per second");
    assert_eq!(reg(&mut c, REG_C), C_IRQF | C_UF);
}

#[test]
fn alarm_interrupt_when_the_time_matches() {
    let (mut c, now, irq) = ticking();
    // The fixed time is 17:04:05; alarm at 17:04:07 (BCD), any-hour wildcard tried too.
    set(&mut c, SECONDS_ALARM, 0x07);
    set(&mut c, MINUTES_ALARM, 0x04);
    set(&mut c, HOURS_ALARM, ALARM_ANY);
    set(&mut c, REG_B, B_24H | B_AIE);
    advance(&now, Duration::from_secs(1));
    c.poll();
    assert!(irq.read().is_err(), "17:04:06 is not the alarm");
    assert_eq!(reg(&mut c, REG_C), C_UF, "the update flag alone");
    advance(&now, Duration::from_secs(1));
    c.poll();
    assert_eq!(irq.read().unwrap(), 1);
    assert_eq!(reg(&mut c, REG_C), C_IRQF | C_AF | C_UF);
}

#[test]
fn periodic_interrupts_at_the_rate_coalesced_per_poll() {
    let (mut c, now, irq) = ticking();
    assert_eq!(periodic_period(0x26), Some(Duration::from_nanos(976_562)));
    assert_eq!(periodic_period(0x2f), Some(Duration::from_millis(500)));
    assert_eq!(periodic_period(0x20), None);
    set(&mut c, REG_A, 0x2f); // 2 Hz
    set(&mut c, REG_B, B_24H | B_PIE);
    advance(&now, Duration::from_millis(200));
    c.poll();
    assert!(irq.read().is_err(), "before the period");
    advance(&now, Duration::from_millis(400));
    c.poll();
    assert_eq!(irq.read().unwrap(), 1);
    assert_eq!(reg(&mut c, REG_C) & (C_IRQF | C_PF), C_IRQF | C_PF);
}

#[test]
fn enabling_an_interrupt_with_its_flag_pending_raises_it() {
    let (mut c, now, irq) = ticking();
    advance(&now, Duration::from_secs(1));
    c.poll();
    assert!(irq.read().is_err());
    set(&mut c, REG_B, B_24H | B_UIE);
    assert_eq!(irq.read().unwrap(), 1);
}
