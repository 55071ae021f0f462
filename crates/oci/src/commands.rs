//! The runtime's commands as containerd's runc shim calls them: `create`, `start`,
//! `state`, `kill`, `delete`, `features`. Each is a short-lived process; what lasts
//! is the state directory and the container's VMM process (`keeper`).

use crate::bundle::{self, HostLimits};
use crate::error::OciError;
use crate::keeper::{START_ERROR, START_FIFO};
use crate::runtime_config::{config_path, RuntimeConfig};
use crate::signals::parse_signal;
use crate::state::{process_alive, Record, StateDir, Status, OCI_VERSION};
use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long `start` waits for the process to be running, and `delete --force` for
/// the VMM process to be gone.
const SETTLE: Duration = Duration::from_secs(10);

/// `create`'s options.
pub struct CreateArgs {
    /// The container's ID.
    pub id: String,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// Where to write the VMM process's PID.
    pub pid_file: Option<PathBuf>,
    /// Where to send a terminal's master.
    pub console_socket: Option<PathBuf>,
}

/// The global options the keeper needs again (passed on its command line).
pub struct Globals<'a> {
    /// `--root`.
    pub root: &'a Path,
    /// Arguments that reproduce `--log`/`--log-format` for the keeper.
    pub log_args: Vec<String>,
}

/// `create`: checks the bundle, claims the ID, starts the VMM process and returns
/// once the container is created (its VM booted, its mounts made) with the
/// process's PID in `--pid-file`.
pub fn create(g: &Globals<'_>, a: &CreateArgs) -> Result<(), OciError> {
    RuntimeConfig::load(&config_path())?;
    let plan = bundle::load(&a.bundle, HostLimits::of_this_host())?;
    let state = StateDir::open(g.root)?;
    let mut record = Record::new(&a.id, &plan.bundle);
    record.annotations = annotations(&plan.bundle);
    state.create(&record)?;
    match spawn_keeper(g, a, &plan.bundle, &state) {
        Ok(pid) => {
            if let Some(p) = &a.pid_file {
                write_pid_file(p, pid)?;
            }
            Ok(())
        }
        Err(e) => {
            let _ = state.remove(&a.id);
            Err(e)
        }
    }
}

fn annotations(bundle: &Path) -> std::collections::BTreeMap<String, String> {
    std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_slice::<oci_spec::runtime::Spec>(&t).ok())
        .and_then(|s| s.annotations().clone())
        .map(|a| a.into_iter().collect())
        .unwrap_or_default()
}

fn spawn_keeper(
    g: &Globals<'_>,
    a: &CreateArgs,
    bundle: &Path,
    state: &StateDir,
) -> Result<i32, OciError> {
    let dir = state.dir(&a.id);
    let fifo = dir.join(START_FIFO);
    let c = CString::new(fifo.as_os_str().as_bytes())
        .map_err(|e| OciError::State(fifo.clone(), e.to_string()))?;
    // SAFETY: a NUL-terminated path; mkfifo has no memory effects.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(OciError::State(
            fifo,
            std::io::Error::last_os_error().to_string(),
        ));
    }
    let (mut ready_r, ready_w) = ready_pipe()?;
    let exe = std::env::current_exe()
        .map_err(|e| OciError::Process("finding this program", e.to_string()))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--root")
        .arg(g.root)
        .args(&g.log_args)
        .arg("keeper")
        .arg("--bundle")
        .arg(bundle)
        .arg("--ready-fd")
        .arg(ready_w.as_raw_fd().to_string());
    if let Some(s) = &a.console_socket {
        // With a terminal the container's streams are the pseudo-terminal. The shim
        // reads create's own stdout and stderr to their end: the VMM process must not
        // hold them (it would until the container ends).
        cmd.arg("--console-socket")
            .arg(s)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
    }
    cmd.arg(&a.id);
    let mut child = cmd
        .spawn()
        .map_err(|e| OciError::Process("starting the VMM process", e.to_string()))?;
    drop(ready_w);
    let mut answer = String::new();
    let _ = ready_r.read_to_string(&mut answer);
    if answer == "ok" {
        return Ok(child.id() as i32);
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(match answer.is_empty() {
        true => OciError::Process(
            "the VMM process",
            "exited before the container was created".into(),
        ),
        false => OciError::Reported(answer),
    })
}

/// A pipe whose read end is close-on-exec and whose write end is inherited.
fn ready_pipe() -> Result<(std::fs::File, OwnedFd), OciError> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), 0) } != 0 {
        return Err(OciError::Process(
            "creating a pipe",
            std::io::Error::last_os_error().to_string(),
        ));
    }
    // SAFETY: both fds were just created and are owned by nothing else.
    let (r, w) = unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            OwnedFd::from_raw_fd(fds[1]),
        )
    };
    // SAFETY: F_SETFD on an open fd.
    unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok((r, w))
}

