//! The accept loop and the dispatch of a connection's one request.
//!
//! Every connection gets its own thread; its first frame says what it is for
//! (version, exec, write-file, read-file, power-off). A frame that cannot be decoded
//! or does not belong gets an error answer, then the connection closes.

use crate::conn::{chain, linger_and_close, FrameWriter};
use crate::{exec, files};
use agent_proto::{ErrorCode, Frame, FrameError, ReadError, Version, PROTOCOL_VERSION};
use std::convert::Infallible;
use std::io;
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a new connection may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Stack of a connection thread and of its helpers.
pub(crate) const THREAD_STACK: usize = 256 * 1024;

/// Something that hands out connections: a Unix listener (host tests) or a vsock
/// one (in the guest). A vsock connection is carried in a `UnixStream`: every call
/// the agent makes on it (read, write, shutdown, SO_RCVTIMEO) is a plain socket call.
pub trait Listener: Send {
    /// Waits for the next connection.
    fn accept(&self) -> io::Result<UnixStream>;
}

impl Listener for UnixListener {
    fn accept(&self) -> io::Result<UnixStream> {
        UnixListener::accept(self).map(|(s, _)| s)
    }
}

/// What a power-off request runs after `sync()` and the answer.
pub type PowerOff = Arc<dyn Fn() -> io::Result<()> + Send + Sync>;

/// How the server behaves.
#[derive(Clone)]
pub struct ServerConfig {
    /// Connections served at once; more get a `Busy` error.
    pub max_connections: usize,
    /// What a power-off request does; `None` refuses it (host tests).
    pub power_off: Option<PowerOff>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_connections: 256,
            power_off: Some(Arc::new(crate::init::power_off)),
        }
    }
}

/// Serving stopped: the listener failed in a way retrying cannot fix.
#[derive(Debug, thiserror::Error)]
#[error("accepting connections")]
pub struct ServeError(#[source] io::Error);

/// Serves connections from `listener` until it fails for good. Transient accept
/// errors (a connection reset before accept, out of file descriptors) are logged and
/// retried.
pub fn serve<L: Listener>(listener: L, config: ServerConfig) -> Result<Infallible, ServeError> {
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let stream = match listener.accept() {
            Ok(s) => s,
            Err(e) => match e.raw_os_error() {
                Some(libc::EBADF | libc::EINVAL | libc::ENOTSOCK | libc::EOPNOTSUPP) => {
                    return Err(ServeError(e))
                }
                _ => {
                    log::warn!("accept: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            },
        };
        if active.fetch_add(1, Ordering::AcqRel) >= config.max_connections {
            active.fetch_sub(1, Ordering::AcqRel);
            if let Ok(w) = FrameWriter::new(&stream) {
                w.error(ErrorCode::Busy, "too many connections");
            }
            continue;
        }
        let guard = ActiveGuard(active.clone());
        let config = config.clone();
        let started = std::thread::Builder::new()
            .name("conn".into())
            .stack_size(THREAD_STACK)
            .spawn(move || {
                let _guard = guard;
                handle(stream, &config);
            });
        if let Err(e) = started {
            log::warn!("starting a connection thread: {e}");
        }
    }
}

/// Decrements the active-connection count when a connection's thread ends.
struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves one connection's request.
pub fn handle(mut stream: UnixStream, config: &ServerConfig) {
    let writer = match FrameWriter::new(&stream) {
        Ok(w) => w,
        Err(e) => {
            log::warn!("cloning a connection: {e}");
            return;
        }
    };
    let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
    let first = Frame::read_from(&mut stream);
    let _ = stream.set_read_timeout(None);
    let request = match first {
        Ok(Some(f)) => f,
        Ok(None) => return,
        Err(e) => {
            reject(&writer, &e);
            linger_and_close(stream);
            return;
        }
    };
    match request {
        Frame::VersionRequest { protocol } => {
            if protocol != PROTOCOL_VERSION {
                log::warn!("host speaks protocol {protocol}, this agent {PROTOCOL_VERSION}");
            }
            let _ = writer.send(&Frame::Version(Version {
                agent: env!("CARGO_PKG_VERSION").into(),
                protocol: PROTOCOL_VERSION,
            }));
            let _ = stream.shutdown(Shutdown::Write);
        }
        Frame::Exec(req) => exec::run(stream, writer, req),
        Frame::WriteFile(req) => files::write_file(stream, writer, req),
        Frame::ReadFile { path } => files::read_file(stream, writer, &path),
        Frame::Setup(req) => crate::setup::run(stream, writer, req),
        Frame::PowerOff => power_off(stream, writer, config),
        other => {
            writer.error(
                ErrorCode::UnexpectedFrame,
                format!(
                    "a connection must start with a request, not {:?}",
                    other.kind()
                ),
            );
            linger_and_close(stream);
        }
    }
}

/// Answers a frame that could not be read with the matching error.
pub(crate) fn reject(writer: &FrameWriter, e: &ReadError) {
    match e {
        ReadError::Invalid(FrameError::UnknownKind(k)) => writer.error(
            ErrorCode::UnknownKind,
            format!("unknown frame kind {k:#04x}"),
        ),
        ReadError::Invalid(_) => writer.error(ErrorCode::BadFrame, chain(e)),
        ReadError::Io(_) | ReadError::Truncated => log::debug!("reading a request: {}", chain(e)),
    }
}

fn power_off(stream: UnixStream, writer: FrameWriter, config: &ServerConfig) {
    let Some(action) = &config.power_off else {
        writer.error(
            ErrorCode::InvalidRequest,
            "power-off is disabled in this agent",
        );
        linger_and_close(stream);
        return;
    };
    // SAFETY: geteuid has no memory effects.
    if unsafe { libc::geteuid() } != 0 {
        writer.error(
            ErrorCode::PermissionDenied,
            "the agent does not run as root",
        );
        linger_and_close(stream);
        return;
    }
    log::info!("power-off requested: syncing");
    // SAFETY: sync has no memory effects.
    unsafe { libc::sync() };
    let _ = writer.send(&Frame::Ok);
    // Give the host a moment to read the answer and close its side.
    linger_and_close(stream);
    if let Err(e) = action() {
        log::error!("power-off: {e}");
    }
}
