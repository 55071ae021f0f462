//! Pseudo-terminals: a master/slave pair opened close-on-exec (so a concurrent fork
//! elsewhere in the agent never inherits them), and the window size.

use agent_proto::WindowSize;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Opening a pseudo-terminal failed.
#[derive(Debug, thiserror::Error)]
pub enum PtyError {
    /// `/dev/ptmx` could not be opened (is devpts mounted on /dev/pts?).
    #[error("opening ptmx")]
    OpenMaster(#[source] io::Error),
    /// unlockpt or TIOCGPTN failed.
    #[error("unlocking the pseudo-terminal")]
    Unlock(#[source] io::Error),
    /// The slave could not be opened.
    #[error("opening the pseudo-terminal slave {path}")]
    OpenSlave {
        /// Its path.
        path: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// TIOCSWINSZ failed.
    #[error("setting the window size")]
    WindowSize(#[source] io::Error),
}

/// A pseudo-terminal pair.
pub struct Pty {
    /// The agent's end.
    pub master: OwnedFd,
    /// The command's end (its controlling terminal).
    pub slave: OwnedFd,
}

impl Pty {
    /// Opens a pair from the devpts file system at `pts` (its `ptmx` and its
    /// numbered slaves) and sets its size.
    pub fn open(size: WindowSize, pts: &str) -> Result<Pty, PtyError> {
        let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
        let ptmx = CString::new(format!("{pts}/ptmx"))
            .map_err(|_| PtyError::OpenMaster(io::Error::from(io::ErrorKind::InvalidInput)))?;
        // SAFETY: the path is a NUL-terminated string that outlives the call.
        let fd = unsafe { libc::open(ptmx.as_ptr(), flags) };
        if fd < 0 {
            return Err(PtyError::OpenMaster(io::Error::last_os_error()));
        }
        // SAFETY: fd was just opened and is owned by nothing else.
        let master = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: unlockpt only issues TIOCSPTLCK on the fd.
        if unsafe { libc::unlockpt(master.as_raw_fd()) } != 0 {
            return Err(PtyError::Unlock(io::Error::last_os_error()));
        }
        let mut n: libc::c_uint = 0;
        // SAFETY: TIOCGPTN writes one unsigned int into `n`.
        if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN as _, &mut n) } != 0 {
            return Err(PtyError::Unlock(io::Error::last_os_error()));
        }
        let path = format!("{pts}/{n}");
        let open_slave = |source| PtyError::OpenSlave {
            path: path.clone(),
            source,
        };
        let cpath = CString::new(path.clone())
            .map_err(|_| open_slave(io::Error::from(io::ErrorKind::InvalidInput)))?;
        // SAFETY: cpath is NUL-terminated.
        let fd = unsafe { libc::open(cpath.as_ptr(), flags) };
        if fd < 0 {
            return Err(open_slave(io::Error::last_os_error()));
        }
        // SAFETY: fd was just opened and is owned by nothing else.
        let slave = unsafe { OwnedFd::from_raw_fd(fd) };
        let pty = Pty { master, slave };
        set_window_size(&pty.master, size)?;
        Ok(pty)
    }
}

/// Sets the terminal size on either end of a pseudo-terminal.
pub fn set_window_size(fd: &impl AsRawFd, size: WindowSize) -> Result<(), PtyError> {
    let ws = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ as _, &ws) } != 0 {
        return Err(PtyError::WindowSize(io::Error::last_os_error()));
    }
    Ok(())
}

/// A file for the master end (reads and writes).
pub fn master_file(pty_master: &OwnedFd) -> io::Result<File> {
    Ok(File::from(pty_master.try_clone()?))
}
