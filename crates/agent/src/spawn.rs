//! Starting a command: the program looked up in the request's `PATH`, its environment,
//! pipes or a pseudo-terminal, then fork and exec.
//!
//! Everything the child needs is built before the fork; between fork and exec the
//! child makes only async-signal-safe system calls (the agent is multi-threaded) and
//! reports a failed step through a close-on-exec pipe, so the parent learns whether
//! exec happened before it answers the host.

use crate::pty::{Pty, PtyError};
use crate::reaper::{Reaper, ReaperStartError};
use agent_proto::{ExecRequest, ExitStatus};
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;

/// `PATH` of a command whose request sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Starting a command failed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// `argv[0]` is in no directory of `PATH`.
    #[error("command not found: {0}")]
    NotFound(String),
    /// A pipe could not be made.
    #[error("creating a pipe")]
    Pipe(#[source] io::Error),
    /// `/dev/null` could not be opened for stdin.
    #[error("opening /dev/null")]
    DevNull(#[source] io::Error),
    /// The pseudo-terminal could not be opened.
    #[error("opening a pseudo-terminal")]
    Pty(#[from] PtyError),
    /// The reaper is not running.
    #[error("the reaper is not running")]
    Reaper(#[from] ReaperStartError),
    /// fork failed.
    #[error("fork")]
    Fork(#[source] io::Error),
    /// A step in the child before exec failed.
    #[error("{step} in the new process")]
    Child {
        /// The step: setsid, chdir, setuid, execve...
        step: &'static str,
        /// Its error.
        #[source]
        source: io::Error,
    },
}

/// A started command.
pub struct Spawned {
    /// Its pid, also its process group id.
    pub pid: libc::pid_t,
    /// Where the reaper sends its exit status.
    pub exit: Receiver<ExitStatus>,
    /// The writing end of its stdin, when stdin is streamed.
    pub stdin: Option<File>,
    /// Its stdout (the terminal's master with a tty).
    pub stdout: File,
    /// Its stderr (none with a tty: it goes to the terminal).
    pub stderr: Option<File>,
    /// The terminal's master, for resizes.
    pub pty: Option<OwnedFd>,
}

const STEPS: [&str; 16] = [
    "sigprocmask",
    "setsid",
    "TIOCSCTTY",
    "setpgid",
    "dup2",
    "setgroups",
    "setgid",
    "setuid",
    "chdir",
    "execve",
    "unshare(CLONE_NEWNS)",
    "making mounts private",
    "chdir to the root",
    "moving the root onto /",
    "chroot",
    "chdir /",
];

/// Everything the child uses, prepared before the fork.
struct Plan {
    /// The programs to try in order (one, or one per `PATH` directory in a root).
    paths: Vec<CString>,
    root: Option<CString>,
    groups: Vec<libc::gid_t>,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const libc::c_char>,
    cwd: Option<CString>,
    uid: Option<u32>,
    gid: Option<u32>,
    tty: bool,
    fds: [RawFd; 3],
    err_fd: RawFd,
}

fn cstring(s: &str) -> CString {
    // The protocol rejects NUL in every string; strip any to be safe.
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

fn pointers(v: &[CString]) -> Vec<*const libc::c_char> {
    v.iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// The program to exec: `argv0` itself when it holds a `/`, else the first
/// executable regular file named `argv0` in a directory of `path_var`.
pub fn resolve(argv0: &str, path_var: &str) -> Option<PathBuf> {
    if argv0.contains('/') {
        return Some(PathBuf::from(argv0));
    }
    path_var.split(':').find_map(|dir| {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(argv0);
        let meta = std::fs::metadata(&candidate).ok()?;
        (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then_some(candidate)
    })
}

/// The paths `execve` tries for `argv0` in a root: itself when it holds a `/`, else
/// `DIR/argv0` for each directory of `path_var`.
fn candidates(argv0: &str, path_var: &str) -> Vec<CString> {
    if argv0.contains('/') {
        return vec![cstring(argv0)];
    }
    path_var
        .split(':')
        .map(|dir| {
            cstring(&format!(
                "{}/{argv0}",
                if dir.is_empty() { "." } else { dir }
            ))
        })
        .collect()
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn dev_null() -> Result<OwnedFd, SpawnError> {
    match File::open("/dev/null") {
        Ok(f) => Ok(f.into()),
        // No /dev/null (a bare guest): an empty pipe reads as end of file too.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(pipe().map_err(SpawnError::Pipe)?.0),
        Err(e) => Err(SpawnError::DevNull(e)),
    }
}

/// Starts `req` (already validated by the protocol decoder).
pub fn spawn(req: &ExecRequest) -> Result<Spawned, SpawnError> {
    let path_var = req
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or(DEFAULT_PATH, |(_, v)| v.as_str());
    let argv0 = req.argv.first().map_or("", String::as_str);
    let paths = match &req.root {
        // The lookup happens in the child, after the root moved onto `/`: a link in
        // the root's PATH resolves inside it.
        Some(_) => candidates(argv0, path_var),
        None => {
            let program =
                resolve(argv0, path_var).ok_or_else(|| SpawnError::NotFound(argv0.into()))?;
            vec![cstring(&program.to_string_lossy())]
        }
    };

    let argv: Vec<CString> = req.argv.iter().map(|a| cstring(a)).collect();
    let mut envp: Vec<CString> = req
        .env
        .iter()
        .map(|(k, v)| cstring(&format!("{k}={v}")))
        .collect();
    if !req.env.iter().any(|(k, _)| k == "PATH") {
        envp.push(cstring(&format!("PATH={DEFAULT_PATH}")));
    }

    // The child's ends (kept open until after the fork) and the agent's.
    let mut child_ends: Vec<OwnedFd> = Vec::new();
    let (fds, stdin, stdout, stderr, pty) = match req.tty {
        Some(size) => {
            // In a root of its own, the terminal comes from the root's devpts (a
            // container's /dev/pts instance), so the command can name it there.
            let pts = req
                .root
                .as_deref()
                .map(|r| format!("{r}/dev/pts"))
                .filter(|p| Path::new(&format!("{p}/ptmx")).exists())
                .unwrap_or_else(|| "/dev/pts".into());
            let pty = Pty::open(size, &pts)?;
            let slave = pty.slave.as_raw_fd();
            let stdin = match req.stdin {
                true => Some(File::from(
                    pty.master.try_clone().map_err(SpawnError::Pipe)?,
                )),
                false => None,
            };
            let stdout = File::from(pty.master.try_clone().map_err(SpawnError::Pipe)?);
            child_ends.push(pty.slave);
            ([slave; 3], stdin, stdout, None, Some(pty.master))
        }
        None => {
            let (in_child, stdin) = match req.stdin {
                true => {
                    let (r, w) = pipe().map_err(SpawnError::Pipe)?;
                    (r, Some(File::from(w)))
                }
                false => (dev_null()?, None),
            };
            let (out_r, out_w) = pipe().map_err(SpawnError::Pipe)?;
            let (err_r, err_w) = pipe().map_err(SpawnError::Pipe)?;
            let fds = [in_child.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()];
            child_ends.extend([in_child, out_w, err_w]);
            (fds, stdin, File::from(out_r), Some(File::from(err_r)), None)
        }
    };
    let (mut err_r, err_w) = pipe()
        .map(|(r, w)| (File::from(r), w))
        .map_err(SpawnError::Pipe)?;

    let groups = match (req.gid, req.groups.is_empty()) {
        (_, false) => req.groups.clone(),
        (Some(gid), true) => vec![gid],
        (None, true) => Vec::new(),
    };
    let plan = Plan {
        paths,
        root: req.root.as_deref().map(cstring),
        groups,
        argv_ptrs: pointers(&argv),
        _argv: argv,
        envp_ptrs: pointers(&envp),
        _envp: envp,
        cwd: req.cwd.as_deref().map(cstring),
        uid: req.uid,
        gid: req.gid,
        tty: req.tty.is_some(),
        fds,
        err_fd: err_w.as_raw_fd(),
    };

    let (pid, exit) = Reaper::global()?
        .spawn(|| {
            // SAFETY: fork has no memory effects in the parent; the child runs only
            // async-signal-safe calls on data prepared above, then execs or exits.
            match unsafe { libc::fork() } {
                -1 => Err(io::Error::last_os_error()),
                0 => child(&plan),
                pid => Ok(pid),
            }
        })
        .map_err(SpawnError::Fork)?;
    drop(child_ends);
    drop(err_w);

    // Exec closes the error pipe; a failed step writes its index and errno first.
    let mut report = [0u8; 5];
    let mut got = 0;
    while got < report.len() {
        match err_r.read(&mut report[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if got == report.len() {
        // The child exits 127 right after; the reaper collects it.
        let step = STEPS.get(usize::from(report[0])).copied().unwrap_or("?");
        let errno = i32::from_le_bytes([report[1], report[2], report[3], report[4]]);
        return Err(SpawnError::Child {
            step,
            source: io::Error::from_raw_os_error(errno),
        });
    }
    Ok(Spawned {
        pid,
        exit,
        stdin,
        stdout,
        stderr,
        pty,
    })
}

/// The child between fork and exec. Only async-signal-safe calls.
fn child(plan: &Plan) -> ! {
    let fail = |step: u8| -> ! {
        // SAFETY: __errno_location/write/_exit are async-signal-safe; the buffer is
        // on this stack.
        unsafe {
            let errno = *libc::__errno_location();
            let b = errno.to_le_bytes();
            let msg = [step, b[0], b[1], b[2], b[3]];
            libc::write(plan.err_fd, msg.as_ptr().cast(), msg.len());
            libc::_exit(127)
        }
    };
    // SAFETY: every call below is async-signal-safe and uses only `plan`'s data,
    // which lives until exec or _exit.
    unsafe {
        // Signal mask and dispositions: the agent's threads may block signals and
        // Rust ignores SIGPIPE; an ignored signal stays ignored across exec.
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
            fail(0);
        }
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        if plan.tty {
            if libc::setsid() < 0 {
                fail(1);
            }
            if libc::ioctl(plan.fds[0], libc::TIOCSCTTY as _, 0) != 0 {
                fail(2);
            }
        } else if libc::setpgid(0, 0) != 0 {
            fail(3);
        }
        for (target, &fd) in plan.fds.iter().enumerate() {
            let target = target as RawFd;
            let r = if fd == target {
                libc::fcntl(fd, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, target)
            };
            if r < 0 {
                fail(4);
            }
        }
        if let Some(root) = &plan.root {
            if let Err(step) = enter_root(root) {
                fail(step);
            }
        }
        let user_set = plan.uid.is_some() || plan.gid.is_some();
        if user_set && libc::setgroups(plan.groups.len() as _, plan.groups.as_ptr()) != 0 {
            fail(5);
        }
        if let Some(gid) = plan.gid {
            if libc::setgid(gid) != 0 {
                fail(6);
            }
        }
        if let Some(uid) = plan.uid {
            if libc::setuid(uid) != 0 {
                fail(7);
            }
        }
        if let Some(cwd) = &plan.cwd {
            if libc::chdir(cwd.as_ptr()) != 0 {
                fail(8);
            }
        }
        // Like execvp: a missing or unusable candidate moves on to the next; the
        // last error is the one reported.
        for path in &plan.paths {
            libc::execve(
                path.as_ptr(),
                plan.argv_ptrs.as_ptr(),
                plan.envp_ptrs.as_ptr(),
            );
        }
        fail(9)
    }
}

/// Moves the mount `root` onto `/` in a mount namespace of the child's own, as
/// `switch_root` does (pivot_root cannot leave an initramfs), and enters it.
/// Returns the index in [`STEPS`] of a failed step, errno still set.
///
/// # Safety
/// Only between fork and exec: async-signal-safe calls only.
unsafe fn enter_root(root: &CString) -> Result<(), u8> {
    let fail = Err;
    // SAFETY: plain system calls on NUL-terminated strings that outlive them.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return fail(10);
        }
        let private = (libc::MS_REC | libc::MS_PRIVATE) as libc::c_ulong;
        if libc::mount(
            c"".as_ptr(),
            c"/".as_ptr(),
            std::ptr::null(),
            private,
            std::ptr::null(),
        ) != 0
        {
            return fail(11);
        }
        if libc::chdir(root.as_ptr()) != 0 {
            return fail(12);
        }
        if libc::mount(
            c".".as_ptr(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_MOVE,
            std::ptr::null(),
        ) != 0
        {
            return fail(13);
        }
        if libc::chroot(c".".as_ptr()) != 0 {
            return fail(14);
        }
        if libc::chdir(c"/".as_ptr()) != 0 {
            return fail(15);
        }
    }
    Ok(())
}
