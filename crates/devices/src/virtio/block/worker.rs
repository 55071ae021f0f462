//! The block device's own I/O thread. The device model (on the vCPU threads, behind its
//! transport's lock) sends it activations and resets over a channel and wakes it with
//! an eventfd; the thread waits on that, on the queue's notification eventfd and on the
//! VMM's stop eventfd, and does every disk read, write and flush. A disk that takes a
//! second per request holds up this thread only: the event loop (console, network,
//! other disks) and the vCPUs, which never wait for it, carry on.

use super::io::{Active, BlockIo};
use crate::virtio::{wait_readable, DeviceWorker, WorkerInbox};
use std::os::fd::AsRawFd;
use std::sync::mpsc::{Sender, TryRecvError};
use std::time::Duration;
use vmm_sys_util::eventfd::EventFd;

/// How long a driver reset waits for the request in flight to finish.
pub(crate) const RESET_TIMEOUT: Duration = Duration::from_secs(5);

/// What the device model tells its thread.
pub(crate) enum Command {
    /// The driver activated the device with this queue.
    Activate(Active),
    /// The driver reset the device: drop the queue, then acknowledge.
    Reset(Sender<()>),
    /// A snapshot: serve every request the driver has made available (the vCPUs are
    /// parked, so no more come), then answer with the queue's positions.
    Save(Sender<Option<virtio_queue::QueueState>>),
}

/// The thread's state: the disk and queue, and the command channel.
pub(crate) struct BlockWorker {
    pub(crate) io: BlockIo,
    pub(crate) inbox: WorkerInbox<Command>,
}

impl BlockWorker {
    /// Carries out every pending command; false once the device model is gone.
    fn drain_commands(&mut self) -> bool {
        loop {
            match self.inbox.commands.try_recv() {
                Ok(Command::Activate(active)) => self.io.active = Some(active),
                Ok(Command::Reset(ack)) => {
                    self.io.active = None;
                    let _ = ack.send(());
                }
                Ok(Command::Save(answer)) => {
                    self.io.process();
                    let state = self.io.active.as_ref().map(|a| a.queue.state());
                    let _ = answer.send(state);
                }
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }
}

impl DeviceWorker for BlockWorker {
    fn name(&self) -> &'static str {
        "blk"
    }

    fn run(mut self: Box<Self>, queue_evts: Vec<EventFd>, stop: EventFd) {
        let Some(queue) = queue_evts.first() else {
            log::error!("virtio-blk: I/O thread started without a queue eventfd");
            return;
        };
        let fds = [
            stop.as_raw_fd(),
            self.inbox.wake.as_raw_fd(),
            queue.as_raw_fd(),
        ];
        loop {
            let ready = wait_readable(&fds);
            if ready[0] {
                return;
            }
            if ready[1] {
                let _ = self.inbox.wake.read();
            }
            // Commands first: an activation is sent before the queue's first kick.
            if !self.drain_commands() {
                return;
            }
            if ready[2] {
                let _ = queue.read();
                self.io.process();
            }
        }
    }
}
