//! A share's own thread. The device model (on the vCPU threads, behind its transport's
//! lock) sends it activations and resets over a channel and wakes it with an eventfd;
//! the thread waits on that, on the queues' notification eventfds and on the VMM's stop
//! eventfd, and serves every FUSE request. A slow host file system holds up this thread
//! only: the event loop (console, network, other devices) and the vCPUs carry on.

use crate::server::{Active, FileServer};
use devices::virtio::{wait_readable, DeviceWorker, WorkerInbox, WorkerRole};
use std::os::fd::AsRawFd;
use std::sync::mpsc::{Sender, TryRecvError};
use std::time::Duration;
use vmm_sys_util::eventfd::EventFd;

/// How long a driver reset waits for the request in flight to finish.
pub(crate) const RESET_TIMEOUT: Duration = Duration::from_secs(5);

/// What the device model tells its thread.
pub(crate) enum Command {
    /// The driver activated the device with these queues.
    Activate(Active),
    /// The driver reset the device: drop the queues, then acknowledge.
    Reset(Sender<()>),
}

/// The thread's state: the file server and the command channel.
pub(crate) struct FsWorker {
    pub(crate) server: FileServer,
    pub(crate) inbox: WorkerInbox<Command>,
}

impl FsWorker {
    /// Carries out every pending command; false once the device model is gone.
    fn drain_commands(&mut self) -> bool {
        loop {
            match self.inbox.commands.try_recv() {
                Ok(Command::Activate(active)) => self.server.active = Some(active),
                Ok(Command::Reset(ack)) => {
                    self.server.active = None;
                    let _ = ack.send(());
                }
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }
}

/// Gives this thread a umask of its own, cleared: files the guest creates get the mode
/// it asks for, and the rest of the process keeps its umask (the passthrough file
/// system clears the umask again when the guest mounts the share).
fn own_umask() {
    // SAFETY: unshare(CLONE_FS) copies this thread's root, working directory and umask
    // so that changes stay in this thread; it touches no memory of ours.
    if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
        log::error!(
            "virtio-fs: cannot give the file server its own umask ({}); the process's \
             umask applies to files the guest creates",
            std::io::Error::last_os_error()
        );
        return;
    }
    // SAFETY: umask changes no memory and always succeeds.
    unsafe { libc::umask(0) };
}

impl DeviceWorker for FsWorker {
    fn name(&self) -> &'static str {
        "fs"
    }

    fn role(&self) -> WorkerRole {
        WorkerRole::FileServer
    }

    fn run(mut self: Box<Self>, queue_evts: Vec<EventFd>, stop: EventFd) {
        own_umask();
        let mut fds = vec![stop.as_raw_fd(), self.inbox.wake.as_raw_fd()];
        fds.extend(queue_evts.iter().map(|e| e.as_raw_fd()));
        loop {
            let ready = wait_readable(&fds);
            if ready[0] {
                return;
            }
            if ready[1] {
                let _ = self.inbox.wake.read();
            }
            // Commands first: an activation is sent before the queues' first kicks.
            if !self.drain_commands() {
                return;
            }
            for (index, evt) in queue_evts.iter().enumerate() {
                if ready.get(index + 2).copied().unwrap_or(false) {
                    let _ = evt.read();
                    self.server.process(index);
                }
            }
        }
    }
}
