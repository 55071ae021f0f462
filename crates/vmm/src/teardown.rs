//! Deferred teardown (`VmBuilder::async_teardown`, `--async-teardown on`): a helper process
//! holds a duplicate of the VM's KVM descriptor, so that the VMM's own close is not the
//! last one and the host kernel destroys the VM (in-kernel PIC, IOAPIC and PIT, each
//! waiting for an SRCU grace period: about 24 ms on the nested development host) in the
//! helper, after the VM has ended and the VMM has moved on or exited. QEMU's
//! `-run-with async-teardown=on` does the same for guest memory.
//!
//! The helper is a grandchild (the intermediate child exits at once and is reaped, so
//! the helper belongs to init, not to an embedding program that may never reap it; an
//! init that does not reap orphans keeps one zombie per VM, which is why it is opt-in).
//! It
//! keeps only the VM descriptor and the read end of a "lifeline" pipe, closes everything
//! else (taps, images, eventfds) before the VM starts, and exits when the lifeline's
//! write end closes: when the VMM drops the [`TeardownHelper`] after its own close, or
//! when the VMM process dies. Guest memory is marked `MADV_DONTFORK` first, so the fork
//! copies none of it (and the VMM never faults on copy-on-write pages).

use crate::error::VmmError;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// The VMM's end of the lifeline: dropping it lets the helper exit.
pub(crate) struct TeardownHelper {
    _lifeline: OwnedFd,
}

/// A pipe, both ends close-on-exec.
fn pipe() -> Result<(OwnedFd, OwnedFd), VmmError> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(VmmError::TeardownHelper(std::io::Error::last_os_error()));
    }
    // SAFETY: pipe2 succeeded: both are fresh descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Closes every descriptor except those in `keep`, standard input and output included
/// (a caller reading minivmm's output to its end must not wait for the helper); async-
/// signal-safe: raw syscalls only.
fn close_all_but(keep: &mut [RawFd]) {
    keep.sort_unstable();
    let mut from: libc::c_uint = 0;
    for &fd in keep.iter() {
        let fd = fd as libc::c_uint;
        if fd > from {
            // SAFETY: closes descriptors of this (forked) process only.
            unsafe { libc::syscall(libc::SYS_close_range, from, fd - 1, 0) };
        }
        from = from.max(fd + 1);
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, from, libc::c_uint::MAX, 0) };
}

/// The helper's whole life, in the forked grandchild: async-signal-safe calls only.
fn helper(vm_fd: RawFd, lifeline: RawFd, ready: RawFd) -> ! {
    // SAFETY: plain syscalls on this process's own signals and descriptors.
    unsafe {
        // Ctrl-C reaches the whole process group: the helper outlives it quietly.
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE] {
            libc::signal(signal, libc::SIG_IGN);
        }
        close_all_but(&mut [vm_fd, lifeline, ready]);
        let byte = 1u8;
        libc::write(ready, (&byte as *const u8).cast(), 1);
        libc::close(ready);
        let mut buf = 0u8;
        // Returns 0 (EOF) once no process holds the write end; retries on EINTR.
        while libc::read(lifeline, (&mut buf as *mut u8).cast(), 1) != 0 {}
        libc::_exit(0)
    }
}

/// Marks guest memory not to be inherited by a fork.
fn dont_fork(memory: &GuestMemoryMmap) {
    for region in memory.iter() {
        // SAFETY: advises the kernel about this region's own live mapping; no memory
        // is read or written.
        let ret = unsafe {
            libc::madvise(
                region.as_ptr().cast(),
                region.len() as usize,
                libc::MADV_DONTFORK,
            )
        };
        if ret != 0 {
            log::debug!(
                "MADV_DONTFORK on guest memory: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Starts the helper for the VM `vm_fd`, whose guest memory is `memory`. Call it
/// before the VM's threads exist (the process forks).
pub(crate) fn spawn(
    vm_fd: &impl AsRawFd,
    memory: &GuestMemoryMmap,
) -> Result<TeardownHelper, VmmError> {
    dont_fork(memory);
    let (lifeline_rd, lifeline_wr) = pipe()?;
    let (ready_rd, ready_wr) = pipe()?;
    let (vm, life, ready) = (
        vm_fd.as_raw_fd(),
        lifeline_rd.as_raw_fd(),
        ready_wr.as_raw_fd(),
    );
    // SAFETY: the child runs only async-signal-safe code (fork, _exit and `helper`'s
    // raw syscalls) before it exits or becomes the helper.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(VmmError::TeardownHelper(std::io::Error::last_os_error()));
    }
    if child == 0 {
        // SAFETY: as above; the intermediate child leaves at once.
        // The raw system call, not the C library's fork: no atfork handlers run in a
        // child of a possibly multi-threaded process.
        unsafe {
            let flags = libc::SIGCHLD as libc::c_long;
            if libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) == 0 {
                helper(vm, life, ready);
            }
            libc::_exit(0);
        }
    }
    drop(ready_wr);
    drop(lifeline_rd);
    let mut status = 0;
    // SAFETY: reaps our own child, which exits right after forking the helper.
    unsafe { libc::waitpid(child, &mut status, 0) };
    let mut byte = 0u8;
    let n = loop {
        // SAFETY: reads one byte into our own buffer from our own pipe.
        let n = unsafe { libc::read(ready_rd.as_raw_fd(), (&mut byte as *mut u8).cast(), 1) };
        if n >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break n;
        }
    };
    if n != 1 {
        return Err(VmmError::TeardownHelper(std::io::Error::other(
            "the teardown helper did not start",
        )));
    }
    Ok(TeardownHelper {
        _lifeline: lifeline_wr,
    })
}
