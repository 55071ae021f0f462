//! The share's policy, between the FUSE server and the passthrough file system.
//!
//! fuse-backend-rs's passthrough file system already confines names: it walks one
//! component at a time from descriptors it holds (`openat` with `O_PATH | O_NOFOLLOW`
//! relative to the parent's descriptor), never follows a symbolic link on the host,
//! maps `..` at the root to the root, and opens only regular files and directories.
//! [`Confined`] adds what a VMM must decide on top of that for an untrusted guest:
//!
//! - a read-only share refuses every request that would change it (`EROFS`);
//! - no device nodes are created on the host (`mknod` of a character or block device,
//!   a rename that leaves a whiteout: `EPERM`/`EINVAL`);
//! - set-user-ID and set-group-ID bits are never set on the host (cleared from the
//!   modes of `create`, `mkdir`, `mknod` and `chmod`), so a guest cannot leave a
//!   set-ID program for host users to run;
//! - the host descriptors a share holds are bounded ([`Limits`]): one per inode the
//!   guest knows of and one per open file or directory; past a bound the guest is
//!   answered `ENFILE` or `EMFILE` until it forgets inodes or closes files;
//! - reads and writes carry the flags their file was opened with, whatever the guest
//!   sends, and `O_PATH` opens are refused: fuse-backend-rs 0.14 changes a file's
//!   flags with `fcntl(F_SETFL)` when a request's differ, and if that fails it closes
//!   the file's descriptor while its handle still owns it (a later open may then get
//!   the same number: another file behind the guest's handle). Our fuzz target
//!   `fs_requests` found it (docs/virtio-fs.md).

use fuse_backend_rs::abi::fuse_abi::{stat64, statvfs64, CreateIn, FsOptions, OpenOptions};
use fuse_backend_rs::api::filesystem::{
    Context, DirEntry, Entry, FileSystem, GetxattrReply, ListxattrReply, SetattrValid,
    ZeroCopyReader, ZeroCopyWriter, ROOT_ID,
};
use std::collections::HashMap;
use std::ffi::CStr;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Bounds on the host descriptors one share may hold for its guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Inodes the guest may know of at once (each holds an `O_PATH` descriptor).
    pub max_inodes: usize,
    /// Files and directories the guest may have open at once.
    pub max_open: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_inodes: 65_536,
            max_open: 4_096,
        }
    }
}

impl Limits {
    /// Descriptors a share with these limits may hold at most.
    pub fn descriptors(&self) -> usize {
        self.max_inodes + self.max_open
    }
}

/// The set-ID bits a guest may not set on the host.
const SET_ID: u32 = libc::S_ISUID | libc::S_ISGID;
/// `RENAME_WHITEOUT`: a rename that leaves a character device in the old name's place.
const RENAME_WHITEOUT: u32 = 1 << 2;

