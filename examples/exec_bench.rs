//! Measures the guest agent path with the `vmm` library (benches/exec.rs runs it in
//! the nested harness, where guest user space runs): start to the first exec
//! answered, the round trip of `true` (p50, p99), vsock throughput both ways through
//! exec's streams, and N commands at once. Prints `EXEC-BENCH key=value` lines.
//!
//! ```text
//! exec_bench --kernel vmlinux --initrd initramfs.cpio [--cmdline ARGS] [--runs 200]
//!     [--concurrent 32] [--mib 32] [--cpus 2]
//! ```

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
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        kernel: String::new(),
        initrd: String::new(),
        cmdline: "minivmm.action=agent".into(),
        runs: 200,
        concurrent: 32,
        mib: 32,
        cpus: 2,
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
        .console(ConsoleOutput::Null)
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
        eprintln!("exec_bench: {e}");
        return ExitCode::FAILURE;
    }
    println!(
        "EXEC-BENCH start_to_first_exec_ms={:.1}",
        ms(start.elapsed())
    );
    let result = bench(&vm, &a);
    let _ = vm.sandbox().map(|s| s.power_off());
    let _ = vm.shutdown(Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("exec_bench: {e}");
            ExitCode::FAILURE
        }
    }
}
