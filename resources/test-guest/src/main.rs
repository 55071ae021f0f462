//! minivmm's test guest: a freestanding x86_64 program loaded as an ELF kernel.
//!
//! minivmm enters it in 64-bit mode with RSI pointing at the zero page. It reads its
//! command line (`guest.test=NAME`), prints what it finds over the serial port, writes
//! the boot timer, and resets through the i8042. Tests compare its output exactly.
//!
//! Tests: `hello` (default), `mptable`, `acpi`, `echo`, `blk`, `net`, `net-tx-bench`,
//! `net-rx-bench`, `vsock`, `count`, `pwrbtn`, `poweroff`, `triplefault`, `emulfail`, `hang`.
#![no_std]
#![no_main]

mod hw;
mod net_test;
mod virtio;
mod virtio_blk;
mod virtio_net;
mod virtio_vsock;
mod vsock_test;

use core::fmt::Write;
use hw::Serial;

/// Zero page offsets (Linux boot protocol).
const BP_ACPI_RSDP_ADDR: usize = 0x70;
const BP_E820_ENTRIES: usize = 0x1e8;
const BP_CMD_LINE_PTR: usize = 0x228;
const BP_E820_TABLE: usize = 0x2d0;
const E820_RAM: u32 = 1;

core::arch::global_asm!(
    ".section .text.start, \"ax\"",
    ".global _start",
    "_start:",
    "    lea rsp, [rip + __stack_top]",
    "    mov rdi, rsi",
    "    call guest_main",
    "2:  cli",
    "    hlt",
    "    jmp 2b",
);

/// Reads a value of type T at a physical address (identity mapped).
fn peek<T: Copy>(addr: usize) -> T {
    // SAFETY: the VMM identity-maps the first 4 GiB; callers pass addresses in RAM
    // or device windows the VMM set up.
    unsafe { core::ptr::read_volatile(addr as *const T) }
}

fn cmdline(zero_page: usize) -> &'static [u8] {
    let ptr = peek::<u32>(zero_page + BP_CMD_LINE_PTR) as usize;
    let mut len = 0;
    while len < 2048 && peek::<u8>(ptr + len) != 0 {
        len += 1;
    }
    // SAFETY: `len` bytes from `ptr` are the NUL-terminated command line in RAM.
    unsafe { core::slice::from_raw_parts(ptr as *const u8, len) }
}

fn test_name(cmdline: &[u8]) -> &[u8] {
    const KEY: &[u8] = b"guest.test=";
    for word in cmdline.split(|b| *b == b' ') {
        if let Some(rest) = word.strip_prefix(KEY) {
            return rest;
        }
    }
    b"hello"
}

fn ram_kib(zero_page: usize) -> u64 {
    let n = peek::<u8>(zero_page + BP_E820_ENTRIES) as usize;
    let mut total = 0u64;
    for i in 0..n {
        let e = zero_page + BP_E820_TABLE + i * 20;
        if peek::<u32>(e + 16) == E820_RAM {
            total += peek::<u64>(e + 8);
        }
    }
    total / 1024
}

fn find_mp_floating_pointer() -> Option<usize> {
    [(0x9fc00usize, 0xa0000usize), (0xf0000, 0x100000)]
        .into_iter()
        .flat_map(|(start, end)| (start..end).step_by(16))
        .find(|a| peek::<[u8; 4]>(*a) == *b"_MP_")
}

fn report_mptable(out: &mut Serial) {
    let Some(fp) = find_mp_floating_pointer() else {
        let _ = writeln!(out, "mptable: not found");
        return;
    };
    let table = peek::<u32>(fp + 4) as usize;
    let count = peek::<u16>(table + 34) as usize;
    let mut entry = table + 44;
    let _ = write!(out, "mptable: apic_ids=");
    let mut cpus = 0;
    for _ in 0..count {
        match peek::<u8>(entry) {
            0 => {
                let _ = write!(
                    out,
                    "{}{}",
                    if cpus > 0 { "," } else { "" },
                    peek::<u8>(entry + 1)
                );
                cpus += 1;
                entry += 20;
            }
            _ => entry += 8,
        }
    }
    let _ = writeln!(out, " cpus={cpus}");
    let lapic_id = peek::<u32>(0xfee0_0020) >> 24;
    let cpuid_apic = hw::cpuid(1).1 >> 24;
    let _ = writeln!(out, "bsp: lapic_id={lapic_id} cpuid_apic_id={cpuid_apic}");
}