fn err(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// A passthrough file system `F` under the share's policy (module documentation).
pub struct Confined<F> {
    inner: F,
    read_only: bool,
    limits: Limits,
    /// Lookup counts of the inodes the guest knows of (the root excluded).
    inodes: Mutex<HashMap<u64, u64>>,
    /// Open files and directories.
    open: AtomicUsize,
    /// The flags each open file's handle was opened with.
    handle_flags: Mutex<HashMap<u64, u32>>,
}

impl<F> Confined<F>
where
    F: FileSystem<Inode = u64, Handle = u64>,
{
    /// `inner` under the policy; `read_only` refuses every change.
    pub fn new(inner: F, read_only: bool, limits: Limits) -> Self {
        Self {
            inner,
            read_only,
            limits,
            inodes: Mutex::new(HashMap::new()),
            open: AtomicUsize::new(0),
            handle_flags: Mutex::new(HashMap::new()),
        }
    }

    fn lock_handles(&self) -> std::sync::MutexGuard<'_, HashMap<u64, u32>> {
        self.handle_flags.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The flags `handle` was opened with (`flags` for a handle never opened, which
    /// the inner file system refuses before it looks at them).
    fn opened_flags(&self, handle: u64, flags: u32) -> u32 {
        self.lock_handles().get(&handle).copied().unwrap_or(flags)
    }

    /// Inodes the guest knows of now (the root excluded).
    pub fn known_inodes(&self) -> usize {
        self.lock_inodes().len()
    }

    /// Files and directories the guest has open now.
    pub fn open_files(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    fn lock_inodes(&self) -> std::sync::MutexGuard<'_, HashMap<u64, u64>> {
        self.inodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn writable(&self) -> io::Result<()> {
        if self.read_only {
            Err(err(libc::EROFS))
        } else {
            Ok(())
        }
    }

    /// Refuses a request that would add an inode when the share is at its bound.
    fn room_for_inode(&self) -> io::Result<()> {
        if self.lock_inodes().len() >= self.limits.max_inodes {
            Err(err(libc::ENFILE))
        } else {
            Ok(())
        }
    }

    /// Counts one more lookup of `inode`; false (nothing counted) if it is new and
    /// the share is at its bound.
    fn admit(&self, inode: u64) -> bool {
        if inode == ROOT_ID || inode == 0 {
            return true;
        }
        let mut inodes = self.lock_inodes();
        let at_bound = inodes.len() >= self.limits.max_inodes;
        match inodes.get_mut(&inode) {
            Some(n) => *n = n.saturating_add(1),
            None if at_bound => return false,
            None => {
                inodes.insert(inode, 1);
            }
        }
        true
    }

    fn forgotten(&self, inode: u64, count: u64) {
        let mut inodes = self.lock_inodes();
        if let Some(n) = inodes.get_mut(&inode) {
            *n = n.saturating_sub(count);
            if *n == 0 {
                inodes.remove(&inode);
            }
        }
    }

    /// Passes on an entry the inner file system returned, or, past the inode bound,
    /// undoes its lookup and answers `ENFILE`.
    fn entry(&self, ctx: &Context, result: io::Result<Entry>) -> io::Result<Entry> {
        let entry = result?;
        if self.admit(entry.inode) {
            Ok(entry)
        } else {
            self.inner.forget(ctx, entry.inode, 1);
            Err(err(libc::ENFILE))
        }
    }

    /// Reserves an open-file slot, or answers `EMFILE`.
    fn take_open(&self) -> io::Result<()> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limits.max_open).then_some(n + 1)
            })
            .map(|_| ())
            .map_err(|_| err(libc::EMFILE))
    }

    /// After a release (of a file or a directory: the inner file system keeps both in
    /// one table): the handle's slot and flags go once the inner file system let go.
    fn closed(&self, handle: u64, result: io::Result<()>) -> io::Result<()> {
        if result.is_ok() {
            self.lock_handles().remove(&handle);
            self.put_open();
        }
        result
    }

    fn put_open(&self) {
        let _ = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Runs an open-like request holding a slot; keeps the slot only if the request
    /// returned a handle.
    fn opened<T>(
        &self,
        run: impl FnOnce() -> io::Result<T>,
        has_handle: impl Fn(&T) -> bool,
    ) -> io::Result<T> {
        self.take_open()?;
        let result = run();
        if !matches!(&result, Ok(v) if has_handle(v)) {
            self.put_open();
        }
        result
    }
}

/// Whether `flags` (the guest's open flags) could change the file.
fn writes(flags: u32) -> bool {
    let flags = flags as i32;
    flags & libc::O_ACCMODE != libc::O_RDONLY
        || flags & (libc::O_TRUNC | libc::O_APPEND | libc::O_CREAT) != 0
}

