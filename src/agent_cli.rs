//! `minivmm exec` and `minivmm cp`: commands and files in a running VM, from any
//! process, through the VM's vsock socket and the guest agent (crates/agent-client).
//!
//! `exec` streams the command's output as it comes and exits with its status (128+N
//! for a signal); `-i` streams stdin, `-t` gives it a terminal: the local one in raw
//! mode (restored on exit), resized with it. minivmm's own failures exit with 125.

use clap::Parser;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use vmm::sandbox::{AgentClient, ExecRequest, ExitStatus, OutputReader, AGENT_PORT};

/// Exit status for minivmm's own failures (as docker and podman use it).
const OWN_FAILURE: u8 = 125;
/// Prefix of a guest path in `minivmm cp`.
const GUEST_PREFIX: &str = "guest:";

/// Run a command in a running VM through its guest agent.
#[derive(Debug, Parser)]
#[command(name = "minivmm exec")]
struct ExecArgs {
    /// The VM's vsock socket (its --vsock socket=PATH).
    #[arg(long, value_name = "PATH")]
    vsock_socket: PathBuf,
    /// The agent's vsock port.
    #[arg(long, default_value_t = AGENT_PORT)]
    port: u32,
    /// An environment variable for the command (repeatable); PATH has a default.
    #[arg(long = "env", short = 'e', value_name = "K=V")]
    env: Vec<String>,
    /// Working directory in the guest.
    #[arg(long, value_name = "DIR")]
    cwd: Option<String>,
    /// Run as UID[:GID].
    #[arg(long, value_name = "UID[:GID]")]
    user: Option<String>,
    /// Stream standard input to the command.
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Give the command a terminal (implies -i).
    #[arg(short = 't', long)]
    tty: bool,
    /// Kill the command after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<f64>,
    /// How long to wait for the agent to answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    wait: f64,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// Copy a file into or out of a running VM (guest paths start with "guest:").
#[derive(Debug, Parser)]
#[command(name = "minivmm cp")]
struct CpArgs {
    /// The VM's vsock socket.
    #[arg(long, value_name = "PATH")]
    vsock_socket: PathBuf,
    /// The agent's vsock port.
    #[arg(long, default_value_t = AGENT_PORT)]
    port: u32,
    /// Mode of a file written in the guest [default: the local file's].
    #[arg(long, value_name = "OCTAL")]
    mode: Option<String>,
    /// Source: a local path or guest:PATH.
    src: String,
    /// Destination: a local path or guest:PATH.
    dst: String,
}

fn seconds(what: &str, s: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|_| format!("{what} {s}: not a number of seconds"))
}

fn parse<T: Parser>(args: &[OsString]) -> Result<T, ExitCode> {
    T::try_parse_from(args).map_err(|e| {
        let code = if e.use_stderr() { 2 } else { 0 };
        let _ = e.print();
        ExitCode::from(code)
    })
}

fn fail(what: &str, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("minivmm {what}: error: {e}");
    ExitCode::from(OWN_FAILURE)
}

/// `minivmm exec ...` (`args[0]` is "exec").
pub fn exec(args: &[OsString]) -> ExitCode {
    let a = match parse::<ExecArgs>(args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    match run_exec(&a) {
        Ok(code) => code,
        Err(e) => fail("exec", e),
    }
}

fn request(a: &ExecArgs) -> Result<ExecRequest, String> {
    let mut req = ExecRequest::new(a.command.clone());
    for kv in &a.env {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("--env {kv}: use KEY=VALUE"))?;
        req = req.env(k, v);
    }
    if let Some(cwd) = &a.cwd {
        req = req.cwd(cwd.as_str());
    }
    if let Some(user) = &a.user {
        let (uid, gid) = user.split_once(':').unwrap_or((user, user));
        let id = |t: &str| {
            t.parse::<u32>()
                .map_err(|_| format!("--user {user}: use UID[:GID]"))
        };
        req = req.user(id(uid)?, id(gid)?);
    }
    if let Some(t) = a.timeout {
        req = req.timeout(seconds("--timeout", t)?);
    }
    if a.tty {
        let (rows, cols) = crate::terminal::size().unwrap_or((24, 80));
        req = req.tty(rows, cols);
    }
    Ok(req.stdin(a.interactive || a.tty))
}

