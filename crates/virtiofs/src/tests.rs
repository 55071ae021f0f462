//! Path confinement and the share policy on the host, without a guest; and the device
//! answering FUSE requests through its queue in guest memory.

use super::*;
use fuse_backend_rs::abi::fuse_abi::{
    CreateIn, InHeader, InitIn, InitOut, OpenIn, OutHeader, ReadIn,
};
use fuse_backend_rs::api::filesystem::{Context, FileSystem, SetattrValid, ROOT_ID};
use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vm_memory_fuse::ByteValued;

/// A scratch directory: `share/` (shared) beside `outside/` (must stay untouched).
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("minivmm-fs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("share/sub")).unwrap();
        std::fs::create_dir_all(dir.join("outside")).unwrap();
        std::fs::write(dir.join("outside/secret"), "host secret").unwrap();
        std::fs::write(dir.join("share/hello"), "hello from the host").unwrap();
        Self { dir }
    }

    fn share(&self) -> PathBuf {
        self.dir.join("share")
    }

    fn fs(&self, read_only: bool, limits: Limits) -> ShareFs {
        open_share(&self.share(), read_only, limits).unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn name(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn errno<T: std::fmt::Debug>(r: std::io::Result<T>) -> i32 {
    r.unwrap_err().raw_os_error().unwrap()
}

fn ctx() -> Context {
    Context::new()
}

fn create_args(mode: u32) -> CreateIn {
    CreateIn {
        flags: (libc::O_RDWR | libc::O_CREAT) as u32,
        mode,
        umask: 0,
        fuse_flags: 0,
    }
}

#[test]
fn dotdot_at_the_root_is_the_root() {
    let s = Scratch::new("dotdot");
    let fs = s.fs(false, Limits::default());
    let root = fs.getattr(&ctx(), ROOT_ID, None).unwrap().0;
    let up = fs.lookup(&ctx(), ROOT_ID, &name("..")).unwrap();
    assert_eq!(up.attr.st_ino, root.st_ino);
    // From a subdirectory, `..` is the share's root, and `..` again stays there.
    let sub = fs.lookup(&ctx(), ROOT_ID, &name("sub")).unwrap();
    let parent = fs.lookup(&ctx(), sub.inode, &name("..")).unwrap();
    assert_eq!(parent.attr.st_ino, root.st_ino);
    // Names are single components.
    assert_eq!(
        errno(fs.lookup(&ctx(), ROOT_ID, &name("../outside"))),
        libc::EINVAL
    );
    assert_eq!(
        errno(fs.mkdir(&ctx(), ROOT_ID, &name("../made"), 0o755, 0)),
        libc::EINVAL
    );
    assert!(!s.dir.join("made").exists());
}

#[test]
fn symlinks_are_never_followed_on_the_host() {
    let s = Scratch::new("symlink");
    std::os::unix::fs::symlink(s.dir.join("outside"), s.share().join("abs")).unwrap();
    std::os::unix::fs::symlink("../outside", s.share().join("rel")).unwrap();
    let fs = s.fs(false, Limits::default());
    for link in ["abs", "rel"] {
        let e = fs.lookup(&ctx(), ROOT_ID, &name(link)).unwrap();
        assert_eq!(e.attr.st_mode & libc::S_IFMT, libc::S_IFLNK, "{link}");
        // Walking through it fails: the link is not a directory on the host.
        assert_eq!(
            errno(fs.lookup(&ctx(), e.inode, &name("secret"))),
            libc::ENOTDIR
        );
        // Neither can it be opened; the guest gets the target text to resolve itself.
        assert!(fs.open(&ctx(), e.inode, libc::O_RDONLY as u32, 0).is_err());
        assert!(fs
            .create(&ctx(), e.inode, &name("x"), create_args(0o644))
            .is_err());
        assert!(!fs.readlink(&ctx(), e.inode).unwrap().is_empty());
    }
    assert!(!s.dir.join("outside/x").exists());
}

#[test]
fn a_symlink_swapped_in_after_a_lookup_is_not_followed() {
    let s = Scratch::new("swap");
    let fs = s.fs(false, Limits::default());
    let d = fs.lookup(&ctx(), ROOT_ID, &name("sub")).unwrap();
    // The directory the guest looked up is replaced by a link to the outside.
    std::fs::rename(s.share().join("sub"), s.share().join("moved")).unwrap();
    std::os::unix::fs::symlink(s.dir.join("outside"), s.share().join("sub")).unwrap();
    // Requests on the inode still act on the directory it was (now "moved").
    assert_eq!(
        errno(fs.lookup(&ctx(), d.inode, &name("secret"))),
        libc::ENOENT
    );
    let (entry, handle, _, _) = fs
        .create(&ctx(), d.inode, &name("new"), create_args(0o644))
        .unwrap();
    assert!(handle.is_some() && entry.inode != 0);
    assert!(s.share().join("moved/new").exists());
    assert!(!s.dir.join("outside/new").exists());
}

#[test]
fn inodes_the_guest_never_got_are_refused() {
    let s = Scratch::new("forged");
    let fs = s.fs(false, Limits::default());
    for forged in [2, 77, u64::MAX] {
        assert!(fs.getattr(&ctx(), forged, None).is_err());
        assert!(fs.link(&ctx(), forged, ROOT_ID, &name("stolen")).is_err());
        assert!(fs.lookup(&ctx(), forged, &name("secret")).is_err());
    }
    assert!(!s.share().join("stolen").exists());
}

#[test]
fn no_device_nodes_and_no_set_id_bits() {
    let s = Scratch::new("nodes");
    let fs = s.fs(false, Limits::default());
    for kind in [libc::S_IFCHR, libc::S_IFBLK] {
        let mode = kind | 0o666;
        assert_eq!(
            errno(fs.mknod(&ctx(), ROOT_ID, &name("dev"), mode, 0x0801, 0)),
            libc::EPERM
        );
    }
    assert!(!s.share().join("dev").exists());
    fs.mknod(&ctx(), ROOT_ID, &name("fifo"), libc::S_IFIFO | 0o644, 0, 0)
        .unwrap();
    let whiteout = 1 << 2;
    assert_eq!(
        errno(fs.rename(
            &ctx(),
            ROOT_ID,
            &name("fifo"),
            ROOT_ID,
            &name("f2"),
            whiteout
        )),
        libc::EINVAL
    );

    let (e, _, _, _) = fs
        .create(&ctx(), ROOT_ID, &name("suid"), create_args(0o6755))
        .unwrap();
    let mode = |p: &str| std::fs::metadata(s.share().join(p)).unwrap().mode();
    assert_eq!(mode("suid") & 0o7777, 0o755);
    let mut attr = e.attr;
    attr.st_mode = libc::S_IFREG | 0o4711;
    fs.setattr(&ctx(), e.inode, attr, None, SetattrValid::MODE)
        .unwrap();
    assert_eq!(mode("suid") & 0o7777, 0o711);
    fs.mkdir(&ctx(), ROOT_ID, &name("dir"), 0o2775, 0).unwrap();
    assert_eq!(mode("dir") & 0o7000, 0);
}

#[test]
fn a_read_only_share_refuses_every_change() {
    let s = Scratch::new("ro");
    let fs = s.fs(true, Limits::default());
    let hello = fs.lookup(&ctx(), ROOT_ID, &name("hello")).unwrap();
    let erofs = libc::EROFS;
    assert_eq!(
        errno(fs.create(&ctx(), ROOT_ID, &name("new"), create_args(0o644))),
        erofs
    );
    assert_eq!(
        errno(fs.mkdir(&ctx(), ROOT_ID, &name("d"), 0o755, 0)),
        erofs
    );
    assert_eq!(errno(fs.unlink(&ctx(), ROOT_ID, &name("hello"))), erofs);
    assert_eq!(errno(fs.rmdir(&ctx(), ROOT_ID, &name("sub"))), erofs);
    assert_eq!(
        errno(fs.rename(&ctx(), ROOT_ID, &name("hello"), ROOT_ID, &name("h2"), 0)),
        erofs
    );
    assert_eq!(
        errno(fs.symlink(&ctx(), &name("/etc"), ROOT_ID, &name("l"))),
        erofs
    );
    assert_eq!(
        errno(fs.link(&ctx(), hello.inode, ROOT_ID, &name("h3"))),
        erofs
    );
    assert_eq!(
        errno(fs.setattr(&ctx(), hello.inode, hello.attr, None, SetattrValid::MODE)),
        erofs
    );
    for flags in [libc::O_WRONLY, libc::O_RDWR, libc::O_RDONLY | libc::O_TRUNC] {
        assert_eq!(
            errno(fs.open(&ctx(), hello.inode, flags as u32, 0)),
            erofs,
            "{flags:#x}"
        );
    }
    let (h, _, _) = fs
        .open(&ctx(), hello.inode, libc::O_RDONLY as u32, 0)
        .unwrap();
    assert!(h.is_some());
    assert_ne!(
        fs.statfs(&ctx(), ROOT_ID).unwrap().f_flag & libc::ST_RDONLY,
        0
    );
    let names: Vec<_> = std::fs::read_dir(s.share())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(
        std::fs::read_to_string(s.share().join("hello")).unwrap(),
        "hello from the host"
    );
}

#[test]
fn host_descriptors_are_bounded() {
    let s = Scratch::new("limits");
    for i in 0..4 {
        std::fs::write(s.share().join(format!("f{i}")), "x").unwrap();
    }
    let limits = Limits {
        max_inodes: 3,
        max_open: 2,
    };
    let fs = s.fs(false, limits);
    let e: Vec<_> = (0..3)
        .map(|i| fs.lookup(&ctx(), ROOT_ID, &name(&format!("f{i}"))).unwrap())
        .collect();
    assert_eq!(fs.known_inodes(), 3);
    // A second lookup of a known inode needs no new descriptor... but a new one does.
    assert_eq!(errno(fs.lookup(&ctx(), ROOT_ID, &name("f3"))), libc::ENFILE);
    assert_eq!(
        errno(fs.create(&ctx(), ROOT_ID, &name("f4"), create_args(0o644))),
        libc::ENFILE
    );
    assert!(!s.share().join("f4").exists());
    fs.forget(&ctx(), e[0].inode, 1);
    assert_eq!(fs.known_inodes(), 2);
    let f3 = fs.lookup(&ctx(), ROOT_ID, &name("f3")).unwrap();

    let open = |inode| fs.open(&ctx(), inode, libc::O_RDONLY as u32, 0);
    let (h1, _, _) = open(e[1].inode).unwrap();
    open(e[2].inode).unwrap();
    assert_eq!(errno(open(f3.inode)), libc::EMFILE);
    assert_eq!(fs.open_files(), 2);
    fs.release(&ctx(), e[1].inode, 0, h1.unwrap(), false, false, None)
        .unwrap();
    open(f3.inode).unwrap();
    assert_eq!(Limits::default().descriptors(), 65_536 + 4_096);
}

#[test]
fn a_share_must_be_a_directory_with_a_valid_tag() {
    let s = Scratch::new("bad");
    let file = s.share().join("hello");
    assert!(matches!(
        Fs::new("t", &file, false, Limits::default()),
        Err(FsError::NotDirectory(_))
    ));
    assert!(matches!(
        Fs::new("t", &s.dir.join("missing"), false, Limits::default()),
        Err(FsError::OpenDir(..))
    ));
    for tag in ["", "a\0b", &"x".repeat(TAG_BYTES + 1)] {
        assert!(matches!(
            Fs::new(tag, &s.share(), false, Limits::default()),
            Err(FsError::BadTag(_))
        ));
    }
    let dev = Fs::new(&"x".repeat(TAG_BYTES), &s.share(), false, Limits::default()).unwrap();
    let mut config = [0u8; 40];
    dev.read_config(0, &mut config);
    assert_eq!(&config[..TAG_BYTES], "x".repeat(TAG_BYTES).as_bytes());
    assert_eq!(u32::from_le_bytes(config[36..40].try_into().unwrap()), 1);
    assert_eq!(dev.device_type(), VIRTIO_ID_FS);
    assert_eq!(dev.queue_max_sizes().len(), 2);
    assert!(dev.queue_states().unwrap_err().contains("virtio-fs"));
}

// --- The device through its request queue -------------------------------------------

const QUEUE: u64 = 0x10000;
const BUFFERS: u64 = 0x20000;
const QSIZE: u16 = 16;

/// The request queue, laid out by hand as a driver would.
struct Driver {
    mem: GuestMemoryMmap,
    next: u16,
    seen: u16,
}

impl Driver {
    fn queue(&self) -> virtio_queue::Queue {
        use virtio_queue::QueueT;
        let mut q = virtio_queue::Queue::new(QSIZE).unwrap();
        q.set_desc_table_address(Some(QUEUE as u32), Some(0));
        q.set_avail_ring_address(Some((QUEUE + 0x1000) as u32), Some(0));
        q.set_used_ring_address(Some((QUEUE + 0x2000) as u32), Some(0));
        q.set_ready(true);
        q
    }

    /// Posts `request` with room for a `reply_len` reply; returns where the reply goes.
    fn post(&mut self, request: &[u8], reply_len: u32) -> GuestAddress {
        let (req, rep) = (BUFFERS, BUFFERS + 0x8000);
        self.mem.write_slice(request, GuestAddress(req)).unwrap();
        let d0 = 2 * (self.next % (QSIZE / 2));
        let table = |i: u16| GuestAddress(QUEUE + 16 * u64::from(i));
        let desc = |addr: u64, len: u32, flags: u16, next: u16| {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&addr.to_le_bytes());
            b[8..12].copy_from_slice(&len.to_le_bytes());
            b[12..14].copy_from_slice(&flags.to_le_bytes());
            b[14..].copy_from_slice(&next.to_le_bytes());
            b
        };
        let m = &self.mem;
        m.write_slice(&desc(req, request.len() as u32, 1, d0 + 1), table(d0))
            .unwrap();
        m.write_slice(&desc(rep, reply_len, 2, 0), table(d0 + 1))
            .unwrap();
        let avail = QUEUE + 0x1000;
        let slot = avail + 4 + 2 * u64::from(self.next % QSIZE);
        m.write_obj(d0, GuestAddress(slot)).unwrap();
        self.next = self.next.wrapping_add(1);
        m.write_obj(self.next, GuestAddress(avail + 2)).unwrap();
        GuestAddress(rep)
    }

    /// The used length of the next returned chain.
    fn used(&mut self) -> u32 {
        let used = QUEUE + 0x2000;
        let idx: u16 = self.mem.read_obj(GuestAddress(used + 2)).unwrap();
        assert_ne!(idx, self.seen, "no chain returned");
        let at = used + 4 + 8 * u64::from(self.seen % QSIZE);
        self.seen = self.seen.wrapping_add(1);
        self.mem.read_obj(GuestAddress(at + 4)).unwrap()
    }
}

fn request(opcode: u32, nodeid: u64, unique: u64, body: &[u8]) -> Vec<u8> {
    let header = InHeader {
        len: (std::mem::size_of::<InHeader>() + body.len()) as u32,
        opcode,
        unique,
        nodeid,
        ..Default::default()
    };
    let mut out = header.as_slice().to_vec();
    out.extend_from_slice(body);
    out
}

/// Sends one request on queue 1 and returns the reply's header and body.
fn call(dev: &mut Fs, driver: &mut Driver, req: &[u8]) -> (OutHeader, Vec<u8>) {
    let at = driver.post(req, 4096);
    dev.process_queue(1);
    let len = driver.used() as usize;
    let mut reply = vec![0u8; len];
    driver.mem.read_slice(&mut reply, at).unwrap();
    let header_len = std::mem::size_of::<OutHeader>();
    let header = OutHeader::from_slice(&reply[..header_len])
        .copied()
        .unwrap();
    (header, reply[header_len..].to_vec())
}

/// A device on `s`'s share, activated with two queues in fresh guest memory, and
/// its driver after FUSE_INIT.
fn mounted(s: &Scratch) -> (Fs, Driver) {
    use devices::virtio::VirtioInterrupt;
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40000)]).unwrap();
    let mut driver = Driver {
        mem: mem.clone(),
        next: 0,
        seen: 0,
    };
    let mut dev = Fs::new("share", &s.share(), false, Limits::default()).unwrap();
    dev.activate(Activation {
        memory: mem,
        queues: vec![driver.queue(), driver.queue()],
        acked_features: VIRTIO_F_VERSION_1,
        interrupt: VirtioInterrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()),
    })
    .unwrap();
    let init = InitIn {
        major: 7,
        minor: 31,
        max_readahead: 0x20000,
        flags: 0,
    };
    let (h, body) = call(&mut dev, &mut driver, &request(INIT, 0, 1, init.as_slice()));
    assert_eq!((h.error, h.unique), (0, 1));
    let out = InitOut::from_slice(&body[..std::mem::size_of::<InitOut>()]).copied();
    assert_eq!(out.unwrap().major, 7);
    (dev, driver)
}