impl<F> FileSystem for Confined<F>
where
    F: FileSystem<Inode = u64, Handle = u64>,
{
    type Inode = u64;
    type Handle = u64;

    fn init(&self, capable: FsOptions) -> io::Result<FsOptions> {
        // A mount starts afresh, even without an unmount before it (a driver reset):
        // the inner file system closes every descriptor the last one held, so a
        // guest cannot pile them up past the bounds by mounting again.
        self.destroy();
        // Beyond what the passthrough file system asks for: writes of more than a page
        // and requests of up to 256 pages (else every write is one 4 KiB round trip),
        // reads in parallel, and data caches dropped when the host changes a file.
        let more = FsOptions::BIG_WRITES
            | FsOptions::MAX_PAGES
            | FsOptions::ASYNC_READ
            | FsOptions::PARALLEL_DIROPS
            | FsOptions::AUTO_INVAL_DATA;
        self.inner.init(capable).map(|want| want | (capable & more))
    }

    fn destroy(&self) {
        self.inner.destroy();
        self.lock_inodes().clear();
        self.lock_handles().clear();
        self.open.store(0, Ordering::Release);
    }

    fn lookup(&self, ctx: &Context, parent: u64, name: &CStr) -> io::Result<Entry> {
        self.entry(ctx, self.inner.lookup(ctx, parent, name))
    }

    fn forget(&self, ctx: &Context, inode: u64, count: u64) {
        self.forgotten(inode, count);
        self.inner.forget(ctx, inode, count);
    }

    fn batch_forget(&self, ctx: &Context, requests: Vec<(u64, u64)>) {
        for &(inode, count) in &requests {
            self.forgotten(inode, count);
        }
        self.inner.batch_forget(ctx, requests);
    }

    fn getattr(
        &self,
        ctx: &Context,
        inode: u64,
        handle: Option<u64>,
    ) -> io::Result<(stat64, Duration)> {
        self.inner.getattr(ctx, inode, handle)
    }

    fn setattr(
        &self,
        ctx: &Context,
        inode: u64,
        mut attr: stat64,
        handle: Option<u64>,
        valid: SetattrValid,
    ) -> io::Result<(stat64, Duration)> {
        self.writable()?;
        if valid.contains(SetattrValid::MODE) {
            attr.st_mode &= !SET_ID;
        }
        self.inner.setattr(ctx, inode, attr, handle, valid)
    }

    fn readlink(&self, ctx: &Context, inode: u64) -> io::Result<Vec<u8>> {
        self.inner.readlink(ctx, inode)
    }

    fn symlink(
        &self,
        ctx: &Context,
        linkname: &CStr,
        parent: u64,
        name: &CStr,
    ) -> io::Result<Entry> {
        self.writable()?;
        self.room_for_inode()?;
        self.entry(ctx, self.inner.symlink(ctx, linkname, parent, name))
    }

    fn mknod(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        mode: u32,
        rdev: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        self.writable()?;
        match mode & libc::S_IFMT {
            libc::S_IFREG | libc::S_IFIFO | libc::S_IFSOCK => {}
            _ => return Err(err(libc::EPERM)),
        }
        self.room_for_inode()?;
        let result = self
            .inner
            .mknod(ctx, parent, name, mode & !SET_ID, rdev, umask);
        self.entry(ctx, result)
    }

    fn mkdir(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        mode: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        self.writable()?;
        self.room_for_inode()?;
        let result = self.inner.mkdir(ctx, parent, name, mode & !SET_ID, umask);
        self.entry(ctx, result)
    }

    fn unlink(&self, ctx: &Context, parent: u64, name: &CStr) -> io::Result<()> {
        self.writable()?;
        self.inner.unlink(ctx, parent, name)
    }

    fn rmdir(&self, ctx: &Context, parent: u64, name: &CStr) -> io::Result<()> {
        self.writable()?;
        self.inner.rmdir(ctx, parent, name)
    }

    fn rename(
        &self,
        ctx: &Context,
        olddir: u64,
        oldname: &CStr,
        newdir: u64,
        newname: &CStr,
        flags: u32,
    ) -> io::Result<()> {
        self.writable()?;
        if flags & RENAME_WHITEOUT != 0 {
            return Err(err(libc::EINVAL));
        }
        self.inner
            .rename(ctx, olddir, oldname, newdir, newname, flags)
    }

    fn link(&self, ctx: &Context, inode: u64, newparent: u64, newname: &CStr) -> io::Result<Entry> {
        self.writable()?;
        self.entry(ctx, self.inner.link(ctx, inode, newparent, newname))
    }

    fn open(
        &self,
        ctx: &Context,
        inode: u64,
        flags: u32,
        fuse_flags: u32,
    ) -> io::Result<(Option<u64>, OpenOptions, Option<u32>)> {
        if flags & libc::O_PATH as u32 != 0 {
            return Err(err(libc::EINVAL));
        }
        if writes(flags) {
            self.writable()?;
        }
        let result = self.opened(
            || self.inner.open(ctx, inode, flags, fuse_flags),
            |r| r.0.is_some(),
        )?;
        if let Some(h) = result.0 {
            self.lock_handles().insert(h, flags);
        }
        Ok(result)
    }

    fn create(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        mut args: CreateIn,
    ) -> io::Result<(Entry, Option<u64>, OpenOptions, Option<u32>)> {
        self.writable()?;
        self.room_for_inode()?;
        if args.flags & libc::O_PATH as u32 != 0 {
            return Err(err(libc::EINVAL));
        }
        args.mode &= !SET_ID;
        let (entry, handle, options, passthrough) = self.opened(
            || self.inner.create(ctx, parent, name, args),
            |r| r.1.is_some(),
        )?;
        if self.admit(entry.inode) {
            if let Some(h) = handle {
                self.lock_handles().insert(h, args.flags);
            }
            return Ok((entry, handle, options, passthrough));
        }
        if let Some(h) = handle {
            let _ = self
                .inner
                .release(ctx, entry.inode, args.flags, h, false, false, None);
            self.put_open();
        }
        self.inner.forget(ctx, entry.inode, 1);
        Err(err(libc::ENFILE))
    }

    fn read(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        w: &mut dyn ZeroCopyWriter,
        size: u32,
        offset: u64,
        lock_owner: Option<u64>,
        flags: u32,
    ) -> io::Result<usize> {
        let flags = self.opened_flags(handle, flags);
        self.inner
            .read(ctx, inode, handle, w, size, offset, lock_owner, flags)
    }

    fn write(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        r: &mut dyn ZeroCopyReader,
        size: u32,
        offset: u64,
        lock_owner: Option<u64>,
        delayed_write: bool,
        flags: u32,
        fuse_flags: u32,
    ) -> io::Result<usize> {
        self.writable()?;
        let flags = self.opened_flags(handle, flags);
        self.inner.write(
            ctx,
            inode,
            handle,
            r,
            size,
            offset,
            lock_owner,
            delayed_write,
            flags,
            fuse_flags,
        )
    }

    fn flush(&self, ctx: &Context, inode: u64, handle: u64, lock_owner: u64) -> io::Result<()> {
        self.inner.flush(ctx, inode, handle, lock_owner)
    }

    fn fsync(&self, ctx: &Context, inode: u64, datasync: bool, handle: u64) -> io::Result<()> {
        self.inner.fsync(ctx, inode, datasync, handle)
    }

    fn fallocate(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        mode: u32,
        offset: u64,
        length: u64,
    ) -> io::Result<()> {
        self.writable()?;
        self.inner
            .fallocate(ctx, inode, handle, mode, offset, length)
    }

    fn release(
        &self,
        ctx: &Context,
        inode: u64,
        flags: u32,
        handle: u64,
        flush: bool,
        flock_release: bool,
        lock_owner: Option<u64>,
    ) -> io::Result<()> {
        let result =
            self.inner
                .release(ctx, inode, flags, handle, flush, flock_release, lock_owner);
        self.closed(handle, result)
    }

    fn statfs(&self, ctx: &Context, inode: u64) -> io::Result<statvfs64> {
        let mut st = self.inner.statfs(ctx, inode)?;
        if self.read_only {
            st.f_flag |= libc::ST_RDONLY;
        }
        Ok(st)
    }

    fn setxattr(
        &self,
        ctx: &Context,
        inode: u64,
        name: &CStr,
        value: &[u8],
        flags: u32,
    ) -> io::Result<()> {
        self.writable()?;
        self.inner.setxattr(ctx, inode, name, value, flags)
    }

    fn getxattr(
        &self,
        ctx: &Context,
        inode: u64,
        name: &CStr,
        size: u32,
    ) -> io::Result<GetxattrReply> {
        self.inner.getxattr(ctx, inode, name, size)
    }

    fn listxattr(&self, ctx: &Context, inode: u64, size: u32) -> io::Result<ListxattrReply> {
        self.inner.listxattr(ctx, inode, size)
    }

    fn removexattr(&self, ctx: &Context, inode: u64, name: &CStr) -> io::Result<()> {
        self.writable()?;
        self.inner.removexattr(ctx, inode, name)
    }

    fn opendir(
        &self,
        ctx: &Context,
        inode: u64,
        flags: u32,
    ) -> io::Result<(Option<u64>, OpenOptions)> {
        self.opened(|| self.inner.opendir(ctx, inode, flags), |r| r.0.is_some())
    }

    fn readdir(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry) -> io::Result<usize>,
    ) -> io::Result<()> {
        self.inner
            .readdir(ctx, inode, handle, size, offset, add_entry)
    }

    fn readdirplus(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry, Entry) -> io::Result<usize>,
    ) -> io::Result<()> {
        let mut added = 0usize;
        let mut counted = |dir_entry: DirEntry, entry: Entry| {
            if !self.admit(entry.inode) {
                if added > 0 {
                    // The inner file system forgets this entry's lookup and stops: the
                    // guest gets the entries so far and asks again from here.
                    return Ok(0);
                }
                self.inner.forget(ctx, entry.inode, 1);
                return Err(err(libc::ENFILE));
            }
            let result = add_entry(dir_entry, entry);
            // On `Ok(0)` the inner file system undoes its lookup; on an error it keeps
            // it (and the count stays, matching it).
            match result {
                Ok(0) => self.forgotten(entry.inode, 1),
                Ok(_) => added += 1,
                Err(_) => {}
            }
            result
        };
        self.inner
            .readdirplus(ctx, inode, handle, size, offset, &mut counted)
    }

    fn fsyncdir(&self, ctx: &Context, inode: u64, datasync: bool, handle: u64) -> io::Result<()> {
        self.inner.fsyncdir(ctx, inode, datasync, handle)
    }

    fn releasedir(&self, ctx: &Context, inode: u64, flags: u32, handle: u64) -> io::Result<()> {
        let result = self.inner.releasedir(ctx, inode, flags, handle);
        self.closed(handle, result)
    }

    fn access(&self, ctx: &Context, inode: u64, mask: u32) -> io::Result<()> {
        if mask & libc::W_OK as u32 != 0 {
            self.writable()?;
        }
        self.inner.access(ctx, inode, mask)
    }

    fn lseek(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        offset: u64,
        whence: u32,
    ) -> io::Result<u64> {
        self.inner.lseek(ctx, inode, handle, offset, whence)
    }
}
