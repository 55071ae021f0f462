use super::*;
use crate::virtio::ActivateError;
use std::sync::{Arc, Mutex};
use vm_memory::GuestAddress;
use vmm_sys_util::eventfd::EFD_NONBLOCK;

/// What the dummy device saw.
#[derive(Default)]
struct Seen {
    activations: Vec<(u64, usize)>,
    resets: usize,
    config_writes: Vec<(u64, Vec<u8>)>,
}

struct Dummy {
    seen: Arc<Mutex<Seen>>,
    fail_activation: bool,
}

const DUMMY_FEATURES: u64 = VIRTIO_F_VERSION_1 | 0b101;

impl VirtioDevice for Dummy {
    fn device_type(&self) -> u32 {
        42
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[16, 8]
    }
    fn features(&self) -> u64 {
        DUMMY_FEATURES
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        crate::virtio::read_config_bytes(&[1, 2, 3, 4, 5, 6, 7, 8], offset, data);
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        self.seen
            .lock()
            .unwrap()
            .config_writes
            .push((offset, data.to_vec()));
    }
    fn activate(&mut self, a: Activation) -> Result<(), ActivateError> {
        if self.fail_activation {
            return Err(ActivateError::InvalidQueue(0));
        }
        self.seen
            .lock()
            .unwrap()
            .activations
            .push((a.acked_features, a.queues.len()));
        Ok(())
    }
    fn process_queue(&mut self, _index: usize) {}
    fn reset(&mut self) {
        self.seen.lock().unwrap().resets += 1;
    }
}

struct Fixture {
    t: MmioTransport,
    seen: Arc<Mutex<Seen>>,
    irq: EventFd,
    notify: Vec<EventFd>,
}

fn fixture(fail_activation: bool) -> Fixture {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
    let irq = EventFd::new(EFD_NONBLOCK).unwrap();
    let notify: Vec<EventFd> = (0..2)
        .map(|_| EventFd::new(EFD_NONBLOCK).unwrap())
        .collect();
    let t = MmioTransport::new(
        Box::new(Dummy {
            seen: seen.clone(),
            fail_activation,
        }),
        mem,
        VirtioInterrupt::new(irq.try_clone().unwrap()),
        notify.iter().map(|e| e.try_clone().unwrap()).collect(),
    );
    Fixture {
        t,
        seen,
        irq,
        notify,
    }
}

fn r(t: &mut MmioTransport, off: u32) -> u32 {
    let mut b = [0u8; 4];
    t.read(u64::from(off), &mut b);
    u32::from_le_bytes(b)
}

fn w(t: &mut MmioTransport, off: u32, v: u32) {
    t.write(u64::from(off), &v.to_le_bytes());
}

const ACK: u32 = VIRTIO_CONFIG_S_ACKNOWLEDGE;
const DRV: u32 = VIRTIO_CONFIG_S_DRIVER;
const FOK: u32 = VIRTIO_CONFIG_S_FEATURES_OK;
const DOK: u32 = VIRTIO_CONFIG_S_DRIVER_OK;

