//! The control API: a VM's [`VmController`] served over a Unix socket as HTTP/1.1 and
//! JSON (`minivmm --api-socket PATH`; docs/api/openapi.json). The socket is created
//! mode 0600 (bound in a fresh 0700 directory, then linked into place, so it is never
//! reachable with wider permissions and never replaces anything). A few worker threads,
//! each confined by the VM's seccomp policy (role `api`), accept connections and serve
//! their requests in turn; a snapshot in progress does not hold up the others, which
//! answer 409 where they would conflict with it. A timer thread stops the VM when a
//! shutdown's grace period ends.

mod http;
mod routes;
mod timer;

pub use routes::{DEFAULT_SHUTDOWN_GRACE_MS, ROUTES};

use crate::controller::VmController;
use seccomp::{Filters, ThreadRole};
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Connections served at once; more wait to be accepted.
const WORKERS: usize = 4;

/// Errors setting up the API socket.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Something is at the socket's path already.
    #[error("API socket {0}: the path exists (remove it, or choose another)")]
    Exists(PathBuf),
    /// The socket could not be created.
    #[error("API socket {p}: {0}: {2}", p = .1.display())]
    Socket(&'static str, PathBuf, std::io::Error),
    /// A thread could not be started.
    #[error("API: cannot start a thread")]
    Spawn(#[source] std::io::Error),
    /// A thread could not be confined.
    #[error("API: {0}")]
    Seccomp(#[from] seccomp::SeccompError),
}

/// The API socket, bound and not yet serving: bind it before the VM starts, so that
/// a bad path is reported before anything runs. Dropping it removes the socket.
pub struct ApiSocket {
    path: PathBuf,
    listener: Option<UnixListener>,
}

/// A name no other process or earlier run uses: the pid and 64 random bits.
fn unique_name() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!(".api-{}-{:016x}", std::process::id(), h.finish())
}

impl ApiSocket {
    /// Creates the socket at `path`, mode 0600. Refuses a path that exists.
    pub fn bind(path: &Path) -> Result<Self, ApiError> {
        if path.symlink_metadata().is_ok() {
            return Err(ApiError::Exists(path.into()));
        }
        // sockaddr_un holds 108 bytes with the NUL: clients could not connect to more.
        if path.as_os_str().len() > 107 {
            let too_long =
                std::io::Error::other("longer than the 107 bytes a socket path may have");
            return Err(ApiError::Socket("path", path.into(), too_long));
        }
        let err = |what| move |e| ApiError::Socket(what, path.into(), e);
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        // A directory only we can enter holds the socket while its mode is set.
        let tmp = parent.join(unique_name());
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&tmp)
            .map_err(err("creating a private directory beside it"))?;
        let inner = tmp.join("s");
        let result: Result<UnixListener, ApiError> = (|| {
            let listener = UnixListener::bind(&inner).map_err(err("binding"))?;
            std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o600))
                .map_err(err("setting its mode"))?;
            // link(2), unlike rename(2), fails if something appeared at `path`.
            std::fs::hard_link(&inner, path).map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => ApiError::Exists(path.into()),
                _ => ApiError::Socket("linking it into place", path.into(), e),
            })?;
            Ok(listener)
        })();
        let _ = std::fs::remove_file(&inner);
        let _ = std::fs::remove_dir(&tmp);
        Ok(Self {
            path: path.into(),
            listener: Some(result?),
        })
    }

    /// Serves `vm` on this socket until the returned server is dropped.
    pub fn serve(mut self, vm: VmController) -> Result<ApiServer, ApiError> {
        let Some(listener) = self.listener.take() else {
            return Err(ApiError::Spawn(std::io::ErrorKind::NotFound.into()));
        };
        let shared = Arc::new(Shared {
            listener,
            stop: AtomicBool::new(false),
            conns: Mutex::new(BTreeMap::new()),
            next_conn: AtomicU64::new(0),
            timer: timer::StopTimer::default(),
        });
        // From here the server owns the path (and removes it when dropped).
        let mut server = ApiServer {
            path: std::mem::take(&mut self.path),
            shared,
            threads: Vec::new(),
        };
        let filters = vm.filters();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        for i in 0..=WORKERS {
            let (shared, vm, ready) = (server.shared.clone(), vm.clone(), ready_tx.clone());
            let filters: Arc<Filters> = filters.clone();
            let name = if i < WORKERS {
                format!("minivmm-api{i}")
            } else {
                "minivmm-apitimer".to_string()
            };
            let timer = i == WORKERS;
            let thread = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    let installed = filters.install(ThreadRole::Api, &name);
                    let ok = installed.is_ok();
                    let _ = ready.send(installed);
                    match (ok, timer) {
                        (false, _) => {}
                        (true, false) => work(&shared, &vm),
                        (true, true) => shared.timer.run(&vm),
                    }
                })
                .map_err(ApiError::Spawn)?;
            server.threads.push(thread);
        }
        for _ in 0..=WORKERS {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => return Err(seccomp::SeccompError::ThreadGone("api").into()),
            }
        }
        Ok(server)
    }
}

