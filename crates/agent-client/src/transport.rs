//! Reaching the agent: a Unix socket connected within a deadline, and for a VM the
//! Firecracker-style vsock handshake on the VMM's socket (`CONNECT <port>\n`,
//! answered `OK <host port>\n`).

use crate::error::{ClientError, HandshakeError};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Longest handshake answer read (`OK 4294967295\n` is 14 bytes).
pub const MAX_HANDSHAKE_LINE: usize = 32;

/// Where the agent is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// The VMM's vsock Unix socket and the guest port.
    Vsock {
        /// The VMM's socket.
        uds: PathBuf,
        /// The guest port (the agent's default is [`agent_proto::DEFAULT_PORT`]).
        port: u32,
    },
    /// A Unix socket the agent itself listens on (host tests).
    Unix(PathBuf),
}

impl Transport {
    /// Connects and, for vsock, shakes hands, all within `timeout`.
    pub fn connect(&self, timeout: Duration) -> Result<UnixStream, ClientError> {
        let deadline = Instant::now() + timeout;
        match self {
            Self::Unix(path) => connect_unix(path, deadline),
            Self::Vsock { uds, port } => {
                let mut s = connect_unix(uds, deadline)?;
                let left = deadline.saturating_duration_since(Instant::now());
                let handshake = |source| ClientError::Handshake {
                    path: uds.clone(),
                    port: *port,
                    source,
                };
                set_timeouts(&s, Some(left.max(Duration::from_millis(1))))
                    .map_err(|e| handshake(HandshakeError::Send(e)))?;
                s.write_all(format!("CONNECT {port}\n").as_bytes())
                    .map_err(|e| handshake(HandshakeError::Send(e)))?;
                match read_handshake(&mut s) {
                    Ok(_) => Ok(s),
                    Err(HandshakeError::Read(e)) if is_timeout(&e) => {
                        Err(ClientError::AgentTimeout {
                            waiting_for: "the vsock handshake",
                            after: timeout,
                            last: None,
                        })
                    }
                    Err(e) => Err(handshake(e)),
                }
            }
        }
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        match self {
            Self::Vsock { uds, .. } => uds,
            Self::Unix(p) => p,
        }
    }
}

/// Whether an I/O error is a socket timeout.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Sets both socket timeouts.
pub fn set_timeouts(s: &UnixStream, t: Option<Duration>) -> io::Result<()> {
    s.set_read_timeout(t)?;
    s.set_write_timeout(t)
}

/// Reads the handshake answer byte by byte (nothing past its newline) and returns
/// the host-side port it names.
pub fn read_handshake<R: Read + ?Sized>(r: &mut R) -> Result<u32, HandshakeError> {
    let mut line = Vec::with_capacity(MAX_HANDSHAKE_LINE);
    loop {
        let mut b = [0u8; 1];
        match r.read(&mut b) {
            Ok(0) => return Err(HandshakeError::Closed),
            Ok(_) if b[0] == b'\n' => break,
            Ok(_) if line.len() >= MAX_HANDSHAKE_LINE => {
                return Err(HandshakeError::TooLong(MAX_HANDSHAKE_LINE))
            }
            Ok(_) => line.push(b[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Err(HandshakeError::Closed)
            }
            Err(e) => return Err(HandshakeError::Read(e)),
        }
    }
    let text = String::from_utf8_lossy(&line).into_owned();
    text.strip_prefix("OK ")
        .and_then(|p| p.trim_end_matches('\r').parse().ok())
        .ok_or(HandshakeError::Refused(text))
}

/// Connects a Unix stream socket, retrying while the listener's backlog is full until
/// `deadline`.
fn connect_unix(path: &Path, deadline: Instant) -> Result<UnixStream, ClientError> {
    let fail = |source| ClientError::Connect {
        path: path.to_path_buf(),
        source,
    };
    // SAFETY: sockaddr_un is plain data; zeroed is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() || bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(fail(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a usable socket path",
        )));
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    // SAFETY: socket has no memory effects.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(fail(io::Error::last_os_error()));
    }
    // SAFETY: fd was just created and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    loop {
        // SAFETY: addr is a valid sockaddr_un and len covers the path and its NUL.
        let r = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast(),
                len as libc::socklen_t,
            )
        };
        if r == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Some(libc::EAGAIN) => {
                return Err(fail(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the listener's backlog stayed full",
                )))
            }
            _ => return Err(fail(e)),
        }
    }
    let stream = UnixStream::from(fd);
    stream.set_nonblocking(false).map_err(fail)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs(bytes: &[u8]) -> Result<u32, HandshakeError> {
        read_handshake(&mut &bytes[..])
    }

    #[test]
    fn handshake_answers() {
        assert_eq!(hs(b"OK 1073741824\n").unwrap(), 1073741824);
        assert_eq!(hs(b"OK 5\r\nfollowing protocol bytes").unwrap(), 5);
        assert!(matches!(hs(b""), Err(HandshakeError::Closed)));
        assert!(matches!(hs(b"OK 5"), Err(HandshakeError::Closed)));
        assert!(matches!(hs(b"NO\n"), Err(HandshakeError::Refused(_))));
        assert!(matches!(hs(b"OK x\n"), Err(HandshakeError::Refused(_))));
        assert!(matches!(hs(&[b'O'; 100]), Err(HandshakeError::TooLong(_))));
    }

    #[test]
    fn handshake_reads_nothing_past_the_newline() {
        let data = b"OK 7\nREST";
        let mut r = &data[..];
        assert_eq!(read_handshake(&mut r).unwrap(), 7);
        assert_eq!(r, b"REST");
    }

    #[test]
    fn connect_fails_fast_without_a_listener() {
        let dir = std::env::temp_dir().join(format!("agent-client-t-{}", std::process::id()));
        let t = Transport::Unix(dir.join("none.sock"));
        let start = Instant::now();
        assert!(matches!(
            t.connect(Duration::from_secs(5)),
            Err(ClientError::Connect { .. })
        ));
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