/// Lays out queue `q` of size `n` in guest memory and marks it ready.
fn setup_queue(t: &mut MmioTransport, q: u32, n: u32) {
    let base = 0x1_0000 + q * 0x1_0000;
    w(t, VIRTIO_MMIO_QUEUE_SEL, q);
    w(t, VIRTIO_MMIO_QUEUE_NUM, n);
    w(t, VIRTIO_MMIO_QUEUE_DESC_LOW, base);
    w(t, VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
    w(t, VIRTIO_MMIO_QUEUE_AVAIL_LOW, base + 0x4000);
    w(t, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, 0);
    w(t, VIRTIO_MMIO_QUEUE_USED_LOW, base + 0x8000);
    w(t, VIRTIO_MMIO_QUEUE_USED_HIGH, 0);
    w(t, VIRTIO_MMIO_QUEUE_READY, 1);
}

fn negotiate(t: &mut MmioTransport, features: u64) {
    w(t, VIRTIO_MMIO_STATUS, ACK);
    w(t, VIRTIO_MMIO_STATUS, ACK | DRV);
    w(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    w(t, VIRTIO_MMIO_DRIVER_FEATURES, features as u32);
    w(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    w(t, VIRTIO_MMIO_DRIVER_FEATURES, (features >> 32) as u32);
    w(t, VIRTIO_MMIO_STATUS, ACK | DRV | FOK);
}

#[test]
fn identifies_as_a_version_2_device() {
    let mut f = fixture(false);
    assert_eq!(r(&mut f.t, VIRTIO_MMIO_MAGIC_VALUE), 0x7472_6976);
    assert_eq!(r(&mut f.t, VIRTIO_MMIO_VERSION), 2);
    assert_eq!(r(&mut f.t, VIRTIO_MMIO_DEVICE_ID), 42);
    w(&mut f.t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    assert_eq!(r(&mut f.t, VIRTIO_MMIO_DEVICE_FEATURES), 0b101);
    w(&mut f.t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    assert_eq!(r(&mut f.t, VIRTIO_MMIO_DEVICE_FEATURES), 1);
    w(&mut f.t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 7);
    assert_eq!(r(&mut f.t, VIRTIO_MMIO_DEVICE_FEATURES), 0);
    w(&mut f.t, VIRTIO_MMIO_QUEUE_SEL, 1);
    assert_eq!(r(&mut f.t, VIRTIO_MMIO_QUEUE_NUM_MAX), 8);
    w(&mut f.t, VIRTIO_MMIO_QUEUE_SEL, 9);
    assert_eq!(r(&mut f.t, VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
}

#[test]
fn full_negotiation_activates_the_device() {
    let mut f = fixture(false);
    negotiate(&mut f.t, DUMMY_FEATURES);
    assert_eq!(r(&mut f.t, VIRTIO_MMIO_STATUS), ACK | DRV | FOK);
    setup_queue(&mut f.t, 0, 16);
    setup_queue(&mut f.t, 1, 8);
    w(&mut f.t, VIRTIO_MMIO_STATUS, ACK | DRV | FOK | DOK);
    assert_eq!(r(&mut f.t, VIRTIO_MMIO_STATUS), ACK | DRV | FOK | DOK);
    assert!(f.t.is_activated());
    assert_eq!(
        f.seen.lock().unwrap().activations,
        vec![(DUMMY_FEATURES, 2)]
    );
    // Every queue is notified once, so the event loop (not this vCPU thread) picks up
    // work that was waiting before activation.
    for (i, evt) in f.notify.iter().enumerate() {
        assert_eq!(evt.read().ok(), Some(1), "queue {i}");
    }
}

#[test]
fn unoffered_or_legacy_features_are_refused() {
    let mut f = fixture(false);
    negotiate(&mut f.t, DUMMY_FEATURES | (1 << 40));
    assert_eq!(
        r(&mut f.t, VIRTIO_MMIO_STATUS) & FOK,
        0,
        "unoffered feature accepted"
    );
    let mut f = fixture(false);
    negotiate(&mut f.t, 0b1); // no VERSION_1: legacy drivers are not supported
    assert_eq!(r(&mut f.t, VIRTIO_MMIO_STATUS) & FOK, 0);
}

#[test]
fn out_of_order_status_and_queue_setup_are_ignored() {
    let mut f = fixture(false);
    // All at once, from nothing: no features were negotiated, so FEATURES_OK (and with
    // it DRIVER_OK) stays clear.
    w(&mut f.t, VIRTIO_MMIO_STATUS, ACK | DRV | FOK | DOK);
    assert_eq!(r(&mut f.t, VIRTIO_MMIO_STATUS), ACK | DRV);
    assert!(
        !f.t.is_activated(),
        "DRIVER_OK before queues are ready must not activate"
    );
    // DRIVER_OK before FEATURES_OK is out of order.
    let mut f = fixture(false);
    w(&mut f.t, VIRTIO_MMIO_STATUS, ACK);
    w(&mut f.t, VIRTIO_MMIO_STATUS, ACK | DOK);
    assert_eq!(r(&mut f.t, VIRTIO_MMIO_STATUS), ACK);
    let mut f = fixture(false);
    // Queue registers before FEATURES_OK are ignored.
    setup_queue(&mut f.t, 0, 16);
    w(&mut f.t, VIRTIO_MMIO_QUEUE_SEL, 0);
    assert_eq!(r(&mut f.t, VIRTIO_MMIO_QUEUE_READY), 0);
    // Driver features after FEATURES_OK are ignored.
    negotiate(&mut f.t, DUMMY_FEATURES);
    w(&mut f.t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    w(&mut f.t, VIRTIO_MMIO_DRIVER_FEATURES, 0xffff_ffff);
    setup_queue(&mut f.t, 0, 16);
    setup_queue(&mut f.t, 1, 8);
    w(&mut f.t, VIRTIO_MMIO_STATUS, ACK | DRV | FOK | DOK);
    assert_eq!(
        f.seen.lock().unwrap().activations,
        vec![(DUMMY_FEATURES, 2)]
    );
}

#[test]
fn invalid_queues_need_reset_instead_of_activation() {
    let mut f = fixture(false);
    negotiate(&mut f.t, DUMMY_FEATURES);
    setup_queue(&mut f.t, 0, 16);
    // Queue 1 is not ready.
    w(&mut f.t, VIRTIO_MMIO_STATUS, ACK | DRV | FOK | DOK);
    assert!(!f.t.is_activated());
    assert_ne!(
        r(&mut f.t, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET,
        0
    );
    assert_eq!(
        r(&mut f.t, VIRTIO_MMIO_INTERRUPT_STATUS),
        VIRTIO_MMIO_INT_CONFIG
    );
    assert_eq!(f.irq.read().unwrap(), 1);

    let mut f = fixture(false);
    negotiate(&mut f.t, DUMMY_FEATURES);
    setup_queue(&mut f.t, 0, 16);
    setup_queue(&mut f.t, 1, 8);
    w(&mut f.t, VIRTIO_MMIO_QUEUE_SEL, 1);
    w(&mut f.t, VIRTIO_MMIO_QUEUE_USED_LOW, 0xfff0_0000); // outside guest memory
    w(&mut f.t, VIRTIO_MMIO_STATUS, ACK | DRV | FOK | DOK);
    assert!(!f.t.is_activated());
    // Non-power-of-two and oversize queue sizes are refused.
    let mut f = fixture(false);
    negotiate(&mut f.t, DUMMY_FEATURES);
    w(&mut f.t, VIRTIO_MMIO_QUEUE_SEL, 0);
    w(&mut f.t, VIRTIO_MMIO_QUEUE_NUM, 12);
    w(&mut f.t, VIRTIO_MMIO_QUEUE_NUM, 1 << 20);
}

#[test]
fn device_activation_failure_needs_reset() {
    let mut f = fixture(true);
    negotiate(&mut f.t, DUMMY_FEATURES);
    setup_queue(&mut f.t, 0, 16);
    setup_queue(&mut f.t, 1, 8);
    w(&mut f.t, VIRTIO_MMIO_STATUS, ACK | DRV | FOK | DOK);
    assert!(!f.t.is_activated());
    assert_ne!(
        r(&mut f.t, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET,
        0
    );
}

#[test]
fn writing_zero_resets_everything() {
    let mut f = fixture(false);
    negotiate(&mut f.t, DUMMY_FEATURES);
    setup_queue(&mut f.t, 0, 16);
    setup_queue(&mut f.t, 1, 8);
    w(&mut f.t, VIRTIO_MMIO_STATUS, ACK | DRV | FOK | DOK);
    f.t.interrupt.signal_used_queue();
    w(&mut f.t, VIRTIO_MMIO_STATUS, 0);
    assert_eq!(r(&mut f.t, VIRTIO_MMIO_STATUS), 0);
    assert_eq!(r(&mut f.t, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
    assert!(!f.t.is_activated());
    assert_eq!(f.seen.lock().unwrap().resets, 1);
    w(&mut f.t, VIRTIO_MMIO_QUEUE_SEL, 0);
    assert_eq!(r(&mut f.t, VIRTIO_MMIO_QUEUE_READY), 0);
    // And the device can be brought up again.
    negotiate(&mut f.t, DUMMY_FEATURES);
    setup_queue(&mut f.t, 0, 16);
    setup_queue(&mut f.t, 1, 8);
    w(&mut f.t, VIRTIO_MMIO_STATUS, ACK | DRV | FOK | DOK);
    assert_eq!(f.seen.lock().unwrap().activations.len(), 2);
}

#[test]
fn notify_interrupt_ack_and_failed() {
    let mut f = fixture(false);
    w(&mut f.t, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
    assert_eq!(f.notify[1].read().unwrap(), 1);
    assert!(f.notify[0].read().is_err());
    w(&mut f.t, VIRTIO_MMIO_QUEUE_NOTIFY, 5); // no such queue: ignored
    f.t.interrupt.signal_used_queue();
    assert_eq!(
        r(&mut f.t, VIRTIO_MMIO_INTERRUPT_STATUS),
        VIRTIO_MMIO_INT_VRING
    );
    w(&mut f.t, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
    assert_eq!(r(&mut f.t, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
    w(&mut f.t, VIRTIO_MMIO_STATUS, ACK);
    w(&mut f.t, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_FAILED);
    assert_ne!(r(&mut f.t, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FAILED, 0);
}

#[test]
fn config_space_and_bad_accesses() {
    let mut f = fixture(false);
    let mut b = [0u8; 4];
    f.t.read(0x100 + 2, &mut b);
    assert_eq!(b, [3, 4, 5, 6]);
    f.t.read(0x100 + 6, &mut b);
    assert_eq!(b, [7, 8, 0, 0]);
    f.t.read(u64::MAX - 1, &mut b);
    assert_eq!(b, [0; 4]);
    // Config writes before DRIVER are dropped; after, they reach the device.
    f.t.write(0x100, &[9]);
    w(&mut f.t, VIRTIO_MMIO_STATUS, ACK);
    w(&mut f.t, VIRTIO_MMIO_STATUS, ACK | DRV);
    f.t.write(0x104, &[9, 9]);
    assert_eq!(f.seen.lock().unwrap().config_writes, vec![(4, vec![9, 9])]);
    // Wrong widths and unaligned register accesses are ignored.
    let mut two = [0xffu8; 2];
    f.t.read(u64::from(VIRTIO_MMIO_MAGIC_VALUE), &mut two);
    assert_eq!(two, [0, 0]);
    f.t.read(1, &mut b);
    assert_eq!(b, [0; 4]);
    f.t.write(u64::from(VIRTIO_MMIO_STATUS), &[0]);
    assert_eq!(r(&mut f.t, VIRTIO_MMIO_STATUS), ACK | DRV);
    assert_eq!(r(&mut f.t, 0xf0), 0);
}

#[test]
fn an_active_device_moves_to_a_fresh_transport_mid_stream() {
    use crate::virtio::rng::Rng;
    use crate::virtio::test_ring::{desc, Ring, W};
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
    let transport = |mem: &GuestMemoryMmap| {
        MmioTransport::new(
            Box::new(Rng::new()),
            mem.clone(),
            VirtioInterrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()),
            vec![EventFd::new(EFD_NONBLOCK).unwrap()],
        )
    };
    let mut ring = Ring::new(&mem, 0x1_0000, 8);
    let mut t = transport(&mem);
    negotiate(&mut t, VIRTIO_F_VERSION_1);
    w(&mut t, VIRTIO_MMIO_QUEUE_SEL, 0);
    w(&mut t, VIRTIO_MMIO_QUEUE_NUM, 8);
    w(&mut t, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x1_0000);
    w(&mut t, VIRTIO_MMIO_QUEUE_AVAIL_LOW, 0x1_1000);
    w(&mut t, VIRTIO_MMIO_QUEUE_USED_LOW, 0x1_2000);
    w(&mut t, VIRTIO_MMIO_QUEUE_READY, 1);
    w(&mut t, VIRTIO_MMIO_STATUS, ACK | DRV | FOK | DOK);
    assert!(t.is_activated());
    // Three requests served by the first device.
    for i in 0..3u16 {
        ring.post(i, &[desc(0x8_0000 + 0x100 * u64::from(i), 16, W, 0)]);
    }
    t.device_mut().process_queue(0);
    assert_eq!(ring.take_used().len(), 3);

    let saved = t.save().unwrap();
    assert!(saved.activated);
    assert_eq!(
        (saved.queues[0].next_avail, saved.queues[0].next_used),
        (3, 3)
    );
    let json = serde_json::to_string(&saved).unwrap();
    let saved: TransportState = serde_json::from_str(&json).unwrap();

    // A fresh transport and device take over where the first stopped: the next
    // request is the fourth, not the first again.
    let mut t2 = transport(&mem);
    t2.restore(&saved).unwrap();
    assert!(t2.is_activated());
    assert_eq!(r(&mut t2, VIRTIO_MMIO_STATUS), ACK | DRV | FOK | DOK);
    ring.post(3, &[desc(0x8_0300, 16, W, 0)]);
    t2.device_mut().process_queue(0);
    assert_eq!(ring.take_used(), vec![(3, 16)]);
    assert_eq!(t2.save().unwrap().queues[0].next_used, 4);

    // Another device type is refused.
    let mut other = fixture(false).t;
    assert!(other.restore(&saved).unwrap_err().contains("device type"));
}
