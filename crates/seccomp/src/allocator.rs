//! Keeps the C library's allocator from making a system call no filter allows.
//!
//! glibc's malloc opens `/proc/sys/vm/overcommit_memory` once per process, the first
//! time it gives part of a thread arena's heap back to the kernel (`shrink_heap`).
//! When that first happens in a `free` on a filtered thread, the filter traps the
//! `openat` and the VMM stops (seen in `tests/api_teardown.rs`, about one run in four).
//! Heaps are only shrunk when the free space at their top passes the trim threshold,
//! and a thread arena's heap is at most 64 MiB, so a threshold above that means the
//! path is never taken. The cost: glibc keeps up to that much freed memory at the top
//! of the main heap for reuse instead of returning it. musl has no such path.

/// Above the largest glibc thread heap (2 x the 32 MiB maximum mmap threshold).
#[cfg(target_env = "gnu")]
const TRIM_THRESHOLD: libc::c_int = 128 << 20;

/// Sets glibc's trim threshold (once per process) so its allocator never opens a file.
#[cfg(target_env = "gnu")]
pub(crate) fn keep_heaps_from_shrinking() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: mallopt only changes glibc's malloc parameters; it returns 0 on
        // failure, and then nothing has changed.
        if unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) } == 0 {
            log::warn!("seccomp: cannot set glibc's malloc trim threshold");
        }
    });
}

/// Nothing to do outside glibc.
#[cfg(not(target_env = "gnu"))]
pub(crate) fn keep_heaps_from_shrinking() {}
