//! virtio-rng (virtio 1.2 §5.4, "entropy device"): one queue of device-writable
//! buffers, each filled with bytes from the host kernel's `getrandom`, so a fresh
//! guest has entropy at once (a TLS client or an agent never blocks waiting for it).
//! A request is served up to [`MAX_REQUEST`] bytes; the driver asks again for more.

use super::chain::Segments;
use super::{ActivateError, Activation, VirtioDevice, VirtioInterrupt, VIRTIO_F_VERSION_1};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use virtio_bindings::virtio_ids::VIRTIO_ID_RNG;
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

/// Most bytes given per request.
pub const MAX_REQUEST: usize = 64 * 1024;
const QUEUE_SIZES: [u16; 1] = [256];

/// Counts of one device.
#[derive(Debug, Default)]
pub struct RngCounters {
    /// Requests served.
    pub requests: AtomicU64,
    /// Bytes given to the guest.
    pub bytes: AtomicU64,
    /// Buffers returned unused (malformed, or the host source failed).
    pub bad_buffers: AtomicU64,
}
crate::counter_set!(RngCounters {
    requests,
    bytes,
    bad_buffers
});

struct Active {
    memory: GuestMemoryMmap,
    queue: Queue,
    interrupt: VirtioInterrupt,
}

/// A virtio-rng device.
#[derive(Default)]
pub struct Rng {
    active: Option<Active>,
    counters: Arc<RngCounters>,
    buf: Vec<u8>,
}

/// Fills `buf` from the host kernel's random source (no file descriptor needed).
fn host_random(buf: &mut [u8]) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: rest is a valid, writable buffer of rest.len() bytes for the call.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += n as usize;
    }
    Ok(())
}

impl Rng {
    /// A device.
    pub fn new() -> Self {
        Self::default()
    }

    /// The device's counters.
    pub fn counters(&self) -> Arc<RngCounters> {
        self.counters.clone()
    }

    fn serve(&mut self) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        let mut used = false;
        while let Some(chain) = a.queue.pop_descriptor_chain(&a.memory) {
            let head = chain.head_index();
            let len = match Segments::of(&a.memory, chain, true) {
                Ok(segments) => {
                    let n = segments.len.min(MAX_REQUEST);
                    self.buf.resize(n, 0);
                    match host_random(&mut self.buf[..n]) {
                        Ok(()) => segments.write_at(&a.memory, 0, &self.buf[..n]),
                        Err(e) => {
                            log::error!("virtio-rng: getrandom failed: {e}");
                            0
                        }
                    }
                }
                Err(e) => {
                    crate::guest_warn!("virtio-rng: buffer {head} unusable: {e}");
                    0
                }
            };
            if len == 0 {
                self.counters.bad_buffers.fetch_add(1, Ordering::Relaxed);
            } else {
                self.counters.requests.fetch_add(1, Ordering::Relaxed);
                self.counters.bytes.fetch_add(len as u64, Ordering::Relaxed);
            }
            if let Err(e) = a.queue.add_used(&a.memory, head, len as u32) {
                crate::guest_warn!("virtio-rng: cannot return buffer {head}: {e:?}");
                break;
            }
            used = true;
        }
        if used {
            super::signal_used(&mut a.queue, &a.memory, &a.interrupt);
        }
    }
}

impl VirtioDevice for Rng {
    fn counters(&self) -> Option<std::sync::Arc<dyn crate::counters::CounterSet>> {
        Some(self.counters.clone())
    }

    fn device_type(&self) -> u32 {
        VIRTIO_ID_RNG
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }

    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write_config(&mut self, offset: u64, _data: &[u8]) {
        crate::guest_warn!("virtio-rng: ignored config write at {offset}");
    }

    fn queue_states(&self) -> Result<Vec<Option<virtio_queue::QueueState>>, String> {
        let a = self.active.as_ref().ok_or("not activated")?;
        Ok(vec![Some(a.queue.state())])
    }

    fn activate(&mut self, a: Activation) -> Result<(), ActivateError> {
        let queue = a
            .queues
            .into_iter()
            .next()
            .ok_or(ActivateError::QueueNotReady(0))?;
        self.active = Some(Active {
            memory: a.memory,
            queue,
            interrupt: a.interrupt,
        });
        Ok(())
    }

    fn process_queue(&mut self, index: usize) {
        if index == 0 {
            self.serve();
        }
    }

    fn reset(&mut self) {
        self.active = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::test_ring::{desc, Ring, N, W};
    use vm_memory::{Bytes, GuestAddress};
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    #[test]
    fn fills_buffers_with_random_bytes_and_skips_bad_ones() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        let mut ring = Ring::new(&mem, 0, 16);
        let irq = EventFd::new(EFD_NONBLOCK).unwrap();
        let mut rng = Rng::new();
        rng.activate(Activation {
            memory: mem.clone(),
            queues: vec![ring.queue()],
            acked_features: rng.features(),
            interrupt: VirtioInterrupt::new(irq.try_clone().unwrap()),
        })
        .unwrap();
        // Two descriptors of 16 bytes; a device-readable one; one past memory.
        ring.post(0, &[desc(0x8000, 16, W | N, 1), desc(0x9000, 16, W, 0)]);
        ring.post(2, &[desc(0xa000, 32, 0, 0)]);
        ring.post(3, &[desc(0xff_fff0, 64, W, 0)]);
        ring.post(4, &[desc(0xb000, 200_000, W, 0)]);
        rng.process_queue(0);
        assert_eq!(
            ring.take_used(),
            vec![(0, 32), (2, 0), (3, 0), (4, MAX_REQUEST as u32)]
        );
        let mut a = [0u8; 16];
        let mut b = [0u8; 16];
        mem.read_slice(&mut a, GuestAddress(0x8000)).unwrap();
        mem.read_slice(&mut b, GuestAddress(0x9000)).unwrap();
        assert_ne!(a, [0; 16]);
        assert_ne!(a, b);
        assert_eq!(irq.read().unwrap(), 1);
        let c = rng.counters();
        assert_eq!(c.requests.load(Ordering::Relaxed), 2);
        assert_eq!(c.bad_buffers.load(Ordering::Relaxed), 2);
    }
}
