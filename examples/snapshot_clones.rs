//! Snapshot and clones through the `vmm` library: boot a guest whose init runs the
//! agent, leave a file in its tmpfs, pause it and snapshot it, then restore several
//! clones at once (each with its own vsock socket) and run commands in each. Prints
//! one `SNAPSHOT:` line per step, with timings; exits non-zero if a step failed.
//!
//! With `--taps`, the template has a virtio-net interface (on a tap it creates) and each
//! clone gets its own tap in its place (`snapcN`, created); clone 0's tap is given
//! 10.0.2.1/24 on this host and its guest 10.0.2.15, and it pings this host through it
//! (needs root, and `ip` on this host).
//!
//! ```text
//! cargo run --release --example snapshot_clones -- --kernel vmlinux --initrd initramfs.cpio \
//!     [--cmdline 'minivmm.action=agent'] [--mem MiB] [--clones N] [--dir DIR] [--taps]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use vmm::{ConsoleOutput, ExecRequest, NetConfig, VmBuilder, VmHandle, VsockConfig};

struct Args {
    kernel: PathBuf,
    initrd: Option<PathBuf>,
    cmdline: String,
    mem_mib: u64,
    clones: usize,
    dir: PathBuf,
    taps: bool,
}

const USAGE: &str = "usage: snapshot_clones --kernel FILE [--initrd FILE] [--cmdline ARGS] \
                     [--mem MiB] [--clones N] [--dir DIR] [--taps]";
const AGENT_WAIT: Duration = Duration::from_secs(120);

fn args() -> Result<Args, String> {
    let mut a = Args {
        kernel: PathBuf::new(),
        initrd: None,
        cmdline: "minivmm.action=agent".into(),
        mem_mib: 256,
        clones: 3,
        dir: std::env::temp_dir().join(format!("snapshot-clones-{}", std::process::id())),
        taps: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--kernel" => a.kernel = value()?.into(),
            "--initrd" => a.initrd = Some(value()?.into()),
            "--cmdline" => a.cmdline = value()?,
            "--mem" => a.mem_mib = value()?.parse().map_err(|e| format!("--mem: {e}"))?,
            "--clones" => a.clones = value()?.parse().map_err(|e| format!("--clones: {e}"))?,
            "--dir" => a.dir = value()?.into(),
            "--taps" => a.taps = true,
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    if a.kernel.as_os_str().is_empty() {
        return Err(USAGE.into());
    }
    Ok(a)
}

fn socket(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("snap-{}-{name}.sock", std::process::id()))
}

/// Runs `sh -c script` in `vm`; its stdout, trimmed, or the error.
fn sh(vm: &VmHandle, script: &str) -> String {
    match vm.exec(&ExecRequest::new(["sh", "-c", script])) {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .trim()
            .replace('\n', " "),
        Err(e) => format!("error: {e}"),
    }
}

/// A tap this program creates (and the VM removes at its end).
fn tap(name: &str) -> NetConfig {
    let mut net = NetConfig::new(name);
    net.create = true;
    net
}

/// Runs `ip ARGS` on this host.
fn host_ip(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Clone 0 on its own tap: this host's side gets 10.0.2.1/24, the guest's eth0
/// 10.0.2.15/24, and the guest pings this host. Prints the replies and the device's
/// frame counters.
fn ping_host(vm: &VmHandle) -> Result<(), String> {
    host_ip(&["addr", "add", "10.0.2.1/24", "dev", "snapc0"])?;
    host_ip(&["link", "set", "snapc0", "up"])?;
    let replies = sh(
        vm,
        "ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && \
         ping -c 3 -W 10 10.0.2.1 | grep -c 'bytes from'",
    );
    let m = vm.controller().metrics();
    let net = m.devices.get("net0").ok_or("no net0 metrics")?;
    let count = |k: &str| net.get(k).copied().unwrap_or(0);
    println!(
        "SNAPSHOT: clone0 ping-host replies={replies} tx_frames={} rx_frames={}",
        count("tx_frames"),
        count("rx_frames")
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn run(a: &Args) -> Result<(), String> {
    let t = Instant::now();
    let mut builder = VmBuilder::new(&a.kernel)
        .memory_mib(a.mem_mib)
        .cmdline(&a.cmdline)
        .console(ConsoleOutput::Null)
        .vsock(VsockConfig::new(socket("template")));
    if let Some(initrd) = &a.initrd {
        builder = builder.initrd(initrd);
    }
    if a.taps {
        builder = builder.net(tap("snaptpl"));
    }
    let template = builder.start().map_err(|e| format!("template: {e}"))?;
    template
        .wait_for_agent(AGENT_WAIT)
        .map_err(|e| format!("template agent: {e}"))?;
    println!("SNAPSHOT: template-ready after={:.1}ms", ms(t.elapsed()));
    let wrote = sh(
        &template,
        "echo from-template > /tmp/marker && cat /tmp/marker",
    );
    println!("SNAPSHOT: template-wrote {wrote}");
    template.pause().map_err(|e| format!("pause: {e}"))?;
    let t = Instant::now();
    template
        .snapshot(&a.dir)
        .map_err(|e| format!("snapshot: {}", vmm::error_chain(&e)))?;
    println!("SNAPSHOT: created took={:.1}ms", ms(t.elapsed()));
    template.stop();
    let _ = template.wait();

    let mut clones = Vec::new();
    for i in 0..a.clones {
        let t = Instant::now();
        let vm = VmBuilder::restore(&a.dir)
            .and_then(|b| {
                let b = b
                    .console(ConsoleOutput::Null)
                    .vsock(VsockConfig::new(socket(&format!("clone{i}"))));
                let b = if a.taps {
                    b.nets(vec![tap(&format!("snapc{i}"))])
                } else {
                    b
                };
                b.start()
            })
            .map_err(|e| format!("clone {i}: {}", vmm::error_chain(&e)))?;
        println!("SNAPSHOT: clone{i} running after={:.3}ms", ms(t.elapsed()));
        clones.push((vm, t));
    }
    let mut failed = false;
    for (i, (vm, t)) in clones.iter().enumerate() {
        match vm.wait_for_agent(AGENT_WAIT) {
            Ok(_) => println!("SNAPSHOT: clone{i} agent after={:.1}ms", ms(t.elapsed())),
            Err(e) => {
                println!("SNAPSHOT: clone{i} agent error: {e}");
                failed = true;
                continue;
            }
        }
        let marker = sh(vm, "cat /tmp/marker");
        let own = sh(vm, &format!("echo clone-{i} > /tmp/own && cat /tmp/own"));
        let random = sh(vm, "head -c 16 /dev/urandom | od -An -tx1 | tr -d ' '");
        // Linux's vmgenid driver reseeds the RNG on the new generation ID and says so.
        let reseeded = sh(vm, "dmesg | grep -c 'reseeded due to virtual machine fork'");
        println!(
            "SNAPSHOT: clone{i} marker={marker} own={own} urandom={random} reseeded={reseeded}"
        );
        if a.taps && i == 0 {
            if let Err(e) = ping_host(vm) {
                println!("SNAPSHOT: clone0 ping-host error: {e}");
                failed = true;
            }
        }
    }
    for (vm, _) in clones {
        vm.stop();
        let _ = vm.wait();
    }
    let _ = std::fs::remove_dir_all(&a.dir);
    if failed {
        return Err("a clone step failed (see above)".into());
    }
    Ok(())
}

fn main() -> ExitCode {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("snapshot_clones: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("SNAPSHOT: error {e}");
            ExitCode::FAILURE
        }
    }
}
