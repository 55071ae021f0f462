//! A sandbox-style use of the `vmm` library: boot a guest whose init runs the guest
//! agent, run one command in it over vsock, print the command's output, tear the VM
//! down, print timings. Exits with the command's status (128+N for a signal).
//!
//! ```text
//! cargo run --release --example sandbox -- --kernel vmlinux --initrd initramfs.cpio \
//!     [--cmdline 'minivmm.action=agent'] [--mem MiB] [--cpus N] [--timeout SECS] -- CMD ARGS...
//! ```
//!
//! The initramfs of resources/guest/build-initramfs.sh (with the agent in
//! $GUEST_TOOLS) and `minivmm.action=agent` on the command line start the agent.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use vmm::{BootEvent, ConsoleOutput, ExecRequest, VmBuilder, VsockConfig};

struct Args {
    kernel: PathBuf,
    initrd: Option<PathBuf>,
    cmdline: String,
    timeout: Duration,
    mem_mib: u64,
    cpus: usize,
    command: Vec<String>,
}

const USAGE: &str = "usage: sandbox --kernel FILE [--initrd FILE] [--cmdline ARGS] [--mem MiB] \
                     [--cpus N] [--timeout SECS] -- CMD ARGS...";

fn args() -> Result<Args, String> {
    let mut a = Args {
        kernel: PathBuf::new(),
        initrd: None,
        cmdline: "minivmm.action=agent".into(),
        timeout: Duration::from_secs(60),
        mem_mib: 256,
        cpus: 1,
        command: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--kernel" => a.kernel = value()?.into(),
            "--initrd" => a.initrd = Some(value()?.into()),
            "--cmdline" => a.cmdline = value()?,
            "--timeout" => {
                let secs: f64 = value()?.parse().map_err(|e| format!("--timeout: {e}"))?;
                a.timeout = Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())?;
            }
            "--mem" => a.mem_mib = value()?.parse().map_err(|e| format!("--mem: {e}"))?,
            "--cpus" => a.cpus = value()?.parse().map_err(|e| format!("--cpus: {e}"))?,
            "--" => a.command = it.by_ref().collect(),
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    if a.kernel.as_os_str().is_empty() || a.command.is_empty() {
        return Err(USAGE.into());
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
    let socket = std::env::temp_dir().join(format!("sandbox-{}.sock", std::process::id()));
    let mut builder = VmBuilder::new(&args.kernel)
        .memory_mib(args.mem_mib)
        .vcpus(args.cpus)
        .time_origin(start)
        .cmdline(&args.cmdline)
        .console(ConsoleOutput::Null)
        .vsock(VsockConfig::new(&socket));
    if let Some(initrd) = &args.initrd {
        builder = builder.initrd(initrd);
    }
    let vm = match builder.start() {
        Ok(vm) => vm,
        Err(e) => {
            eprintln!("sandbox: cannot start the VM: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = start.elapsed();
    let result = vm
        .wait_for_agent(args.timeout)
        .map(|v| (v, start.elapsed()))
        .and_then(|(v, ready)| {
            let out = vm.exec(&ExecRequest::new(args.command.clone()))?;
            Ok((v, ready, out, start.elapsed()))
        });
    // Tear down: the guest gets a second to power off on the ACPI power button.
    let exit = vm.shutdown(Duration::from_secs(1));
    let total = start.elapsed();
    let code = match &result {
        Ok((version, ready, out, answered)) => {
            print!("{}", String::from_utf8_lossy(&out.stdout));
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
            println!("--- sandbox ---");
            println!("VM started (built, vCPUs running): {:>9.3} ms", ms(started));
            println!(
                "agent answered:                    {:>9.3} ms  ({})",
                ms(*ready),
                version.agent
            );
            println!(
                "command done:                      {:>9.3} ms  ({:?})",
                ms(*answered),
                out.status
            );
            out.status.shell_code().clamp(0, 255) as u8
        }
        Err(e) => {
            eprintln!("sandbox: {e}");
            1
        }
    };
    if let Some(t) = exit.timeline.get(BootEvent::BootTimer) {
        println!("guest boot-timer write:            {:>9.3} ms", ms(t));
    }
    println!(
        "torn down:                         {:>9.3} ms  ({})",
        ms(total),
        exit.reason
    );
    ExitCode::from(code)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
