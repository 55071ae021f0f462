//! The control API: a VM's [`VmController`] served over a Unix socket as HTTP/1.1 and
//! JSON (`minivmm --api-socket PATH`; docs/api/openapi.json). The socket is created
//! mode 0600 (bound in a fresh 0700 directory, then renamed into place, so it is never
//! reachable with wider permissions). A few worker threads, each confined by the
//! VM's seccomp policy (role `api`), accept connections and serve their requests in
//! turn; a snapshot in progress does not hold up the others, which answer 409 where
//! they would conflict with it.

mod http;
mod routes;

pub use routes::{DEFAULT_SHUTDOWN_GRACE_MS, ROUTES};

use crate::controller::VmController;
use seccomp::{Filters, ThreadRole};
use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Connections served at once; more wait to be accepted.
const WORKERS: usize = 4;
/// An idle connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors setting up the API socket.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Something is at the socket's path already.
    #[error("API socket {0}: the path exists (remove it, or choose another)")]
    Exists(PathBuf),
    /// The socket could not be created.
    #[error("API socket {p}: {0}: {2}", p = .1.display())]
    Socket(&'static str, PathBuf, std::io::Error),
    /// A worker thread could not be started.
    #[error("API: cannot start a worker thread")]
    Spawn(#[source] std::io::Error),
    /// A worker could not be confined.
    #[error("API: {0}")]
    Seccomp(#[from] seccomp::SeccompError),
}

/// The API socket, bound and not yet serving: bind it before the VM starts, so that
/// a bad path is reported before anything runs.
pub struct ApiSocket {
    path: PathBuf,
    listener: UnixListener,
}

impl ApiSocket {
    /// Creates the socket at `path`, mode 0600. Refuses a path that exists.
    pub fn bind(path: &Path) -> Result<Self, ApiError> {
        if path.symlink_metadata().is_ok() {
            return Err(ApiError::Exists(path.into()));
        }
        let err = |what| move |e| ApiError::Socket(what, path.into(), e);
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = path.file_name().ok_or_else(|| {
            ApiError::Socket(
                "no file name",
                path.into(),
                std::io::ErrorKind::InvalidInput.into(),
            )
        })?;
        // A directory only we can enter holds the socket while its mode is set.
        let tmp = parent.join(format!(
            ".{}.{}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&tmp)
            .map_err(err("creating a private directory beside it"))?;
        let inner = tmp.join("s");
        let result: Result<UnixListener, ApiError> = (|| {
            let listener = UnixListener::bind(&inner).map_err(err("binding"))?;
            std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o600))
                .map_err(err("setting its mode"))?;
            std::fs::rename(&inner, path).map_err(err("moving it into place"))?;
            Ok(listener)
        })();
        let _ = std::fs::remove_file(&inner);
        let _ = std::fs::remove_dir(&tmp);
        Ok(Self {
            path: path.into(),
            listener: result?,
        })
    }

    /// Serves `vm` on this socket until the returned server is dropped.
    pub fn serve(self, vm: VmController) -> Result<ApiServer, ApiError> {
        let shared = Arc::new(Shared {
            listener: self.listener,
            stop: AtomicBool::new(false),
            conns: Mutex::new(BTreeMap::new()),
            next_conn: AtomicU64::new(0),
        });
        let filters = vm.filters();
        let mut server = ApiServer {
            path: self.path,
            shared,
            workers: Vec::new(),
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        for i in 0..WORKERS {
            let (shared, vm, ready) = (server.shared.clone(), vm.clone(), ready_tx.clone());
            let filters: Arc<Filters> = filters.clone();
            let name = format!("minivmm-api{i}");
            let worker = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    let installed = filters.install(ThreadRole::Api, &name);
                    let ok = installed.is_ok();
                    let _ = ready.send(installed);
                    if ok {
                        work(&shared, &vm);
                    }
                })
                .map_err(ApiError::Spawn)?;
            server.workers.push(worker);
        }
        for _ in 0..WORKERS {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => return Err(seccomp::SeccompError::ThreadGone("api").into()),
            }
        }
        Ok(server)
    }
}

struct Shared {
    listener: UnixListener,
    stop: AtomicBool,
    /// Open connections, to be shut down when the server stops.
    conns: Mutex<BTreeMap<u64, UnixStream>>,
    next_conn: AtomicU64,
}

/// A serving API; dropping it stops its threads and removes the socket.
pub struct ApiServer {
    path: PathBuf,
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
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
        for w in self.workers.drain(..) {
            let _ = w.join();
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
                if let Ok(copy) = stream.try_clone() {
                    let mut conns = shared.conns.lock().unwrap_or_else(|p| p.into_inner());
                    conns.insert(id, copy);
                }
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

/// Serves one connection's requests in turn.
fn serve(shared: &Shared, vm: &VmController, stream: UnixStream) {
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IDLE_TIMEOUT));
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
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
        if response.write_to(&mut out, req.close).is_err() {
            return;
        }
        if let routes::After::StopAfter(grace) = after {
            let deadline = Instant::now() + grace;
            while vm.is_alive() && Instant::now() < deadline && !shared.stop.load(Ordering::SeqCst)
            {
                std::thread::sleep(Duration::from_millis(2));
            }
            if vm.is_alive() {
                log::info!("api: the guest did not power off within {grace:?}; stopping it");
                vm.stop();
            }
        }
        if req.close {
            return;
        }
    }
}
