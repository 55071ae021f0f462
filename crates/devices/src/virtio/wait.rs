//! Waiting on a device thread's descriptors.

/// Waits until one of `fds` is readable (or a signal interrupts the wait); returns
/// which are.
pub fn wait_readable(fds: &[i32]) -> Vec<bool> {
    let mut polls: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `polls` is a live array of `polls.len()` pollfd structs that poll fills.
    let n = unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, -1) };
    if n < 0 {
        return vec![false; fds.len()];
    }
    polls.iter().map(|p| p.revents != 0).collect()
}
