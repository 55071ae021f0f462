//! One exec connection: start the command, stream its output, feed its stdin, apply
//! signals, resizes and the timeout, and report how it ended.
//!
//! Threads: this one waits for the exit status (and enforces the timeout); one pump
//! per output stream sends data frames as the command writes; one reader takes the
//! host's frames. A host that goes away (end of stream, a broken frame) gets the
//! command's process group killed with SIGKILL.

use crate::conn::{chain, linger_and_close, FrameWriter};
use crate::pty::set_window_size;
use crate::reaper::Reaper;
use crate::server::{reject, THREAD_STACK};
use crate::spawn::{pipe, spawn, SpawnError, Spawned};
use agent_proto::{ErrorCode, ExecRequest, Exited, Frame, Kind};
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Output read at once from a command's pipe (one data frame at most).
const PUMP_BUF: usize = 64 * 1024;

/// After the command exits, output is read until end of file or until the pipe has
/// been quiet this long (a background process may hold it open)...
const DRAIN_QUIET: Duration = Duration::from_millis(100);

/// ...but no longer than this in all.
const DRAIN_MAX: Duration = Duration::from_secs(2);

/// What is left of the command's stdin.
enum Stdin {
    /// Streaming: the agent's end of the pipe or the terminal.
    Open(File),
    /// The host closed it.
    Closed,
    /// The command closed its end: data that still comes is dropped.
    Broken,
    /// The request did not stream stdin.
    NotStreamed,
}

/// Serves an exec request on `stream`.
pub fn run(stream: UnixStream, writer: FrameWriter, req: ExecRequest) {
    let spawned = match spawn(&req) {
        Ok(s) => s,
        Err(e) => {
            writer.error(spawn_error_code(&e), chain(&e));
            linger_and_close(stream);
            return;
        }
    };
    log::debug!("exec {:?}: pid {}", req.argv, spawned.pid);
    let Spawned {
        pid,
        exit,
        stdin,
        stdout,
        stderr,
        pty,
    } = spawned;
    let Ok(reaper) = Reaper::global() else {
        return;
    };
    let _ = writer.send(&Frame::Started { pid: pid as u32 });

    // Closing `exited_w` tells the pumps the command has exited.
    let (exited_r, exited_w) = match pipe() {
        Ok(p) => p,
        Err(e) => {
            reaper.signal_group(pid, libc::SIGKILL);
            writer.error(ErrorCode::Internal, format!("creating a pipe: {e}"));
            return;
        }
    };
    let exited_r = Arc::new(exited_r);
    let mut pumps: Vec<JoinHandle<()>> = Vec::new();
    for (kind, file) in [(Kind::Stdout, Some(stdout)), (Kind::Stderr, stderr)] {
        let Some(file) = file else { continue };
        let (w, e) = (writer.clone(), exited_r.clone());
        match spawn_thread("pump", move || pump(file, kind, &w, &e)) {
            Ok(h) => pumps.push(h),
            Err(err) => log::warn!("starting an output pump: {err}"),
        }
    }

    let finished = Arc::new(AtomicBool::new(false));
    let reader = match stream.try_clone() {
        Ok(conn) => {
            let input = Input {
                conn,
                writer: writer.clone(),
                pid,
                stdin: match stdin {
                    Some(f) => Stdin::Open(f),
                    None => Stdin::NotStreamed,
                },
                tty: req.tty.is_some(),
                pty,
                finished: finished.clone(),
            };
            spawn_thread("input", move || input.run()).ok()
        }
        Err(_) => None,
    };
    if reader.is_none() {
        // Without a reader nobody would notice the host leaving.
        reaper.signal_group(pid, libc::SIGKILL);
    }

    let deadline = req
        .timeout_ms
        .map(|ms| Instant::now() + Duration::from_millis(ms));
    let mut timed_out = false;
    let status = loop {
        let got = match deadline {
            Some(d) if !timed_out => exit.recv_timeout(d.saturating_duration_since(Instant::now())),
            _ => exit.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match got {
            Ok(status) => break Some(status),
            Err(RecvTimeoutError::Timeout) => {
                timed_out = reaper.signal_group(pid, libc::SIGKILL);
                log::debug!("pid {pid} timed out");
                if !timed_out {
                    // Already reaped: its status is on the way.
                    match exit.recv() {
                        Ok(s) => break Some(s),
                        Err(_) => break None,
                    }
                }
            }
            Err(RecvTimeoutError::Disconnected) => break None,
        }
    };
    finished.store(true, Ordering::Release);
    drop(exited_w);
    for p in pumps {
        let _ = p.join();
    }
    match status {
        Some(status) => {
            let _ = writer.send(&Frame::Exited(Exited { status, timed_out }));
        }
        None => writer.error(ErrorCode::Internal, "lost the command's exit status"),
    }
    let _ = stream.shutdown(Shutdown::Both);
    if let Some(r) = reader {
        let _ = r.join();
    }
}

fn spawn_error_code(e: &SpawnError) -> ErrorCode {
    match e {
        SpawnError::NotFound(_) => ErrorCode::NotFound,
        SpawnError::Child { source, .. } => match source.kind() {
            io::ErrorKind::NotFound => ErrorCode::NotFound,
            io::ErrorKind::PermissionDenied => ErrorCode::PermissionDenied,
            _ => ErrorCode::SpawnFailed,
        },
        SpawnError::Reaper(_) => ErrorCode::Internal,
        _ => ErrorCode::SpawnFailed,
    }
}

fn spawn_thread<F: FnOnce() + Send + 'static>(name: &str, f: F) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(THREAD_STACK)
        .spawn(f)
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: F_GETFL/F_SETFL only read and set the file status flags of fd.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
}

