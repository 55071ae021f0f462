//! A device's own thread: the link from its device model (commands over a channel,
//! an eventfd that wakes the thread) and waiting on the thread's descriptors.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// The device model's end of the link to its thread.
pub struct WorkerLink<C> {
    commands: Sender<C>,
    wake: Arc<EventFd>,
    device: &'static str,
}

/// The thread's end: the commands, and the eventfd to wait on for them.
pub struct WorkerInbox<C> {
    /// Commands from the device model.
    pub commands: Receiver<C>,
    /// Readable when a command was sent.
    pub wake: Arc<EventFd>,
}

/// A link for the thread of `device` (its name in log lines).
pub fn worker_link<C>(device: &'static str) -> std::io::Result<(WorkerLink<C>, WorkerInbox<C>)> {
    let wake = Arc::new(EventFd::new(EFD_NONBLOCK)?);
    let (commands, receiver) = channel();
    Ok((
        WorkerLink {
            commands,
            wake: wake.clone(),
            device,
        },
        WorkerInbox {
            commands: receiver,
            wake,
        },
    ))
}

impl<C> WorkerLink<C> {
    /// Sends `command` and wakes the thread; false if the thread is gone.
    pub fn send(&self, command: C) -> bool {
        if self.commands.send(command).is_err() {
            return false;
        }
        if let Err(e) = self.wake.write(1) {
            log::error!("{}: cannot wake its thread: {e}", self.device);
        }
        true
    }
}

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
