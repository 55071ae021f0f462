//! One share's file server: fuse-backend-rs's FUSE request handling over the share's
//! [`Confined`] passthrough file system, fed from the device's queues. It runs on the
//! share's own thread in a VM ([`crate::worker`]), inline in tests and fuzzing.

use crate::confine::{Confined, Limits};
use crate::error::FsError;
use crate::guest_memory::{fuse_queue, FuseGuestMemory, FuseMemory, FuseQueue};
use devices::virtio::VirtioInterrupt;
use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::passthrough::{CachePolicy, Config, PassthroughFs};
use fuse_backend_rs::transport::{Reader, VirtioFsWriter};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use virtio_queue_fuse::QueueT;
use vm_memory::GuestMemoryMmap;

/// The file system a share serves.
pub type ShareFs = Confined<PassthroughFs<()>>;

/// Counts of one share.
#[derive(Debug, Default)]
pub struct FsCounters {
    /// FUSE requests served (answered, or forgets that need no answer).
    pub requests: AtomicU64,
    /// Requests the server could not decode or answer.
    pub failed: AtomicU64,
    /// Chains that were no usable request (outside guest memory, too long).
    pub malformed: AtomicU64,
}
devices::counter_set!(FsCounters {
    requests,
    failed,
    malformed
});

/// Sets up the passthrough file system of the directory `root`: its descriptors
/// (the root, `/proc/self/fd`) are opened now, before any sandbox is in place.
pub fn open_share(root: &Path, read_only: bool, limits: Limits) -> Result<ShareFs, FsError> {
    let meta = std::fs::metadata(root).map_err(|e| FsError::OpenDir(root.to_path_buf(), e))?;
    if !meta.is_dir() {
        return Err(FsError::NotDirectory(root.to_path_buf()));
    }
    // Absolute: the file server opens it again when the guest mounts the share.
    let absolute =
        std::fs::canonicalize(root).map_err(|e| FsError::OpenDir(root.to_path_buf(), e))?;
    let root_dir = absolute
        .to_str()
        .ok_or_else(|| {
            FsError::OpenDir(
                root.to_path_buf(),
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "path is not UTF-8"),
            )
        })?
        .to_string();
    let cfg = Config {
        root_dir,
        // The guest's caches follow the host's (attributes and entries for a second):
        // files the host changes show in the guest.
        cache_policy: CachePolicy::Auto,
        attr_timeout: Duration::from_secs(1),
        entry_timeout: Duration::from_secs(1),
        // Extended attributes stay off: `security.capability` on a host file is a
        // privilege a guest must not be able to grant.
        xattr: false,
        writeback: false,
        do_import: true,
        ..Config::default()
    };
    let passthrough =
        PassthroughFs::new(cfg).map_err(|e| FsError::Passthrough(root.to_path_buf(), e))?;
    // `import` clears the umask (so that the guest's modes are kept as given); that
    // is for the file server's thread alone (`worker`), not for this process.
    // SAFETY: umask changes no memory and always succeeds.
    let umask = unsafe { libc::umask(0) };
    let imported = passthrough.import();
    // SAFETY: as above.
    unsafe { libc::umask(umask) };
    imported.map_err(|e| FsError::Passthrough(root.to_path_buf(), e))?;
    Ok(Confined::new(passthrough, read_only, limits))
}

/// What the driver handed over at activation, in the file server's types.
pub(crate) struct Active {
    memory: FuseMemory,
    queues: Vec<FuseQueue>,
    interrupt: VirtioInterrupt,
}

impl Active {
    /// Takes over the driver's queues over `memory`.
    pub(crate) fn new(
        memory: GuestMemoryMmap,
        queues: &[virtio_queue::Queue],
        interrupt: VirtioInterrupt,
    ) -> Result<Self, FsError> {
        Ok(Self {
            memory: FuseMemory::new(memory)?,
            queues: queues.iter().map(fuse_queue).collect::<Result<_, _>>()?,
            interrupt,
        })
    }
}

/// The FUSE server of one share and, once activated, its queues.
pub(crate) struct FileServer {
    server: Server<Arc<ShareFs>>,
    pub(crate) active: Option<Active>,
    counters: Arc<FsCounters>,
}

impl FileServer {
    pub(crate) fn new(fs: Arc<ShareFs>, counters: Arc<FsCounters>) -> Self {
        Self {
            server: Server::new(fs),
            active: None,
            counters,
        }
    }

    /// Serves every request the driver has made available on queue `index`, then
    /// interrupts it once if any was returned.
    pub(crate) fn process(&mut self, index: usize) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let mem = &active.memory.view;
        let Some(queue) = active.queues.get_mut(index) else {
            devices::guest_warn!("virtio-fs: notification for missing queue {index}");
            return;
        };
        let mut used = false;
        while let Some(chain) = queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let len = serve(&self.server, mem, chain, &self.counters);
            if let Err(e) = queue.add_used(mem, head, len) {
                devices::guest_warn!("virtio-fs: cannot return descriptor {head}: {e:?}");
                break;
            }
            used = true;
        }
        if used && queue.needs_notification(mem).unwrap_or(true) {
            active.interrupt.signal_used_queue();
        }
    }
}

/// Handles one request chain; returns the used length (the reply's size).
fn serve(
    server: &Server<Arc<ShareFs>>,
    mem: &FuseGuestMemory,
    chain: virtio_queue_fuse::DescriptorChain<&FuseGuestMemory>,
    counters: &FsCounters,
) -> u32 {
    let reader = Reader::from_descriptor_chain(mem, chain.clone());
    let writer = VirtioFsWriter::new(mem, chain);
    let (reader, writer) = match (reader, writer) {
        (Ok(r), Ok(w)) => (r, w),
        (Err(e), _) | (_, Err(e)) => {
            counters.malformed.fetch_add(1, Ordering::Relaxed);
            devices::guest_warn!("virtio-fs: malformed request chain: {e}");
            return 0;
        }
    };
    match server.handle_message(reader, writer.into(), None, None) {
        Ok(n) => {
            counters.requests.fetch_add(1, Ordering::Relaxed);
            u32::try_from(n).unwrap_or(0)
        }
        Err(e) => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            devices::guest_warn!("virtio-fs: request not served: {e}");
            0
        }
    }
}
