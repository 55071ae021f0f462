//! The structured payloads: what each request and answer carries, with the checks
//! that both the encoder and the decoder apply.

use crate::codec::{check_len, check_str, check_value, FrameError, Reader, Writer};
use crate::limits::{
    MAX_ARGS, MAX_ARG_LEN, MAX_ENV, MAX_FILE_SIZE, MAX_GROUPS, MAX_MODE, MAX_PATH_LEN, MAX_SIGNAL,
    MAX_VERSION_LEN,
};
use std::fmt;
use std::time::Duration;

/// The version answer: who the agent is and which protocol it speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// The agent's own version (its crate version), at most
    /// [`MAX_VERSION_LEN`] bytes.
    pub agent: String,
    /// The protocol version it speaks ([`crate::PROTOCOL_VERSION`] of its build).
    pub protocol: u32,
}

impl Version {
    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> Result<(), FrameError> {
        check_str("version.agent", &self.agent, MAX_VERSION_LEN)?;
        w.str(&self.agent);
        w.u32(self.protocol);
        Ok(())
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, FrameError> {
        Ok(Self {
            agent: r.str("version.agent", MAX_VERSION_LEN)?,
            protocol: r.u32("version.protocol")?,
        })
    }
}

/// A terminal size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

impl WindowSize {
    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.u16(self.rows);
        w.u16(self.cols);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, FrameError> {
        Ok(Self {
            rows: r.u16("window.rows")?,
            cols: r.u16("window.cols")?,
        })
    }
}

/// A command to run in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecRequest {
    /// The program and its arguments; `argv[0]` is looked up in the request's `PATH`
    /// when it has no `/`. Not empty.
    pub argv: Vec<String>,
    /// The whole environment of the command (nothing is inherited from the agent), as
    /// key and value; the agent adds a default `PATH` when none is given. Keys are not
    /// empty and hold no `=`.
    pub env: Vec<(String, String)>,
    /// The working directory; the agent's own (`/` as PID 1) when `None`.
    pub cwd: Option<String>,
    /// The user id to run as; the agent's (root) when `None`.
    pub uid: Option<u32>,
    /// The group id to run as (also the only supplementary group); the agent's when
    /// `None`.
    pub gid: Option<u32>,
    /// A pseudo-terminal of this size as stdin, stdout and stderr; output then comes
    /// as stdout data only.
    pub tty: Option<WindowSize>,
    /// Kill the command's process group with SIGKILL after this many milliseconds.
    pub timeout_ms: Option<u64>,
    /// Whether the host streams stdin (stdin-data frames, then stdin-close); when
    /// false the command's stdin is `/dev/null`.
    pub stdin: bool,
    /// A directory (a mount point) that becomes the command's root: the command runs
    /// in its own mount namespace with this mount moved onto `/` (as `switch_root`
    /// does), and `argv[0]` is looked up inside it. `None`: the agent's root.
    pub root: Option<String>,
    /// The supplementary groups when a user is set (at most [`MAX_GROUPS`]); empty
    /// means `[gid]`.
    pub groups: Vec<u32>,
}

impl ExecRequest {
    /// A request to run `argv` with an empty environment (plus the default `PATH`), no
    /// terminal, no timeout and stdin from `/dev/null`.
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets the working directory.
    pub fn cwd(mut self, cwd: impl Into<String>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    /// Runs on a pseudo-terminal of `rows` x `cols`.
    pub fn tty(mut self, rows: u16, cols: u16) -> Self {
        self.tty = Some(WindowSize { rows, cols });
        self
    }

    /// Kills the command after `timeout` (rounded down to milliseconds).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout_ms = Some(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// Streams stdin from the host.
    pub fn stdin(mut self, streamed: bool) -> Self {
        self.stdin = streamed;
        self
    }

    /// Runs as this user and group.
    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        self.uid = Some(uid);
        self.gid = Some(gid);
        self
    }

    /// Runs in the mount `root`, moved onto `/` in a mount namespace of its own.
    pub fn root(mut self, root: impl Into<String>) -> Self {
        self.root = Some(root.into());
        self
    }

