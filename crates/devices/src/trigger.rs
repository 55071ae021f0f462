//! An interrupt line as an eventfd: the device fires it, KVM (through an irqfd)
//! delivers it, and neither knows about the other.

use vmm_sys_util::eventfd::EventFd;

/// A `vm_superio::Trigger` backed by an eventfd registered as a KVM irqfd.
pub struct EventFdTrigger(EventFd);

impl EventFdTrigger {
    /// Wraps `evt`.
    pub fn new(evt: EventFd) -> Self {
        Self(evt)
    }

    /// The underlying eventfd, to register with KVM.
    pub fn event_fd(&self) -> &EventFd {
        &self.0
    }
}

impl vm_superio::Trigger for EventFdTrigger {
    type E = std::io::Error;

    fn trigger(&self) -> Result<(), Self::E> {
        self.0.write(1)
    }
}
