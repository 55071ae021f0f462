//! The boot timeline: milliseconds from the VMM's time origin to each boot milestone.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A boot milestone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BootEvent {
    /// Seccomp filters compiled (or found off).
    SeccompReady,
    /// The configuration checked and the host resources it names (images, taps) open.
    ConfigChecked,
    /// KVM_CREATE_VM done.
    VmCreated,
    /// Guest memory allocated and registered with KVM (the irqchip and PIT follow).
    MemoryMapped,
    /// Platform and virtio devices on their buses.
    DevicesAttached,
    /// Kernel, initrd, command line and boot structures in guest memory.
    KernelLoaded,
    /// Every vCPU's registers set.
    VcpusConfigured,
    /// vCPU and event-loop threads spawned and confined, the vCPUs parked.
    ThreadsStarted,
    /// The vCPUs let run (at once by `start()`; when taken, for a VM from a pool).
    Released,
    /// The boot vCPU entered KVM_RUN for the first time.
    FirstKvmRun,
    /// The guest wrote its first byte to the serial console.
    FirstSerialByte,
    /// The guest wrote the boot-timer magic (user space reached).
    BootTimer,
    /// The event loop saw why the VM ends (guest reset or power-off, a stop request,
    /// a vCPU that stopped); it then stops every vCPU.
    ExitSeen,
    /// The VM stopped: every vCPU thread joined and the console flushed.
    Exit,
    /// The VM's devices dropped and its KVM descriptor closed: the time from `exit`
    /// to here is almost all the host kernel's own teardown of the VM.
    KvmReleased,
    /// Guest memory unmapped: nothing of the VM is left.
    Freed,
}

impl BootEvent {
    /// A stable, machine-readable name.
    pub fn name(self) -> &'static str {
        match self {
            Self::SeccompReady => "seccomp_ready",
            Self::ConfigChecked => "config_checked",
            Self::VmCreated => "vm_created",
            Self::MemoryMapped => "memory_mapped",
            Self::DevicesAttached => "devices_attached",
            Self::KernelLoaded => "kernel_loaded",
            Self::VcpusConfigured => "vcpus_configured",
            Self::ThreadsStarted => "threads_started",
            Self::Released => "released",
            Self::FirstKvmRun => "first_kvm_run",
            Self::FirstSerialByte => "first_serial_byte",
            Self::BootTimer => "boot_timer",
            Self::ExitSeen => "exit_seen",
            Self::Exit => "exit",
            Self::KvmReleased => "kvm_released",
            Self::Freed => "freed",
        }
    }
}

/// Milestones recorded so far, each at most once, shareable across threads.
#[derive(Clone)]
pub struct Timeline {
    origin: Instant,
    events: Arc<Mutex<Vec<(BootEvent, Duration)>>>,
}

impl Timeline {
    /// A timeline counting from `origin`.
    pub fn new(origin: Instant) -> Self {
        Self {
            origin,
            events: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Records `event` now, unless it was recorded before.
    pub fn record(&self, event: BootEvent) {
        let elapsed = self.origin.elapsed();
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if events.iter().all(|(e, _)| *e != event) {
            log::debug!(
                "boot timeline: {} at {:.3} ms",
                event.name(),
                elapsed.as_secs_f64() * 1e3
            );
            events.push((event, elapsed));
        }
    }

    /// When `event` happened, if it did.
    pub fn get(&self, event: BootEvent) -> Option<Duration> {
        self.snapshot()
            .into_iter()
            .find(|(e, _)| *e == event)
            .map(|(_, d)| d)
    }

    /// All milestones so far, in the order they happened.
    pub fn snapshot(&self) -> Vec<(BootEvent, Duration)> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl fmt::Display for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (event, at) in self.snapshot() {
            writeln!(
                f,
                "boot-timeline {:<18} {:>10.3} ms",
                event.name(),
                at.as_secs_f64() * 1e3
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_each_event_once_in_order() {
        let t = Timeline::new(Instant::now());
        t.record(BootEvent::VmCreated);
        t.record(BootEvent::FirstSerialByte);
        let first = t.get(BootEvent::FirstSerialByte).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        t.record(BootEvent::FirstSerialByte);
        assert_eq!(t.get(BootEvent::FirstSerialByte), Some(first));
        let s = t.snapshot();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].0, BootEvent::VmCreated);
        assert!(s[0].1 <= s[1].1);
        assert!(t.get(BootEvent::Exit).is_none());
        let text = t.to_string();
        assert!(text.contains("boot-timeline vm_created"), "{text}");
    }
}