const INIT: u32 = 26;
const LOOKUP: u32 = 1;
const OPEN: u32 = 14;
const READ: u32 = 15;

#[test]
fn the_device_answers_fuse_requests_in_guest_memory() {
    let s = Scratch::new("device");
    let (mut dev, mut driver) = mounted(&s);
    let (h, body) = call(&mut dev, &mut driver, &request(LOOKUP, 1, 2, b"hello\0"));
    assert_eq!(h.error, 0);
    let nodeid = u64::from_le_bytes(body[..8].try_into().unwrap());
    let (h, _) = call(&mut dev, &mut driver, &request(LOOKUP, 1, 3, b"nothere\0"));
    assert_eq!(h.error, -libc::ENOENT);

    let open = OpenIn {
        flags: libc::O_RDONLY as u32,
        fuse_flags: 0,
    };
    let (h, body) = call(
        &mut dev,
        &mut driver,
        &request(OPEN, nodeid, 4, open.as_slice()),
    );
    assert_eq!(h.error, 0);
    let fh = u64::from_le_bytes(body[..8].try_into().unwrap());
    let read = ReadIn {
        fh,
        offset: 6,
        size: 100,
        ..Default::default()
    };
    let (h, body) = call(
        &mut dev,
        &mut driver,
        &request(READ, nodeid, 5, read.as_slice()),
    );
    assert_eq!(h.error, 0);
    assert_eq!(body, b"from the host");

    // A chain outside guest memory is returned unused, and the device goes on.
    let used = {
        let req = request(LOOKUP, 1, 6, b"hello\0");
        driver.post(&req, 4096);
        let table = GuestAddress(QUEUE + 16 * u64::from(2 * ((driver.next - 1) % (QSIZE / 2))));
        driver.mem.write_obj(0x7fff_0000u64, table).unwrap();
        dev.process_queue(1);
        driver.used()
    };
    assert_eq!(used, 0);
    let (h, _) = call(&mut dev, &mut driver, &request(LOOKUP, 1, 7, b"hello\0"));
    assert_eq!(h.error, 0);
}

