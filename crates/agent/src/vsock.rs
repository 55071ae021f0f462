//! The AF_VSOCK listener the agent serves in the guest, on libc directly.

use crate::server::Listener;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

/// Setting up the vsock listener failed.
#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    /// socket(AF_VSOCK) failed: no vsock transport in this kernel?
    #[error("creating an AF_VSOCK socket")]
    Socket(#[source] io::Error),
    /// bind failed.
    #[error("binding vsock port {port}")]
    Bind {
        /// The port.
        port: u32,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// listen failed.
    #[error("listening on vsock port {port}")]
    Listen {
        /// The port.
        port: u32,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// A listening AF_VSOCK stream socket on any CID.
pub struct VsockListener {
    fd: OwnedFd,
}

impl VsockListener {
    /// Listens on `port` of any CID.
    pub fn bind(port: u32) -> Result<Self, VsockError> {
        // SAFETY: socket has no memory effects.
        let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(VsockError::Socket(io::Error::last_os_error()));
        }
        // SAFETY: fd was just created and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_vm is plain data; zeroed is valid (and zeroes svm_zero).
        let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
        addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
        addr.svm_port = port;
        addr.svm_cid = libc::VMADDR_CID_ANY;
        // SAFETY: addr is a valid sockaddr_vm of the given length.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_vm).cast(),
                std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(VsockError::Bind {
                port,
                source: io::Error::last_os_error(),
            });
        }
        // SAFETY: listen has no memory effects.
        if unsafe { libc::listen(fd.as_raw_fd(), 128) } != 0 {
            return Err(VsockError::Listen {
                port,
                source: io::Error::last_os_error(),
            });
        }
        Ok(Self { fd })
    }
}

impl Listener for VsockListener {
    fn accept(&self) -> io::Result<UnixStream> {
        loop {
            // SAFETY: null address pointers ask for no peer address.
            let fd = unsafe {
                libc::accept4(
                    self.fd.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_CLOEXEC,
                )
            };
            if fd >= 0 {
                // SAFETY: fd was just accepted and is owned by nothing else. The
                // stream type only carries it: every call the agent makes on it is a
                // plain socket call that works on vsock.
                return Ok(UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) }));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}
