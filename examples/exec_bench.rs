//! Measures the guest agent path with the `vmm` library (benches/exec.rs runs it in
//! the nested harness, where guest user space runs): start to the first exec
//! answered, the round trip of `true` (p50, p99), vsock throughput both ways through
//! exec's streams, and N commands at once. Prints `EXEC-BENCH key=value` lines.
//!
//! ```text
//! exec_bench --kernel vmlinux --initrd initramfs.cpio [--cmdline ARGS] [--runs 200]
//!     [--concurrent 32] [--mib 32] [--cpus 1] [--pause-check] [--absent-check] [--console-log FILE]
//! ```
//!
//! `--pause-check` instead moves 16 MiB from the guest while the VM is paused and
//! resumed three times, and prints whether they arrived intact. `--absent-check` kills
//! the agent (run it as a child of init: `minivmm.agent=on`) and checks that waiting
//! for it ends with `SandboxError::AgentTimeout` within the deadline.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use vmm::{ConsoleOutput, ExecRequest, VmBuilder, VmHandle, VsockConfig};

struct Args {
    kernel: String,
    initrd: String,
    cmdline: String,
    runs: usize,
    concurrent: usize,
    mib: usize,
    cpus: usize,
    pause_check: bool,
    absent_check: bool,
    console: Option<String>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        kernel: String::new(),
        initrd: String::new(),
        cmdline: "minivmm.action=agent".into(),
        runs: 200,
        concurrent: 32,
        mib: 32,
        cpus: 1,
        pause_check: false,
        absent_check: false,
        console: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--kernel" => a.kernel = value()?,
            "--initrd" => a.initrd = value()?,
            "--cmdline" => a.cmdline = value()?,
            "--runs" => a.runs = num(value()?)?.max(1),
            "--concurrent" => a.concurrent = num(value()?)?,
            "--mib" => a.mib = num(value()?)?,
            "--cpus" => a.cpus = num(value()?)?,
            "--pause-check" => a.pause_check = true,
            "--absent-check" => a.absent_check = true,
            "--console-log" => a.console = Some(value()?),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if a.kernel.is_empty() || a.initrd.is_empty() {
        return Err("usage: exec_bench --kernel FILE --initrd FILE [--runs N] ...".into());
    }
    Ok(a)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn bench(vm: &VmHandle, a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let t = || ExecRequest::new(["true"]);
    let mut rtt: Vec<f64> = (0..a.runs)
        .map(|_| {
            let start = Instant::now();
            vm.exec(&t()).map(|_| ms(start.elapsed()))
        })
        .collect::<Result<_, _>>()?;
    rtt.sort_by(f64::total_cmp);
    println!(
        "EXEC-BENCH rtt_ms_p50={:.3} rtt_ms_p99={:.3} runs={}",
        percentile(&rtt, 0.5),
        percentile(&rtt, 0.99),
        a.runs
    );
    let bytes = a.mib << 20;
    // Guest to host: a command's stdout.
    let start = Instant::now();
    let out = vm
        .sandbox()?
        .configure(|c| c.with_output_limit(bytes as u64 + 1))
        .exec(&ExecRequest::new([
            "head",
            "-c",
            &bytes.to_string(),
            "/dev/zero",
        ]))?;
    let down = bytes as f64 / 1048576.0 / start.elapsed().as_secs_f64();
    if out.stdout.len() != bytes {
        return Err(format!("got {} bytes of stdout", out.stdout.len()).into());
    }
    // Host to guest: a command's stdin.
    let start = Instant::now();
    let mut job = vm.spawn(&ExecRequest::new(["wc", "-c"]).stdin(true))?;
    let mut stdin = job.stdin.take().ok_or("no stdin")?;
    let chunk = vec![7u8; 256 * 1024];
    for _ in 0..bytes / chunk.len() {
        stdin.write_all(&chunk)?;
    }
    stdin.close()?;
    let mut counted = String::new();
    job.stdout
        .take()
        .ok_or("no stdout")?
        .read_to_string(&mut counted)?;
    job.wait()?;
    let up = bytes as f64 / 1048576.0 / start.elapsed().as_secs_f64();
    if counted.trim() != (bytes / chunk.len() * chunk.len()).to_string() {
        return Err(format!("the guest counted {counted:?}").into());
    }
    println!(
        "EXEC-BENCH vsock_mib_s_guest_to_host={down:.1} vsock_mib_s_host_to_guest={up:.1} mib={}",
        a.mib
    );
    let start = Instant::now();
    let sandbox = vm.sandbox()?;
    let ok = std::thread::scope(|s| {
        let jobs: Vec<_> = (0..a.concurrent)
            .map(|i| {
                let sandbox = sandbox.clone();
                s.spawn(move || {
                    let text = format!("n{i}");
                    sandbox
                        .exec(&ExecRequest::new(["echo", text.as_str()]))
                        .is_ok_and(|o| o.stdout == format!("{text}\n").into_bytes())
                })
            })
            .collect();
        jobs.into_iter()
            .map(|j| j.join().unwrap_or(false))
            .filter(|ok| *ok)
            .count()
    });
    println!(
        "EXEC-BENCH concurrent={} concurrent_ok={ok} concurrent_ms={:.1}",
        a.concurrent,
        ms(start.elapsed())
    );
    Ok(())
}

/// 16 MiB of random bytes from the guest while the VM is paused and resumed three
/// times; the bytes go back as a file and the guest compares them with its copy.
fn pause_check(vm: &VmHandle) -> Result<(), Box<dyn std::error::Error>> {
    let req = ExecRequest::new(["sh", "-c", "head -c 16777216 /dev/urandom | tee /tmp/sent"]);
    let mut job = vm.spawn(&req)?;
    let mut out = job.stdout.take().ok_or("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        out.read_to_end(&mut got).map(|_| got)
    });
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(200));
        vm.pause()?;
        std::thread::sleep(Duration::from_millis(200));
        vm.resume()?;
    }
    // The pauses must have come while the bytes were still flowing.
    let mid_stream = !reader.is_finished();
    let got = match reader.join().map_err(|_| "reader panicked")? {
        Ok(got) => got,
        Err(e) => {
            // The session's own error says why the stream broke.
            let why = job
                .wait()
                .map(|x| format!("{x:?}"))
                .unwrap_or_else(|e| vmm::error_chain(&e));
            return Err(format!("reading the command's output: {e} ({why})").into());
        }
    };
    let status = job.wait()?.status;
    let command_ok = status.success();
    vm.sandbox()?
        .configure(|c| c.with_file_limit(32 << 20))
        .write_file("/tmp/back", 0o600, &got)?;
    let cmp = vm.exec(&ExecRequest::new(["cmp", "/tmp/sent", "/tmp/back"]))?;
    let verdict = match (cmp.status.success() && got.len() == 16 << 20, command_ok) {
        _ if !mid_stream => "too-fast-to-pause-mid-stream",
        (true, true) => "intact",
        _ => "broken",
    };
    println!("EXEC-BENCH pause_check={verdict} bytes={}", got.len());
    Ok(())
}