/// Found by the `fs_requests` fuzz target: fuse-backend-rs 0.14 closed a file's
/// descriptor when a read's flags differed from its open's and `fcntl(F_SETFL)` failed
/// (an `O_PATH` handle), leaving the handle to close it again (a later open could have
/// had the number). `O_PATH` opens are refused and reads carry their open's flags.
#[test]
fn regression_read_flags_never_close_a_handle_descriptor() {
    let s = Scratch::new("flags");
    let (mut dev, mut driver) = mounted(&s);
    let (h, _) = call(&mut dev, &mut driver, &request(1, 1, 2, b"hello\0"));
    assert_eq!(h.error, 0);
    let o_path = OpenIn {
        flags: 0x2e2000,
        fuse_flags: 0,
    };
    let (h, _) = call(&mut dev, &mut driver, &request(14, 2, 3, o_path.as_slice()));
    assert_eq!(h.error, -libc::EINVAL);
    let open = OpenIn {
        flags: libc::O_RDONLY as u32,
        fuse_flags: 0,
    };
    let (h, body) = call(&mut dev, &mut driver, &request(14, 2, 4, open.as_slice()));
    assert_eq!(h.error, 0);
    let fh = u64::from_le_bytes(body[..8].try_into().unwrap());
    for (unique, flags) in [(5, 0x2e2000u32), (6, libc::O_DIRECT as u32), (7, 0)] {
        let read = ReadIn {
            fh,
            size: 5,
            flags,
            ..Default::default()
        };
        let (h, body) = call(
            &mut dev,
            &mut driver,
            &request(15, 2, unique, read.as_slice()),
        );
        assert_eq!(
            (h.error, body.as_slice()),
            (0, b"hello".as_slice()),
            "{flags:#x}"
        );
    }
    // Dropping the device closes each descriptor once (a second close aborts a test
    // build: Rust checks owned descriptors).
    drop(dev);
}