/// poll(2) on up to two fds; returns the revents, or `None` on timeout.
fn poll2(a: (RawFd, i16), b: Option<(RawFd, i16)>, timeout: Option<Duration>) -> Option<[i16; 2]> {
    let mut fds = [
        libc::pollfd {
            fd: a.0,
            events: a.1,
            revents: 0,
        },
        libc::pollfd {
            fd: b.map_or(-1, |b| b.0),
            events: b.map_or(0, |b| b.1),
            revents: 0,
        },
    ];
    let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32);
    loop {
        // SAFETY: fds is a valid array of two pollfd; a negative fd is ignored.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if r > 0 {
            return Some([fds[0].revents, fds[1].revents]);
        }
        if r == 0 {
            return None;
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            // Treat a failing poll like activity: the read or write that follows
            // reports the real error.
            return Some([a.1, 0]);
        }
    }
}

/// Sends what the command writes on `src` as `kind` frames until end of file, or
/// after it exits until the output has been quiet for a moment.
fn pump(mut src: File, kind: Kind, writer: &FrameWriter, exited: &OwnedFd) {
    set_nonblocking(src.as_raw_fd());
    let mut buf = vec![0u8; PUMP_BUF];
    let mut drain_until: Option<Instant> = None;
    loop {
        let (other, timeout) = match drain_until {
            None => (Some((exited.as_raw_fd(), libc::POLLIN)), None),
            Some(end) => {
                let left = end.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return;
                }
                (None, Some(left.min(DRAIN_QUIET)))
            }
        };
        let Some([src_ev, exit_ev]) = poll2((src.as_raw_fd(), libc::POLLIN), other, timeout) else {
            return;
        };
        if exit_ev != 0 {
            drain_until = Some(Instant::now() + DRAIN_MAX);
        }
        if src_ev == 0 {
            continue;
        }
        match src.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if writer.send_data(kind, &buf[..n]).is_err() {
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            // EIO: a terminal whose other side is closed.
            Err(_) => return,
        }
    }
}

/// The host's side of an exec: stdin, resizes, signals.
struct Input {
    conn: UnixStream,
    writer: FrameWriter,
    pid: libc::pid_t,
    stdin: Stdin,
    tty: bool,
    pty: Option<OwnedFd>,
    finished: Arc<AtomicBool>,
}

impl Input {
    fn run(mut self) {
        let host_gone = loop {
            let frame = match Frame::read_from(&mut self.conn) {
                Ok(Some(f)) => f,
                Ok(None) | Err(agent_proto::ReadError::Io(_)) => break true,
                Err(agent_proto::ReadError::Truncated) => break true,
                Err(e) => {
                    if !self.finished.load(Ordering::Acquire) {
                        reject(&self.writer, &e);
                    }
                    break true;
                }
            };
            if let Err((code, msg)) = self.apply(frame) {
                if !self.finished.load(Ordering::Acquire) {
                    self.writer.error(code, msg);
                }
                break true;
            }
        };
        if host_gone && !self.finished.load(Ordering::Acquire) {
            log::debug!("host left pid {}: killing its group", self.pid);
            if let Ok(r) = Reaper::global() {
                r.signal_group(self.pid, libc::SIGKILL);
            }
            let _ = self.conn.shutdown(Shutdown::Both);
        }
    }

    fn apply(&mut self, frame: Frame) -> Result<(), (ErrorCode, String)> {
        match frame {
            Frame::StdinData(data) => self.write_stdin(&data),
            Frame::StdinClose => {
                match std::mem::replace(&mut self.stdin, Stdin::Closed) {
                    Stdin::Open(mut f) if self.tty => {
                        // A terminal has no end of file to close: send ^D (EOF at
                        // the start of a line in canonical mode).
                        let _ = f.write_all(&[0x04]);
                    }
                    Stdin::Open(_) | Stdin::Broken => {}
                    s @ Stdin::NotStreamed => self.stdin = s,
                    Stdin::Closed => {
                        return Err((ErrorCode::UnexpectedFrame, "stdin already closed".into()))
                    }
                }
                Ok(())
            }
            Frame::Resize(size) => {
                if let Some(pty) = &self.pty {
                    let _ = set_window_size(pty, size);
                }
                Ok(())
            }
            Frame::Signal(sig) => {
                if let Ok(r) = Reaper::global() {
                    r.signal_group(self.pid, sig);
                }
                Ok(())
            }
            other => Err((
                ErrorCode::UnexpectedFrame,
                format!("{:?} during an exec", other.kind()),
            )),
        }
    }

    fn write_stdin(&mut self, data: &[u8]) -> Result<(), (ErrorCode, String)> {
        let file = match &mut self.stdin {
            Stdin::Open(f) => f,
            Stdin::Broken => return Ok(()),
            Stdin::Closed => {
                return Err((
                    ErrorCode::UnexpectedFrame,
                    "stdin data after stdin close".into(),
                ))
            }
            Stdin::NotStreamed => {
                return Err((ErrorCode::InvalidRequest, "stdin is not streamed".into()))
            }
        };
        set_nonblocking(file.as_raw_fd());
        let mut rest = data;
        while !rest.is_empty() {
            match file.write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Wait for room, but notice the host leaving meanwhile.
                    let host = (self.conn.as_raw_fd(), libc::POLLRDHUP);
                    if let Some([_, host_ev]) =
                        poll2((file.as_raw_fd(), libc::POLLOUT), Some(host), None)
                    {
                        if host_ev & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0 {
                            return Err((ErrorCode::Internal, "host closed".into()));
                        }
                    }
                }
                Err(_) => {
                    // EPIPE: the command closed its stdin.
                    self.stdin = Stdin::Broken;
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}
