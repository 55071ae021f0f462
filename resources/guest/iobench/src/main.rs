//! Guest-side random 4 KiB I/O on a block device, bypassing the page cache:
//! `iobench DEVICE SECONDS` reads 4 KiB blocks at random offsets for SECONDS, then
//! writes them for SECONDS, one request at a time, and prints one line:
//! `MINIVMM-GUEST: rand 4KiB direct read=N IOPS write=M IOPS` (the nested benches
//! compare VMMs with it; busybox has no such tool).

use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::time::{Duration, Instant};

const BLOCK: usize = 4096;

/// A 4 KiB buffer aligned for O_DIRECT.
#[repr(C, align(4096))]
struct Block([u8; BLOCK]);

/// xorshift64*: enough to spread offsets.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

fn run(device: &str, seconds: u64) -> Result<(f64, f64), String> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(device)
        .map_err(|e| format!("{device}: {e}"))?;
    let size = std::fs::metadata(device)
        .map(|m| m.len())
        .ok()
        .filter(|&n| n > 0)
        .or_else(|| {
            use std::io::Seek;
            (&file).seek(std::io::SeekFrom::End(0)).ok()
        })
        .ok_or(format!("{device}: unknown size"))?;
    let blocks = size / BLOCK as u64;
    if blocks == 0 {
        return Err(format!("{device}: smaller than one block"));
    }
    let mut buf = Box::new(Block([0x5a; BLOCK]));
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut rates = [0.0; 2];
    for (phase, rate) in rates.iter_mut().enumerate() {
        let start = Instant::now();
        let mut done = 0u64;
        while start.elapsed() < Duration::from_secs(seconds) {
            let offset = next(&mut state) % blocks * BLOCK as u64;
            let n = if phase == 0 {
                file.read_at(&mut buf.0, offset)
            } else {
                file.write_at(&buf.0, offset)
            }
            .map_err(|e| format!("{device} at {offset}: {e}"))?;
            if n != BLOCK {
                return Err(format!("{device} at {offset}: short transfer of {n} bytes"));
            }
            done += 1;
        }
        *rate = done as f64 / start.elapsed().as_secs_f64();
    }
    Ok((rates[0], rates[1]))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(device), Some(seconds)) = (args.get(1), args.get(2).and_then(|s| s.parse().ok()))
    else {
        eprintln!("usage: iobench DEVICE SECONDS");
        std::process::exit(2);
    };
    match run(device, seconds) {
        Ok((read, write)) => {
            println!("MINIVMM-GUEST: rand 4KiB direct read={read:.0} IOPS write={write:.0} IOPS")
        }
        Err(e) => {
            println!("MINIVMM-GUEST: rand 4KiB direct failed: {e}");
            std::process::exit(1);
        }
    }
}
