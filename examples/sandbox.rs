//! A sandbox-style use of the `vmm` library: boot a guest, wait for a marker on its
//! console, collect the output, enforce a timeout, tear the VM down, print timings.
//!
//! ```text
//! cargo run --release --example sandbox -- --kernel vmlinux --initrd initramfs.cpio \
//!     [--marker "MINIVMM-GUEST: user space reached"] [--timeout 30] [--cmdline ARGS] [--mem MiB]
//! ```
//!
//! Exit status: 0 when the marker appeared in time, 1 otherwise.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use vmm::{BootEvent, VmBuilder};

struct Args {
    kernel: PathBuf,
    initrd: Option<PathBuf>,
    cmdline: Option<String>,
    marker: String,
    timeout: Duration,
    mem_mib: u64,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        kernel: PathBuf::new(),
        initrd: None,
        cmdline: None,
        marker: "MINIVMM-GUEST: user space reached".into(),
        timeout: Duration::from_secs(30),
        mem_mib: 256,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--kernel" => a.kernel = value()?.into(),
            "--initrd" => a.initrd = Some(value()?.into()),
            "--cmdline" => a.cmdline = Some(value()?),
            "--marker" => a.marker = value()?,
            "--timeout" => {
                let secs: f64 = value()?.parse().map_err(|e| format!("--timeout: {e}"))?;
                a.timeout = Duration::from_secs_f64(secs);
            }
            "--mem" => a.mem_mib = value()?.parse().map_err(|e| format!("--mem: {e}"))?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    if a.kernel.as_os_str().is_empty() {
        return Err("usage: sandbox --kernel FILE [--initrd FILE] [--marker TEXT] [--timeout SECS] [--cmdline ARGS] [--mem MiB]".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sandbox: {e}");
            return ExitCode::from(2);
        }
    };
    let start = Instant::now();
    let mut builder = VmBuilder::new(&args.kernel)
        .memory_mib(args.mem_mib)
        .time_origin(start)
        .console_stream();
    if let Some(initrd) = &args.initrd {
        builder = builder.initrd(initrd);
    }
    if let Some(cmdline) = &args.cmdline {
        builder = builder.cmdline(cmdline);
    }
    let mut vm = match builder.start() {
        Ok(vm) => vm,
        Err(e) => {
            eprintln!("sandbox: cannot start the VM: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = start.elapsed();
    let Some(mut console) = vm.take_console() else {
        eprintln!("sandbox: the VM has no console stream");
        return ExitCode::FAILURE;
    };
    let found = console.wait_for(&args.marker, args.timeout);
    let at_marker = start.elapsed();
    // Tear down: the guest gets a second to power off on the ACPI power button.
    let exit = vm.shutdown(Duration::from_secs(1));
    let total = start.elapsed();

    println!("--- guest console ---");
    print!("{}", console.text());
    println!("--- sandbox ---");
    println!("VM started (built, vCPUs running): {:>9.3} ms", ms(started));
    match &found {
        Some(line) => println!(
            "marker seen:                       {:>9.3} ms  ({line})",
            ms(at_marker)
        ),
        None => println!("marker NOT seen within {:?}", args.timeout),
    }
    if let Some(t) = exit.timeline.get(BootEvent::BootTimer) {
        println!("guest boot-timer write:            {:>9.3} ms", ms(t));
    }
    println!(
        "torn down:                         {:>9.3} ms  ({})",
        ms(total),
        exit.reason
    );
    if found.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
