//! Requests from a [`crate::VmHandle`] to its running VM (pause, resume, the power
//! button), carried to the event-loop thread, which owns the vCPU threads, over a
//! channel plus an eventfd that wakes the loop. Each request gets one reply.

use crate::error::VmmError;
use event_manager::{EventOps, Events, MutEventSubscriber};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::time::Duration;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// What a handle can ask of a running VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Request {
    /// Park every vCPU.
    Pause,
    /// Release parked vCPUs.
    Resume,
    /// Press the ACPI power button.
    PowerButton,
    /// Save the paused VM's state (left in the handle's snapshot slot).
    Snapshot,
}

/// The outcome the event loop sends back.
pub(crate) type Reply = Result<(), String>;
type Envelope = (Request, SyncSender<Reply>);

/// The handle's end.
pub(crate) struct ControlSender {
    evt: EventFd,
    tx: Sender<Envelope>,
}

/// The event loop's end: collects requests when its eventfd fires.
pub(crate) struct ControlReceiver {
    evt: EventFd,
    rx: Receiver<Envelope>,
    pending: Vec<Envelope>,
}

/// A connected pair.
pub(crate) fn control_channel() -> Result<(ControlSender, ControlReceiver), VmmError> {
    let evt = EventFd::new(EFD_NONBLOCK).map_err(VmmError::EventFd)?;
    let (tx, rx) = channel();
    let sender = ControlSender {
        evt: evt.try_clone().map_err(VmmError::EventFd)?,
        tx,
    };
    Ok((
        sender,
        ControlReceiver {
            evt,
            rx,
            pending: Vec::new(),
        },
    ))
}

impl ControlSender {
    /// Sends `request` and waits up to `timeout` for the reply.
    pub(crate) fn call(&self, request: Request, timeout: Duration) -> Result<(), VmmError> {
        let (reply_tx, reply_rx) = sync_channel(1);
        self.tx
            .send((request, reply_tx))
            .map_err(|_| VmmError::NotRunning)?;
        self.evt.write(1).map_err(VmmError::EventFd)?;
        match reply_rx.recv_timeout(timeout) {
            Ok(reply) => reply.map_err(|why| VmmError::Refused(request_name(request), why)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                Err(VmmError::Refused(request_name(request), "no answer".into()))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(VmmError::NotRunning),
        }
    }
}

fn request_name(request: Request) -> &'static str {
    match request {
        Request::Pause => "pause",
        Request::Resume => "resume",
        Request::PowerButton => "power button",
        Request::Snapshot => "snapshot",
    }
}

impl ControlReceiver {
    /// Requests received so far, oldest first.
    pub(crate) fn take(&mut self) -> Vec<(Request, SyncSender<Reply>)> {
        self.pending.extend(self.rx.try_iter());
        std::mem::take(&mut self.pending)
    }
}

impl MutEventSubscriber for ControlReceiver {
    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        let _ = self.evt.read();
        self.pending.extend(self.rx.try_iter());
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.evt, EventSet::IN)) {
            log::error!("control: cannot watch the request eventfd: {e:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_gets_its_reply() {
        let (tx, mut rx) = control_channel().unwrap();
        let t = std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            loop {
                for (req, reply) in rx.take() {
                    let r = if req == Request::Pause {
                        Ok(())
                    } else {
                        Err("no".into())
                    };
                    let _ = reply.send(r);
                    if req != Request::Pause {
                        return;
                    }
                }
                assert!(std::time::Instant::now() < deadline);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        assert!(tx.call(Request::Pause, Duration::from_secs(5)).is_ok());
        let err = tx
            .call(Request::Resume, Duration::from_secs(5))
            .unwrap_err();
        assert_eq!(err.to_string(), "the VM refused resume: no");
        t.join().unwrap();
        assert!(matches!(
            tx.call(Request::Pause, Duration::from_secs(1)),
            Err(VmmError::NotRunning)
        ));
    }
}
