//! The built-in allow-lists. Each entry is a syscall a thread of that role makes in
//! normal operation, with argument conditions where one entry covers a dangerous
//! family (ioctl by request number; mmap and mprotect never executable). Anything
//! else traps. Syscalls every thread needs come first, then each role's own.

#[cfg_attr(target_arch = "x86_64", path = "lists/x86_64.rs")]
#[cfg_attr(target_arch = "aarch64", path = "lists/aarch64.rs")]
mod arch;

use crate::{SeccompError, ThreadRole};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};
use std::collections::BTreeMap;

pub(crate) use arch::ARCH;

/// One allow-list entry: a syscall, unconditionally or under argument conditions.
pub(crate) struct Entry {
    pub(crate) syscall: i64,
    /// Alternatives: the call is allowed if any of these holds (empty: always).
    pub(crate) when: Vec<Cond>,
}

/// A condition on one argument: `(arg & mask) == value`.
#[derive(Clone, Copy)]
pub(crate) struct Cond {
    pub(crate) arg: u8,
    pub(crate) mask: u64,
    pub(crate) value: u64,
}

pub(crate) fn any(syscall: i64) -> Entry {
    Entry {
        syscall,
        when: Vec::new(),
    }
}

/// `syscall` when argument `arg` equals one of `values` (compared as 32 bits).
pub(crate) fn arg_in(syscall: i64, arg: u8, values: &[u64]) -> Entry {
    Entry {
        syscall,
        when: values
            .iter()
            .map(|&value| Cond {
                arg,
                mask: 0xffff_ffff,
                value,
            })
            .collect(),
    }
}

/// `syscall` when argument `arg` has none of the bits in `mask` set.
pub(crate) fn bits_clear(syscall: i64, arg: u8, mask: u64) -> Entry {
    Entry {
        syscall,
        when: vec![Cond {
            arg,
            mask,
            value: 0,
        }],
    }
}

/// Terminal ioctls: the console checks for a terminal (musl's isatty asks for the
/// window size) and sets raw mode; the SIGSYS reporter restores the terminal. (The
/// constants are `c_ulong` with glibc and `c_int` with musl, hence the casts.)
#[allow(clippy::unnecessary_cast)]
fn terminal_requests() -> Vec<u64> {
    vec![
        libc::TIOCGWINSZ as u64,
        libc::TCGETS as u64,
        libc::TCSETS as u64,
        libc::TCSETSW as u64,
    ]
}

/// `ioctl` with the terminal requests and `extra`.
fn ioctls(mut extra: Vec<u64>) -> Entry {
    extra.extend(terminal_requests());
    arg_in(libc::SYS_ioctl, 1, &extra)
}

/// Signalling a thread of this process with SIGABRT (abort on a bug) or `extra`:
/// glibc uses `tgkill`, musl `tkill`.
fn thread_signals(extra: &[u64]) -> [Entry; 2] {
    let mut signals = vec![libc::SIGABRT as u64];
    signals.extend_from_slice(extra);
    [
        arg_in(libc::SYS_tgkill, 2, &signals),
        arg_in(libc::SYS_tkill, 1, &signals),
    ]
}

/// What every minivmm thread does: allocate and free memory, wait on locks, take and
/// return from signals (the vCPU kick, SIGTERM, SIGSYS), write logs, read clocks,
/// sleep, exit, and abort on a bug (which raises SIGABRT). Each role adds its own
/// `ioctl` requests and thread signals.
fn common() -> Vec<Entry> {
    let prot_exec = libc::PROT_EXEC as u64;
    let mut list = vec![
        any(libc::SYS_brk),
        bits_clear(libc::SYS_mmap, 2, prot_exec),
        bits_clear(libc::SYS_mprotect, 2, prot_exec),
        any(libc::SYS_munmap),
        any(libc::SYS_mremap),
        any(libc::SYS_madvise),
        any(libc::SYS_futex),
        any(libc::SYS_sched_yield),
        any(libc::SYS_rt_sigreturn),
        any(libc::SYS_rt_sigprocmask),
        arg_in(libc::SYS_rt_sigaction, 0, &[libc::SIGABRT as u64]),
        any(libc::SYS_sigaltstack),
        any(libc::SYS_getpid),
        any(libc::SYS_gettid),
        any(libc::SYS_write),
        any(libc::SYS_writev),
        any(libc::SYS_clock_gettime),
        any(libc::SYS_clock_nanosleep),
        any(libc::SYS_nanosleep),
        any(libc::SYS_getrandom),
        any(libc::SYS_exit),
        any(libc::SYS_exit_group),
        // Each thread closes what it owns when it ends (a vCPU its vCPU fd); Rust's
        // debug builds check a descriptor with F_GETFD before closing it.
        any(libc::SYS_close),
        arg_in(libc::SYS_fcntl, 1, &[libc::F_GETFD as u64]),
    ];
    list.extend(arch::common());
    list
}