impl Drop for ApiSocket {
    fn drop(&mut self) {
        if self.listener.is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

struct Shared {
    listener: UnixListener,
    stop: AtomicBool,
    /// Open connections, to be shut down when the server stops.
    conns: Mutex<BTreeMap<u64, UnixStream>>,
    next_conn: AtomicU64,
    timer: timer::StopTimer,
}

/// A serving API; dropping it stops its threads and removes the socket.
pub struct ApiServer {
    path: PathBuf,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl ApiServer {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.timer.cancel();
        // SAFETY: shutdown(2) on the listener we own; it wakes the workers blocked
        // in accept(2), which then see the stop flag.
        unsafe { libc::shutdown(self.shared.listener.as_raw_fd(), libc::SHUT_RDWR) };
        for conn in self
            .shared
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A worker: accepts connections and serves them until the server stops.
fn work(shared: &Shared, vm: &VmController) {
    while !shared.stop.load(Ordering::SeqCst) {
        match shared.listener.accept() {
            Ok((stream, _)) => {
                let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
                let Ok(copy) = stream.try_clone() else {
                    continue;
                };
                shared
                    .conns
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id, copy);
                // Checked again now that the connection is registered: a server
                // stopping meanwhile has shut it down or will not wait for it.
                if !shared.stop.load(Ordering::SeqCst) {
                    serve(shared, vm, stream);
                }
                let mut conns = shared.conns.lock().unwrap_or_else(|p| p.into_inner());
                conns.remove(&id);
            }
            Err(e) if shared.stop.load(Ordering::SeqCst) => {
                log::debug!("api: accept ended ({e}); stopping");
            }
            Err(e) => {
                log::warn!("api: accept: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Writes with send(2) and MSG_NOSIGNAL: a client that went away is an error here,
/// never a SIGPIPE in whatever program embeds the API.
struct NoSigPipe<'a>(&'a UnixStream);

impl std::io::Write for NoSigPipe<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // SAFETY: send(2) reads `buf.len()` bytes from the live slice `buf`.
        let n = unsafe {
            libc::send(
                self.0.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Serves one connection's requests in turn.
fn serve(shared: &Shared, vm: &VmController, stream: UnixStream) {
    let _ = stream.set_write_timeout(Some(http::REQUEST_TIMEOUT));
    let Ok(out) = stream.try_clone() else {
        return;
    };
    let mut out = NoSigPipe(&out);
    let mut reader = http::Reader::new(stream);
    loop {
        let req = match reader.next_request() {
            Ok(req) => req,
            Err(e) => {
                if let Some(status) = e.status() {
                    let _ = http::Response::error(status, &e.to_string()).write_to(&mut out, true);
                }
                return;
            }
        };
        log::debug!("api: {} {}", req.method, req.path);
        let (response, after) = routes::handle(vm, &req);
        if let routes::After::StopAfter(grace) = after {
            shared.timer.stop_after(grace);
        }
        if response.write_to(&mut out, req.close).is_err() || req.close {
            return;
        }
    }
}