/// Walks RSDP -> XSDT and prints each table's signature.
fn report_acpi(out: &mut Serial, zero_page: usize) {
    let rsdp = peek::<u64>(zero_page + BP_ACPI_RSDP_ADDR) as usize;
    if rsdp == 0 || peek::<[u8; 8]>(rsdp) != *b"RSD PTR " {
        let _ = writeln!(out, "acpi: no RSDP");
        return;
    }
    let xsdt = peek::<u64>(rsdp + 24) as usize;
    let len = peek::<u32>(xsdt + 4) as usize;
    let _ = write!(out, "acpi: rsdp={rsdp:#x} xsdt=");
    let mut first = true;
    for entry in (xsdt + 36..xsdt + len).step_by(8) {
        let table = peek::<u64>(entry) as usize;
        let sig = peek::<[u8; 4]>(table);
        let _ = write!(
            out,
            "{}{}",
            if first { "" } else { "," },
            core::str::from_utf8(&sig).unwrap_or("????")
        );
        first = false;
    }
    let _ = writeln!(out);
}

#[repr(C, align(4096))]
struct Buffer([u8; 4096]);
static mut BUFFER: Buffer = Buffer([0; 4096]);

/// The byte written at offset `i` of the pattern, for sectors from `first`.
fn pattern(first: u64, i: usize) -> u8 {
    (i as u64 * 7 + first * 13) as u8 ^ 0x5a
}

/// Drives virtio-blk slot 0 (read-write) and slot 1 (read-only).
/// `blk-stream`: writes sector `n % 64` with the pattern of round `n` and reads it back,
/// round after round, printing every 100th ("blk-stream: 300 ok"); a read that differs
/// or a request the device does not answer ends it with a line saying which.
fn blk_stream(out: &mut Serial) {
    // SAFETY: the single-threaded guest's only buffer.
    let buf = unsafe { &mut *core::ptr::addr_of_mut!(BUFFER.0) };
    let Some(mut rw) = virtio_blk::BlkDevice::init(0) else {
        let _ = writeln!(out, "blk-stream: no device");
        return;
    };
    let data = &mut buf[..512];
    let mut n: u64 = 0;
    loop {
        let sector = n % 64;
        for (i, b) in data.iter_mut().enumerate() {
            *b = pattern(n, i);
        }
        if rw
            .request(virtio_blk::T_OUT, sector, data, false)
            .map(|r| r.0)
            != Some(0)
        {
            let _ = writeln!(out, "blk-stream: write {n} failed");
            return;
        }
        data.fill(0);
        if rw
            .request(virtio_blk::T_IN, sector, data, true)
            .map(|r| r.0)
            != Some(0)
        {
            let _ = writeln!(out, "blk-stream: read {n} failed");
            return;
        }
        if !data.iter().enumerate().all(|(i, b)| *b == pattern(n, i)) {
            let _ = writeln!(out, "blk-stream: read {n} DIFFERS");
            return;
        }
        n += 1;
        if n.is_multiple_of(100) {
            let _ = writeln!(out, "blk-stream: {n} ok");
        }
    }
}