/// A vCPU thread: KVM_RUN and the register reads that report a failed guest; device
/// register models write the console and signal eventfds (`write`).
fn vcpu() -> Vec<Entry> {
    let mut list = common();
    list.push(ioctls(arch::vcpu_ioctls()));
    list.extend(thread_signals(&[]));
    list
}

/// The event-loop thread: epoll, eventfds, tap I/O, vsock sockets, console input, kicking vCPU
/// threads (tgkill with the kick signal), and tearing the VM down (close, munmap,
/// mincore for the touched-memory figure). Disk I/O is the I/O threads'.
fn events() -> Vec<Entry> {
    let mut list = common();
    // FIONBIO: vsock makes the host connections it accepts non-blocking.
    #[allow(clippy::unnecessary_cast)]
    let mut requests = vec![libc::FIONBIO as u64];
    requests.extend(arch::events_ioctls());
    list.push(ioctls(requests));
    list.extend(thread_signals(&[vmm_sys_util::signal::SIGRTMIN() as u64]));
    list.extend([
        any(libc::SYS_epoll_create1),
        any(libc::SYS_epoll_ctl),
        any(libc::SYS_epoll_pwait),
        any(libc::SYS_read),
        any(libc::SYS_readv),
        any(libc::SYS_mincore),
        // A snapshot's memory file: runs of non-zero pages written at their offsets.
        any(libc::SYS_lseek),
        // vsock: the host side's Unix sockets (connections to `<socket>_<port>`,
        // accepted host programs; sends and receives; the socket file removed at
        // the end).
        arg_in(libc::SYS_socket, 0, &[libc::AF_UNIX as u64]),
        any(libc::SYS_connect),
        any(libc::SYS_accept4),
        any(libc::SYS_sendto),
        any(libc::SYS_recvfrom),
        any(libc::SYS_shutdown),
        any(libc::SYS_unlinkat),
    ]);
    list.extend(arch::events());
    list
}

/// The command-line program's main thread once the VM runs: it waits for the event
/// loop, prints the timeline and exits; with a control API, it then stops the API
/// (shutting its sockets down) and removes its socket file.
fn main_thread() -> Vec<Entry> {
    let mut list = common();
    list.push(ioctls(Vec::new()));
    list.extend(thread_signals(&[]));
    list.extend([any(libc::SYS_shutdown), any(libc::SYS_unlinkat)]);
    list.extend(arch::main_thread());
    list
}

/// A device's I/O thread (virtio-blk): it waits on eventfds with poll, reads them, and
/// does positional and vectored disk reads and writes and flushes.
fn io() -> Vec<Entry> {
    let mut list = common();
    list.extend(thread_signals(&[]));
    list.extend([
        any(libc::SYS_ppoll),
        any(libc::SYS_read),
        any(libc::SYS_pread64),
        any(libc::SYS_preadv),
        any(libc::SYS_pwrite64),
        any(libc::SYS_pwritev),
        any(libc::SYS_lseek),
        any(libc::SYS_fsync),
        any(libc::SYS_fdatasync),
    ]);
    list.extend(arch::io());
    list
}

/// A control API worker: accepts connections on its Unix socket and serves them
/// (socket reads and writes, timeouts, shutdown); a snapshot request creates the
/// snapshot directory and files, syncs, renames and removes them; metrics read
/// /proc/self/statm and call mincore on guest memory.
fn api() -> Vec<Entry> {
    let mut list = common();
    list.push(ioctls(Vec::new()));
    list.extend(thread_signals(&[]));
    list.extend([
        any(libc::SYS_accept4),
        any(libc::SYS_read),
        any(libc::SYS_recvfrom),
        any(libc::SYS_sendto),
        any(libc::SYS_setsockopt),
        any(libc::SYS_shutdown),
        arg_in(libc::SYS_fcntl, 1, &[libc::F_DUPFD_CLOEXEC as u64]),
        any(libc::SYS_openat),
        any(libc::SYS_mkdirat),
        any(libc::SYS_newfstatat),
        any(libc::SYS_statx),
        any(libc::SYS_fstat),
        any(libc::SYS_lseek),
        any(libc::SYS_ftruncate),
        any(libc::SYS_fallocate),
        any(libc::SYS_fsync),
        any(libc::SYS_fdatasync),
        any(libc::SYS_renameat),
        any(libc::SYS_renameat2),
        any(libc::SYS_unlinkat),
        any(libc::SYS_mincore),
    ]);
    list.extend(arch::api());
    list
}