fn copy_out(
    mut from: OutputReader,
    mut to: impl Write + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).and_then(|()| to.flush()).is_err() {
                break;
            }
        }
    })
}

fn run_exec(a: &ExecArgs) -> Result<ExitCode, String> {
    let req = request(a)?;
    let client = AgentClient::vsock(&a.vsock_socket, a.port);
    client
        .wait_for_agent(seconds("--wait", a.wait)?)
        .map_err(|e| vmm::error_chain(&e))?;
    let _raw = if a.tty {
        crate::terminal::RawMode::enter()
    } else {
        None
    };
    let mut session = client.spawn(&req).map_err(|e| vmm::error_chain(&e))?;
    let mut copies = Vec::new();
    if let Some(out) = session.stdout.take() {
        copies.push(copy_out(out, std::io::stdout()));
    }
    if let Some(err) = session.stderr.take() {
        copies.push(copy_out(err, std::io::stderr()));
    }
    if let Some(mut input) = session.stdin.take() {
        // Left running at the end: it may be blocked reading our stdin.
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 16 * 1024];
            let mut stdin = std::io::stdin();
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 || input.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = input.close();
        });
    }
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if a.tty {
        crate::terminal::forward_resizes(session.control(), done.clone());
    }
    let exited = session.wait().map_err(|e| vmm::error_chain(&e));
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let exited = exited?;
    for c in copies {
        let _ = c.join();
    }
    drop(_raw);
    if exited.timed_out {
        eprintln!("minivmm exec: the command was killed after its timeout");
    }
    Ok(match exited.status {
        ExitStatus::Code(c) => ExitCode::from(c.clamp(0, 255) as u8),
        status => ExitCode::from(status.shell_code().clamp(0, 255) as u8),
    })
}

/// `minivmm cp ...` (`args[0]` is "cp").
pub fn cp(args: &[OsString]) -> ExitCode {
    let a = match parse::<CpArgs>(args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    match run_cp(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail("cp", e),
    }
}

fn run_cp(a: &CpArgs) -> Result<(), String> {
    let client = AgentClient::vsock(&a.vsock_socket, a.port);
    match (
        a.src.strip_prefix(GUEST_PREFIX),
        a.dst.strip_prefix(GUEST_PREFIX),
    ) {
        (None, Some(guest)) => {
            let file = std::fs::File::open(&a.src).map_err(|e| format!("{}: {e}", a.src))?;
            let meta = file.metadata().map_err(|e| format!("{}: {e}", a.src))?;
            let mode = match &a.mode {
                Some(m) => {
                    u32::from_str_radix(m, 8).map_err(|_| format!("--mode {m}: not octal"))?
                }
                None => meta.permissions().mode() & 0o7777,
            };
            client
                .write_file_from(guest, mode, meta.len(), file)
                .map_err(|e| vmm::error_chain(&e))
        }
        (Some(guest), None) => {
            let tmp = format!("{}.minivmm-cp", a.dst);
            let mut file = std::fs::File::create(&tmp).map_err(|e| format!("{tmp}: {e}"))?;
            let result = client
                .read_file_to(guest, &mut file)
                .map_err(|e| vmm::error_chain(&e));
            match result.and_then(|_| file.sync_all().map_err(|e| format!("{tmp}: {e}"))) {
                Ok(()) => std::fs::rename(&tmp, &a.dst).map_err(|e| format!("{}: {e}", a.dst)),
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    Err(e)
                }
            }
        }
        _ => Err("exactly one of SRC and DST must be a guest path (guest:/PATH)".into()),
    }
}
