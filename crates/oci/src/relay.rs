//! The container's standard streams between the VMM process and the guest: the
//! process's stdin, stdout and stderr (the shim's pipes, inherited from `create`),
//! or with a terminal a pseudo-terminal whose master went to `--console-socket`.

use crate::error::OciError;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread::JoinHandle;
use vmm::sandbox::{ExecStdin, OutputReader};
use vmm_sys_util::sock_ctrl_msg::ScmSocket;

/// Where the container's streams are on the host.
pub enum HostStreams {
    /// The VMM process's own fds 0, 1 and 2.
    Inherited,
    /// The slave side of a pseudo-terminal (raw: the guest's terminal does the line
    /// discipline).
    Terminal(File),
}

impl HostStreams {
    /// A pseudo-terminal whose master is sent (SCM_RIGHTS) to the Unix socket
    /// `socket`, as runc does for `--console-socket`.
    pub fn console(socket: &Path) -> Result<Self, OciError> {
        let err = |what: &'static str, e: std::io::Error| OciError::Process(what, e.to_string());
        let (mut master, mut slave) = (-1, -1);
        // SAFETY: openpty writes two fds; the null name/termios/winsize are allowed.
        let r = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        if r != 0 {
            return Err(err(
                "opening a pseudo-terminal",
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: both fds were just opened and belong to nothing else.
        let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), File::from_raw_fd(slave)) };
        // SAFETY: termios is plain data; tcgetattr fills it, cfmakeraw and
        // tcsetattr read it.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(slave.as_raw_fd(), &mut t) == 0 {
                libc::cfmakeraw(&mut t);
                libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &t);
            }
        }
        let stream =
            UnixStream::connect(socket).map_err(|e| err("connecting to the console socket", e))?;
        stream
            .send_with_fd(&b"/dev/ptmx"[..], master.as_raw_fd())
            .map_err(|e| {
                err(
                    "sending the terminal",
                    std::io::Error::from_raw_os_error(e.errno()),
                )
            })?;
        Ok(Self::Terminal(slave))
    }

    /// The terminal's size (rows, columns), when there is one.
    pub fn size(&self) -> Option<(u16, u16)> {
        let Self::Terminal(t) = self else { return None };
        // SAFETY: winsize is plain data that TIOCGWINSZ fills.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: the fd is open; the ioctl writes only `ws`.
        let r = unsafe { libc::ioctl(t.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
        (r == 0 && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
    }

    fn reader(&self) -> std::io::Result<File> {
        match self {
            Self::Inherited => dup(0),
            Self::Terminal(t) => t.try_clone(),
        }
    }

    fn writer(&self, fd: i32) -> std::io::Result<File> {
        match self {
            Self::Inherited => dup(fd),
            Self::Terminal(t) => t.try_clone(),
        }
    }

    /// Starts copying: host input to the guest's stdin (left running: it may block
    /// on a read), guest stdout and stderr to the host. Returns the output copies to
    /// join after the process exits.
    pub fn start(
        &self,
        stdin: Option<ExecStdin>,
        stdout: Option<OutputReader>,
        stderr: Option<OutputReader>,
    ) -> Result<Vec<JoinHandle<()>>, OciError> {
        let err = |e: std::io::Error| OciError::Process("duplicating a stream", e.to_string());
        if let Some(mut input) = stdin {
            let mut from = self.reader().map_err(err)?;
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = from.read(&mut buf) {
                    if n == 0 || input.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = input.close();
            });
        }
        let mut copies = Vec::new();
        for (reader, fd) in [(stdout, 1), (stderr, 2)] {
            if let Some(r) = reader {
                copies.push(copy_out(r, self.writer(fd).map_err(err)?));
            }
        }
        Ok(copies)
    }
}

fn dup(fd: i32) -> std::io::Result<File> {
    // SAFETY: F_DUPFD_CLOEXEC makes a new fd; nothing else is touched.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `new` was just made and is owned by nothing else.
    Ok(unsafe { File::from_raw_fd(new) })
}

fn copy_out(mut from: OutputReader, mut to: File) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    })
}
