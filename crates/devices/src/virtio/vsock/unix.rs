//! Host Unix-socket calls the vsock backend makes: a non-blocking connect that never
//! waits on a full backlog, and sends and receives that never block or raise SIGPIPE.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Longest socket path (`sun_path` less its terminating NUL).
pub const MAX_PATH_LEN: usize = 107;

/// Connects a non-blocking stream to the listener at `path`. A listener whose backlog
/// is full answers `WouldBlock` at once, like one that is absent answers an error.
pub fn connect(path: &Path) -> io::Result<UnixStream> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() > MAX_PATH_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket path too long",
        ));
    }
    // SAFETY: sockaddr_un is plain old data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: socket() takes no pointers; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    // SAFETY: addr is a valid sockaddr_un and len does not exceed its size.
    let rc = unsafe {
        libc::connect(
            owned.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast(),
            len as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(UnixStream::from(owned))
}

/// Sends what it can of `data` without blocking or SIGPIPE.
pub fn send(stream: &UnixStream, data: &[u8]) -> io::Result<usize> {
    // SAFETY: data is a valid buffer of data.len() bytes for the call.
    let n = unsafe {
        libc::send(
            stream.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Receives into `buf` without blocking (0: the peer will send no more); with `peek`
/// the bytes stay in the socket.
pub fn recv(stream: &UnixStream, buf: &mut [u8], peek: bool) -> io::Result<usize> {
    let flags = libc::MSG_DONTWAIT | if peek { libc::MSG_PEEK } else { 0 };
    // SAFETY: buf is a valid, writable buffer of buf.len() bytes for the call.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            flags,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn connect_send_recv_and_refusals() {
        let dir = std::env::temp_dir().join(format!("minivmm-vsock-unix-{}", std::process::id()));
        let _ = std::fs::create_dir(&dir);
        let path = dir.join("s");
        let _ = std::fs::remove_file(&path);
        assert!(connect(&path).is_err(), "no listener yet");
        let listener = UnixListener::bind(&path).unwrap();
        let a = connect(&path).unwrap();
        let (b, _) = listener.accept().unwrap();
        assert_eq!(send(&a, b"hello").unwrap(), 5);
        let mut buf = [0u8; 8];
        assert_eq!(recv(&b, &mut buf, true).unwrap(), 5);
        assert_eq!(recv(&b, &mut buf[..2], false).unwrap(), 2);
        assert_eq!(&buf[..2], b"he");
        assert_eq!(
            recv(&a, &mut buf, false).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert_eq!(recv(&b, &mut buf[..3], false).unwrap(), 3);
        drop(b);
        assert_eq!(recv(&a, &mut buf, false).unwrap(), 0);
        // A closed peer: an error, no SIGPIPE (the test would die of it).
        assert!(send(&a, b"x").is_err() || send(&a, b"x").is_err());
        let long = dir.join("x".repeat(200));
        assert!(connect(&long).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