/// The agent goes away (a child of init here: `minivmm.agent=on`): waiting for it
/// must end with AgentTimeout inside its deadline, the VM still running.
fn absent_check(vm: &VmHandle) -> Result<(), Box<dyn std::error::Error>> {
    let kill = "(sleep 0.5; kill $(pidof minivmm-agent)) > /dev/null 2>&1 &";
    vm.exec(&ExecRequest::new(["sh", "-c", kill]))?;
    std::thread::sleep(Duration::from_millis(1500));
    let start = Instant::now();
    let absent = match vm.wait_for_agent(Duration::from_secs(3)) {
        Err(vmm::SandboxError::AgentTimeout(_)) if vm.is_running() => "agent-timeout",
        Err(vmm::SandboxError::AgentTimeout(_)) => "agent-timeout-but-vm-gone",
        Err(_) => "other-error",
        Ok(_) => "answered",
    };
    println!(
        "EXEC-BENCH absent={absent} absent_ms={:.0}",
        ms(start.elapsed())
    );
    Ok(())
}

fn main() -> ExitCode {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("exec_bench: {e}");
            return ExitCode::from(2);
        }
    };
    let start = Instant::now();
    let socket = std::env::temp_dir().join(format!("exec-bench-{}.sock", std::process::id()));
    let vm = VmBuilder::new(&a.kernel)
        .initrd(&a.initrd)
        .cmdline(&a.cmdline)
        .memory_mib(256)
        .vcpus(a.cpus)
        .time_origin(start)
        .console(match &a.console {
            Some(path) => ConsoleOutput::File(path.into()),
            None => ConsoleOutput::Null,
        })
        .vsock(VsockConfig::new(&socket))
        .start();
    let vm = match vm {
        Ok(vm) => vm,
        Err(e) => {
            eprintln!("exec_bench: cannot start the VM: {e}");
            return ExitCode::FAILURE;
        }
    };
    let first = vm
        .wait_for_agent(Duration::from_secs(120))
        .and_then(|_| vm.exec(&ExecRequest::new(["true"])));
    if let Err(e) = first {
        let exit = vm.shutdown(Duration::from_secs(1));
        eprintln!("exec_bench: {e} (the VM's end: {})", exit.reason);
        return ExitCode::FAILURE;
    }
    println!(
        "EXEC-BENCH start_to_first_exec_ms={:.1}",
        ms(start.elapsed())
    );
    let result = match (a.pause_check, a.absent_check) {
        (false, false) => bench(&vm, &a),
        (pause, absent) => (if pause { pause_check(&vm) } else { Ok(()) }).and_then(|()| {
            if absent {
                absent_check(&vm)
            } else {
                Ok(())
            }
        }),
    };
    let _ = vm.sandbox().map(|s| s.power_off());
    let exit = vm.shutdown(Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "exec_bench: {} (the VM's end: {})",
                vmm::error_chain(e.as_ref()),
                exit.reason
            );
            ExitCode::FAILURE
        }
    }
}