/// A share's file server (virtio-fs): it waits on eventfds with poll and serves FUSE
/// requests with fuse-backend-rs's passthrough file system, whose calls all start from
/// descriptors it holds under the shared directory (`*at` calls, `/proc/self/fd`
/// reopens); it takes the guest caller's user and group for a create
/// (`setresuid`/`setresgid` on the thread, with `capget`/`capset` to keep
/// DAC_OVERRIDE), and has a umask of its own. No sockets, no exec, no KVM requests.
fn fs() -> Vec<Entry> {
    let mut list = common();
    list.push(ioctls(Vec::new()));
    list.extend(thread_signals(&[]));
    list.extend([
        any(libc::SYS_ppoll),
        any(libc::SYS_read),
        any(libc::SYS_readv),
        any(libc::SYS_pread64),
        any(libc::SYS_preadv),
        any(libc::SYS_preadv2),
        any(libc::SYS_pwrite64),
        any(libc::SYS_pwritev),
        any(libc::SYS_pwritev2),
        any(libc::SYS_lseek),
        any(libc::SYS_openat),
        any(libc::SYS_newfstatat),
        any(libc::SYS_fstat),
        any(libc::SYS_statx),
        any(libc::SYS_fstatfs),
        any(libc::SYS_readlinkat),
        any(libc::SYS_getdents64),
        any(libc::SYS_mkdirat),
        any(libc::SYS_mknodat),
        any(libc::SYS_symlinkat),
        any(libc::SYS_linkat),
        any(libc::SYS_unlinkat),
        any(libc::SYS_renameat),
        any(libc::SYS_renameat2),
        any(libc::SYS_fchmod),
        any(libc::SYS_fchmodat),
        any(libc::SYS_fchown),
        any(libc::SYS_fchownat),
        any(libc::SYS_utimensat),
        any(libc::SYS_ftruncate),
        any(libc::SYS_fallocate),
        any(libc::SYS_fsync),
        any(libc::SYS_fdatasync),
        any(libc::SYS_dup),
        any(libc::SYS_name_to_handle_at),
        arg_in(
            libc::SYS_fcntl,
            1,
            &[
                libc::F_GETFL as u64,
                libc::F_SETFL as u64,
                libc::F_DUPFD_CLOEXEC as u64,
            ],
        ),
        any(libc::SYS_setresuid),
        any(libc::SYS_setresgid),
        any(libc::SYS_setgroups),
        any(libc::SYS_capget),
        any(libc::SYS_capset),
        any(libc::SYS_getuid),
        any(libc::SYS_getgid),
        // A umask of the thread's own (cleared), set when it starts and again when
        // the guest mounts the share.
        arg_in(libc::SYS_unshare, 0, &[libc::CLONE_FS as u64]),
        any(libc::SYS_umask),
    ]);
    list.extend(arch::fs());
    list
}

/// The allow-list of `role`.
pub(crate) fn entries(role: ThreadRole) -> Vec<Entry> {
    match role {
        ThreadRole::Vcpu => vcpu(),
        ThreadRole::Events => events(),
        ThreadRole::Main => main_thread(),
        ThreadRole::Io => io(),
        ThreadRole::Api => api(),
        ThreadRole::Fs => fs(),
    }
}

/// Compiles `role`'s list into a BPF program that traps everything else.
pub(crate) fn compile(role: ThreadRole) -> Result<BpfProgram, SeccompError> {
    let err = |e| SeccompError::BuildDefault(role.name(), e);
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for entry in entries(role) {
        let slot = rules.entry(entry.syscall).or_default();
        for c in entry.when {
            let cond = SeccompCondition::new(
                c.arg,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::MaskedEq(c.mask),
                c.value,
            )
            .map_err(err)?;
            slot.push(SeccompRule::new(vec![cond]).map_err(err)?);
        }
    }
    let filter =
        SeccompFilter::new(rules, SeccompAction::Trap, SeccompAction::Allow, ARCH).map_err(err)?;
    filter.try_into().map_err(err)
}