/// Writes `pid` as bare digits (go-runc parses it with Atoi), atomically.
fn write_pid_file(path: &Path, pid: i32) -> Result<(), OciError> {
    let err = |e: std::io::Error| OciError::State(path.to_path_buf(), e.to_string());
    let tmp = path.with_extension("minivmm-tmp");
    std::fs::write(&tmp, pid.to_string()).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// `start`: runs the created container's process; returns once it runs.
pub fn start(root: &Path, id: &str) -> Result<(), OciError> {
    let state = StateDir::open(root)?;
    let record = state.load(id)?;
    if record.status != Status::Created {
        return Err(OciError::WrongState(
            id.into(),
            record.status.as_str(),
            "cannot start it",
        ));
    }
    let dir = state.dir(id);
    let fifo = dir.join(START_FIFO);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .map_err(|_| OciError::WrongState(id.into(), "not created", "cannot start it"))?;
    std::io::Write::write_all(&mut f, b"s").map_err(|e| OciError::State(fifo, e.to_string()))?;
    let deadline = Instant::now() + SETTLE;
    loop {
        let record = state.load(id)?;
        match record.status {
            Status::Running => return Ok(()),
            Status::Stopped => {
                let why = std::fs::read_to_string(dir.join(START_ERROR))
                    .unwrap_or_else(|_| "the container's VMM process ended".into());
                return Err(OciError::Vm(why));
            }
            _ if Instant::now() >= deadline => return Ok(()),
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// `state`: the runtime-spec state JSON.
pub fn state(root: &Path, id: &str) -> Result<String, OciError> {
    let record = StateDir::open(root)?.load(id)?;
    serde_json::to_string_pretty(&record.oci_state())
        .map_err(|e| OciError::State(root.to_path_buf(), e.to_string()))
}

/// `kill`: sends `signal` to the container's VMM process, which forwards it to the
/// container's process in the guest (or, before `start`, ends).
pub fn kill(root: &Path, id: &str, signal: &str) -> Result<(), OciError> {
    let sig = parse_signal(signal)?;
    let record = StateDir::open(root)?.load(id)?;
    let pid = match (record.status, record.pid) {
        (Status::Created | Status::Running, Some(pid)) => pid,
        _ => {
            return Err(OciError::WrongState(
                id.into(),
                "not running",
                "cannot signal it",
            ))
        }
    };
    // SAFETY: kill has no memory effects.
    if unsafe { libc::kill(pid, sig) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(OciError::Process(
            "signalling the container",
            format!("{e} (no such process)"),
        ));
    }
    Ok(())
}

/// `delete`: removes a stopped (or, with `force`, any) container and its state.
/// A container that was created but not started is ended, as runc does.
pub fn delete(root: &Path, id: &str, force: bool) -> Result<(), OciError> {
    let state = StateDir::open(root)?;
    let record = match state.load(id) {
        Ok(r) => r,
        // A second delete (the shim's cleanup) finds nothing: fine when forced.
        Err(OciError::NotFound(_)) if force => return Ok(()),
        Err(e) => return Err(e),
    };
    if let (Status::Created | Status::Running | Status::Creating, Some(pid)) =
        (record.status, record.pid)
    {
        if record.status == Status::Running && !force {
            return Err(OciError::WrongState(
                id.into(),
                "running",
                "stop it first or use --force",
            ));
        }
        // SAFETY: kill has no memory effects.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let deadline = Instant::now() + SETTLE;
        while process_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // A VMM process killed while it held the namespace's address: give it back.
    let taken = state.dir(id).join(crate::netns::TAKEN_FILE);
    if let Ok(text) = std::fs::read(&taken) {
        if let Ok(t) = serde_json::from_slice::<crate::netns::Taken>(&text) {
            crate::netns::restore_in(&t)?;
        }
    }
    match state.remove(id) {
        Err(OciError::NotFound(_)) if force => Ok(()),
        other => other,
    }
}

/// `features`: what this runtime supports (runtime-spec features document).
pub fn features() -> String {
    let options: Vec<&str> = vec![
        "ro",
        "rw",
        "nosuid",
        "suid",
        "nodev",
        "dev",
        "noexec",
        "exec",
        "sync",
        "async",
        "dirsync",
        "noatime",
        "nodiratime",
        "relatime",
        "strictatime",
        "bind",
        "rbind",
    ];
    let doc = serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": [],
        "mountOptions": options,
        "linux": {
            "namespaces": ["mount", "network", "uts", "pid", "ipc"],
            "capabilities": [],
            "cgroup": {"v1": false, "v2": false, "systemd": false, "systemdUser": false},
            "seccomp": {"enabled": false},
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
        },
        "annotations": {
            "io.github.minivmm.isolation": "microvm",
            "io.github.minivmm.version": env!("CARGO_PKG_VERSION"),
        },
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}