fn blk(out: &mut Serial) {
    // SAFETY: the single-threaded guest's only buffer.
    let buf = unsafe { &mut *core::ptr::addr_of_mut!(BUFFER.0) };
    let Some(mut rw) = virtio_blk::BlkDevice::init(0) else {
        let _ = writeln!(out, "blk0: no device");
        return;
    };
    let show = |out: &mut Serial, what: &str, r: Option<(u8, u32)>| match r {
        Some((status, len)) => {
            let _ = writeln!(out, "blk0: {what} status={status} len={len}");
        }
        None => {
            let _ = writeln!(out, "blk0: {what} timed out");
        }
    };
    let _ = writeln!(out, "blk0: capacity={}", rw.capacity());
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern(2, i);
    }
    show(out, "write", rw.request(virtio_blk::T_OUT, 2, buf, false));
    show(
        out,
        "flush",
        rw.request(virtio_blk::T_FLUSH, 0, &mut [], false),
    );
    buf.fill(0);
    let r = rw.request(virtio_blk::T_IN, 2, buf, true);
    let same = buf.iter().enumerate().all(|(i, b)| *b == pattern(2, i));
    show(out, "read", r);
    let _ = writeln!(
        out,
        "blk0: read back {}",
        if same { "matches" } else { "DIFFERS" }
    );
    buf.fill(0);
    show(
        out,
        "get-id",
        rw.request(virtio_blk::T_GET_ID, 0, &mut buf[..20], true),
    );
    let id_len = buf[..20].iter().position(|b| *b == 0).unwrap_or(20);
    let _ = writeln!(
        out,
        "blk0: id={}",
        core::str::from_utf8(&buf[..id_len]).unwrap_or("?")
    );
    let end = rw.capacity();
    show(
        out,
        "beyond-end",
        rw.request(virtio_blk::T_IN, end, &mut buf[..512], true),
    );
    show(out, "unsupported", rw.request(99, 0, &mut [], false));
    let Some(mut ro) = virtio_blk::BlkDevice::init(1) else {
        let _ = writeln!(out, "blk1: no device");
        return;
    };
    buf.fill(0xee);
    match ro.request(virtio_blk::T_OUT, 0, &mut buf[..512], false) {
        Some((status, _)) => {
            let _ = writeln!(out, "blk1: read-only write status={status}");
        }
        None => {
            let _ = writeln!(out, "blk1: read-only write timed out");
        }
    }
}

/// `count`: prints "tick N" about every `count.ms=` milliseconds of TSC time (assuming
/// 1 GHz or more: the VMM only compares progress, not the rate), forever.
fn count(out: &mut Serial, cmdline: &[u8]) {
    let ms = param(cmdline, b"count.ms=").unwrap_or(20);
    let step = ms.saturating_mul(1_000_000);
    let mut next = hw::rdtsc().wrapping_add(step);
    let mut n = 0u64;
    loop {
        if hw::rdtsc() >= next {
            n += 1;
            let _ = writeln!(out, "tick {n}");
            next = hw::rdtsc().wrapping_add(step);
        }
        core::hint::spin_loop();
    }
}

/// `pwrbtn`: enables the ACPI power button, then waits until it is pressed and
/// powers off, as an ACPI-aware guest would; with `pwrbtn.ignore=1` it never acts on
/// the press (a guest that hangs in shutdown).
fn pwrbtn(out: &mut Serial, cmdline: &[u8]) -> ! {
    hw::enable_power_button();
    let _ = writeln!(out, "pwrbtn: armed");
    if param(cmdline, b"pwrbtn.ignore=") == Some(1) {
        hw::halt_forever();
    }
    while !hw::power_button_pressed() {
        core::hint::spin_loop();
    }
    let _ = writeln!(out, "pwrbtn: pressed, powering off");
    hw::acpi_poweroff()
}

/// The number after `key` on the command line.
/// Reads CMOS register `index`.
fn cmos(index: u8) -> u8 {
    hw::outb(0x70, index);
    hw::inb(0x71)
}

fn bcd(v: u8) -> u32 {
    u32::from(v >> 4) * 10 + u32::from(v & 0x0f)
}