    /// Sets the supplementary groups (used when a user is set).
    pub fn groups(mut self, groups: Vec<u32>) -> Self {
        self.groups = groups;
        self
    }

    /// Checks every limit and value rule, as the decoder does.
    pub fn validate(&self) -> Result<(), FrameError> {
        check_len("exec.argv", self.argv.len(), MAX_ARGS)?;
        check_value("exec.argv", !self.argv.is_empty(), 0)?;
        for a in &self.argv {
            check_str("exec.argv[]", a, MAX_ARG_LEN)?;
        }
        check_len("exec.env", self.env.len(), MAX_ENV)?;
        for (k, v) in &self.env {
            check_env_key(k)?;
            check_str("exec.env[].value", v, MAX_ARG_LEN)?;
        }
        if let Some(cwd) = &self.cwd {
            check_str("exec.cwd", cwd, MAX_PATH_LEN)?;
        }
        if let Some(root) = &self.root {
            check_str("exec.root", root, MAX_PATH_LEN)?;
        }
        check_len("exec.groups", self.groups.len(), MAX_GROUPS)
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> Result<(), FrameError> {
        self.validate()?;
        w.u32(self.argv.len() as u32);
        for a in &self.argv {
            w.str(a);
        }
        w.u32(self.env.len() as u32);
        for (k, v) in &self.env {
            w.str(k);
            w.str(v);
        }
        w.bool(self.cwd.is_some());
        if let Some(cwd) = &self.cwd {
            w.str(cwd);
        }
        for id in [self.uid, self.gid] {
            w.bool(id.is_some());
            if let Some(id) = id {
                w.u32(id);
            }
        }
        w.bool(self.tty.is_some());
        if let Some(tty) = &self.tty {
            tty.encode(w);
        }
        w.bool(self.timeout_ms.is_some());
        if let Some(t) = self.timeout_ms {
            w.u64(t);
        }
        w.bool(self.stdin);
        w.bool(self.root.is_some());
        if let Some(root) = &self.root {
            w.str(root);
        }
        w.u32(self.groups.len() as u32);
        for g in &self.groups {
            w.u32(*g);
        }
        Ok(())
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, FrameError> {
        let argc = r.count("exec.argv", MAX_ARGS)?;
        check_value("exec.argv", argc > 0, 0)?;
        let mut argv = Vec::with_capacity(argc);
        for _ in 0..argc {
            argv.push(r.str("exec.argv[]", MAX_ARG_LEN)?);
        }
        let envc = r.count("exec.env", MAX_ENV)?;
        let mut env = Vec::with_capacity(envc);
        for _ in 0..envc {
            let k = r.str("exec.env[].key", MAX_ARG_LEN)?;
            check_env_key(&k)?;
            env.push((k, r.str("exec.env[].value", MAX_ARG_LEN)?));
        }
        let cwd = match r.bool("exec.cwd?")? {
            true => Some(r.str("exec.cwd", MAX_PATH_LEN)?),
            false => None,
        };
        let uid = match r.bool("exec.uid?")? {
            true => Some(r.u32("exec.uid")?),
            false => None,
        };
        let gid = match r.bool("exec.gid?")? {
            true => Some(r.u32("exec.gid")?),
            false => None,
        };
        let tty = match r.bool("exec.tty?")? {
            true => Some(WindowSize::decode(r)?),
            false => None,
        };
        let timeout_ms = match r.bool("exec.timeout?")? {
            true => Some(r.u64("exec.timeout_ms")?),
            false => None,
        };
        let stdin = r.bool("exec.stdin")?;
        let root = match r.bool("exec.root?")? {
            true => Some(r.str("exec.root", MAX_PATH_LEN)?),
            false => None,
        };
        let n = r.count("exec.groups", MAX_GROUPS)?;
        let mut groups = Vec::with_capacity(n);
        for _ in 0..n {
            groups.push(r.u32("exec.groups[]")?);
        }
        Ok(Self {
            argv,
            env,
            cwd,
            uid,
            gid,
            tty,
            timeout_ms,
            stdin,
            root,
            groups,
        })
    }
}

fn check_env_key(k: &str) -> Result<(), FrameError> {
    check_str("exec.env[].key", k, MAX_ARG_LEN)?;
    check_value(
        "exec.env[].key",
        !k.is_empty() && !k.contains('='),
        k.len() as i64,
    )
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code (0..=255).
    Code(i32),
    /// A signal (1..=64) terminated it.
    Signal(i32),
}

impl ExitStatus {
    /// The status as a shell reports it: the code, or 128 + the signal number.
    pub fn shell_code(&self) -> i32 {
        match *self {
            Self::Code(c) => c,
            Self::Signal(s) => 128 + s,
        }
    }

    /// True for `Code(0)`.
    pub fn success(&self) -> bool {
        *self == Self::Code(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code(c) => write!(f, "exit code {c}"),
            Self::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// The final frame of a command: its status and whether its timeout killed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exited {
    /// How it ended.
    pub status: ExitStatus,
    /// True when the agent killed it because its `timeout_ms` passed.
    pub timed_out: bool,
}

impl Exited {
    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> Result<(), FrameError> {
        let (tag, value) = match self.status {
            ExitStatus::Code(c) => (0, c),
            ExitStatus::Signal(s) => (1, s),
        };
        check_exit(tag, value)?;
        w.u8(tag);
        w.i32(value);
        w.bool(self.timed_out);
        Ok(())
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, FrameError> {
        let tag = r.u8("exited.kind")?;
        let value = r.i32("exited.value")?;
        check_exit(tag, value)?;
        let status = match tag {
            0 => ExitStatus::Code(value),
            _ => ExitStatus::Signal(value),
        };
        Ok(Self {
            status,
            timed_out: r.bool("exited.timed_out")?,
        })
    }
}

fn check_exit(tag: u8, value: i32) -> Result<(), FrameError> {
    match tag {
        0 => check_value("exited.code", (0..=255).contains(&value), value.into()),
        1 => check_signal("exited.signal", value),
        _ => check_value("exited.kind", false, tag.into()),
    }
}

/// Checks a signal number: 1..=[`MAX_SIGNAL`].
pub(crate) fn check_signal(field: &'static str, sig: i32) -> Result<(), FrameError> {
    check_value(field, (1..=MAX_SIGNAL).contains(&sig), sig.into())
}

/// A write-file request; `size` bytes of file-data frames and a file-end frame follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFileRequest {
    /// Absolute path of the file to create or replace.
    pub path: String,
    /// Permission bits (at most `0o7777`), applied exactly (no umask).
    pub mode: u32,
    /// Total bytes that follow, at most [`MAX_FILE_SIZE`].
    pub size: u64,
}

impl WriteFileRequest {
    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> Result<(), FrameError> {
        check_str("write_file.path", &self.path, MAX_PATH_LEN)?;
        check_mode(self.mode)?;
        check_size("write_file.size", self.size)?;
        w.str(&self.path);
        w.u32(self.mode);
        w.u64(self.size);
        Ok(())
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, FrameError> {
        let path = r.str("write_file.path", MAX_PATH_LEN)?;
        let mode = r.u32("write_file.mode")?;
        check_mode(mode)?;
        let size = r.u64("write_file.size")?;
        check_size("write_file.size", size)?;
        Ok(Self { path, mode, size })
    }
}

fn check_mode(mode: u32) -> Result<(), FrameError> {
    check_value("write_file.mode", mode <= MAX_MODE, mode.into())
}

/// Checks a file size against [`MAX_FILE_SIZE`].
pub(crate) fn check_size(field: &'static str, size: u64) -> Result<(), FrameError> {
    if size > MAX_FILE_SIZE {
        return Err(FrameError::FieldTooLong {
            field,
            len: size,
            max: MAX_FILE_SIZE,
        });
    }
    Ok(())
}
