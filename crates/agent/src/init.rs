//! What the agent does as the guest's PID 1 (mount the API file systems), and the
//! power-off itself. PID 1 also reaps orphans: that is the reaper's job
//! (`reaper.rs`), started before the first connection.

use std::ffi::CStr;
use std::io;

/// A file system the agent mounts as PID 1.
struct Mount {
    source: &'static CStr,
    target: &'static CStr,
    fstype: &'static CStr,
    flags: libc::c_ulong,
    data: &'static CStr,
}

const MOUNTS: [Mount; 5] = [
    Mount {
        source: c"proc",
        target: c"/proc",
        fstype: c"proc",
        flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        data: c"",
    },
    Mount {
        source: c"sysfs",
        target: c"/sys",
        fstype: c"sysfs",
        flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        data: c"",
    },
    Mount {
        source: c"devtmpfs",
        target: c"/dev",
        fstype: c"devtmpfs",
        flags: libc::MS_NOSUID,
        data: c"mode=0755",
    },
    Mount {
        source: c"devpts",
        target: c"/dev/pts",
        fstype: c"devpts",
        flags: libc::MS_NOSUID | libc::MS_NOEXEC,
        data: c"mode=0620,ptmxmode=0666",
    },
    Mount {
        source: c"tmpfs",
        target: c"/tmp",
        fstype: c"tmpfs",
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: c"mode=1777",
    },
];

/// Mounts /proc, /sys, devtmpfs on /dev, devpts on /dev/pts and a tmpfs on /tmp,
/// creating the directories as needed. Already mounted (EBUSY) is fine; any other
/// failure is logged and the rest still mounted.
pub fn mount_api_filesystems() {
    for m in &MOUNTS {
        // SAFETY: target is NUL-terminated; mkdir has no memory effects.
        if unsafe { libc::mkdir(m.target.as_ptr(), 0o755) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                log::warn!("mkdir {}: {e}", m.target.to_string_lossy());
            }
        }
        // SAFETY: every pointer is a NUL-terminated static string.
        let r = unsafe {
            libc::mount(
                m.source.as_ptr(),
                m.target.as_ptr(),
                m.fstype.as_ptr(),
                m.flags,
                m.data.as_ptr().cast(),
            )
        };
        if r != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EBUSY) {
                log::warn!(
                    "mounting {} on {}: {e}",
                    m.fstype.to_string_lossy(),
                    m.target.to_string_lossy()
                );
            }
        }
    }
}

/// Makes sure fds 0, 1 and 2 are open (to /dev/null, else to a pipe), so no socket
/// or pipe the agent opens later lands on them and is clobbered when a child's stdio
/// is set up.
pub fn ensure_stdio() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only queries the fd.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1 {
            continue;
        }
        // SAFETY: the path is NUL-terminated; the fd is left open on purpose.
        let opened = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        if opened == -1 {
            let mut p = [0; 2];
            // SAFETY: pipe writes two fds into the array; both are kept open.
            unsafe { libc::pipe(p.as_mut_ptr()) };
        }
    }
}

/// Powers the machine off: sync, then `reboot(RB_POWER_OFF)`. Returns only if that
/// failed.
pub fn power_off() -> io::Result<()> {
    // SAFETY: sync and reboot have no memory effects; reboot returns only on error.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    Err(io::Error::last_os_error())
}