/// `rtc`: prints the CMOS clock's date and time (BCD, 24-hour: the defaults), then
/// waits until register C shows an update-ended flag (the VMM sets it each second),
/// at most about 3 s of TSC time, and prints whether it came.
fn rtc(out: &mut Serial) {
    let _ = writeln!(
        out,
        "rtc: {}{:02}-{:02}-{:02} {:02}:{:02}:{:02}",
        bcd(cmos(0x32)),
        bcd(cmos(0x09)),
        bcd(cmos(0x08)),
        bcd(cmos(0x07)),
        bcd(cmos(0x04)),
        bcd(cmos(0x02)),
        bcd(cmos(0x00))
    );
    let _ = cmos(0x0c); // clear what is pending
    let start = hw::rdtsc();
    let mut uf = false;
    // Up to ~3 s at up to 3 GHz (longer on a slower TSC: only an upper bound).
    while hw::rdtsc().wrapping_sub(start) < 9_000_000_000 {
        if cmos(0x0c) & 0x10 != 0 {
            uf = true;
            break;
        }
        core::hint::spin_loop();
    }
    let _ = writeln!(out, "rtc: update-ended flag={}", u8::from(uf));
}

/// Writes minivmm's boot-timer device, unless `boot_timer=0` is on the command line
/// (a VMM whose boot page tables do not map it, such as Firecracker's first 1 GiB).
fn boot_timer(zero_page: usize) {
    if param(cmdline(zero_page), b"boot_timer=") != Some(0) {
        hw::signal_boot_timer();
    }
}

fn param(cmdline: &[u8], key: &[u8]) -> Option<u64> {
    let word = cmdline
        .split(|b| *b == b' ')
        .find_map(|w| w.strip_prefix(key))?;
    core::str::from_utf8(word).ok()?.parse().ok()
}

fn echo(out: &mut Serial) {
    let _ = writeln!(out, "echo: ready");
    let mut line = [0u8; 128];
    let mut len = 0;
    loop {
        let b = out.read_byte();
        if b == b'\n' || b == b'\r' || len == line.len() {
            break;
        }
        line[len] = b;
        len += 1;
    }
    let text = core::str::from_utf8(&line[..len]).unwrap_or("<not utf-8>");
    let _ = writeln!(out, "echo: {text}");
}

#[no_mangle]
extern "C" fn guest_main(zero_page: usize) -> ! {
    let mut out = Serial;
    let _ = writeln!(out, "minivmm-test-guest: hello");
    let _ = writeln!(out, "ram_kib={}", ram_kib(zero_page));
    match test_name(cmdline(zero_page)) {
        b"hello" => {}
        b"mptable" => report_mptable(&mut out),
        b"acpi" => report_acpi(&mut out, zero_page),
        b"echo" => echo(&mut out),
        b"blk" => blk(&mut out),
        b"blk-stream" => blk_stream(&mut out),
        b"net" => net_test::net(&mut out),
        b"net-tx-bench" => net_test::tx_bench(&mut out, cmdline(zero_page)),
        b"net-rx-bench" => net_test::rx_bench(&mut out),
        b"vsock" => vsock_test::vsock(&mut out),
        b"count" => count(&mut out, cmdline(zero_page)),
        b"rtc" => rtc(&mut out),
        b"pwrbtn" => pwrbtn(&mut out, cmdline(zero_page)),
        b"poweroff" => {
            boot_timer(zero_page);
            let _ = writeln!(out, "minivmm-test-guest: poweroff");
            hw::acpi_poweroff();
        }
        b"triplefault" => {
            let _ = writeln!(out, "triple fault next");
            hw::triple_fault();
        }
        b"emulfail" => {
            let _ = writeln!(out, "emulation failure next");
            hw::unemulatable_mmio_read();
        }
        b"hang" => {
            let _ = writeln!(out, "hanging");
            hw::halt_forever();
        }
        _ => {
            let _ = writeln!(out, "unknown test");
            hw::triple_fault();
        }
    }
    boot_timer(zero_page);
    let _ = writeln!(out, "minivmm-test-guest: reset");
    hw::reset()
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    let _ = writeln!(Serial, "minivmm-test-guest: panic");
    hw::triple_fault()
}
