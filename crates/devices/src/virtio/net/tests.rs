use super::*;
use std::os::unix::net::UnixDatagram;
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const W: u16 = VRING_DESC_F_WRITE as u16;
const N: u16 = VRING_DESC_F_NEXT as u16;
const RING: u16 = 16;
const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

/// A guest side: memory, the two rings, and the host end of the backend.
struct Guest {
    mem: GuestMemoryMmap,
    host: UnixDatagram,
    irq: EventFd,
    net: Net,
}

fn desc(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
    RawDescriptor::from(Descriptor::new(addr, len, flags, next))
}

/// A split virtqueue laid out by hand (descriptor table, available and used rings).
struct Ring<'a> {
    mem: &'a GuestMemoryMmap,
    base: u64,
}

impl<'a> Ring<'a> {
    fn desc_table(&self) -> u64 {
        self.base
    }
    fn avail(&self) -> u64 {
        self.base + 0x1000
    }
    fn used(&self) -> u64 {
        self.base + 0x2000
    }

    fn queue(&self) -> Queue {
        let mut q = Queue::new(RING).unwrap();
        q.set_desc_table_address(Some(self.desc_table() as u32), Some(0));
        q.set_avail_ring_address(Some(self.avail() as u32), Some(0));
        q.set_used_ring_address(Some(self.used() as u32), Some(0));
        q.set_ready(true);
        q
    }
}

fn rx_ring(mem: &GuestMemoryMmap) -> Ring<'_> {
    Ring { mem, base: 0 }
}

fn tx_ring(mem: &GuestMemoryMmap) -> Ring<'_> {
    Ring {
        mem,
        base: 0x1_0000,
    }
}

/// Stores `descs` at table index `first` and publishes `first` as the next chain.
fn post(vq: &Ring<'_>, first: u16, descs: &[RawDescriptor]) {
    for (i, d) in descs.iter().enumerate() {
        let addr = vq.desc_table() + 16 * u64::from(first + i as u16);
        vq.mem.write_obj(*d, GuestAddress(addr)).unwrap();
    }
    let idx: u16 = vq.mem.read_obj(GuestAddress(vq.avail() + 2)).unwrap();
    let slot = vq.avail() + 4 + 2 * u64::from(idx % RING);
    vq.mem.write_obj(first, GuestAddress(slot)).unwrap();
    vq.mem
        .write_obj(idx.wrapping_add(1), GuestAddress(vq.avail() + 2))
        .unwrap();
}

/// Every used entry so far (id, len); entries older than a ring's worth are
/// overwritten, so callers look at the newest ones.
fn used(vq: &Ring<'_>) -> Vec<(u32, u32)> {
    let n: u16 = vq.mem.read_obj(GuestAddress(vq.used() + 2)).unwrap();
    (0..n)
        .map(|i| {
            let at = vq.used() + 4 + 8 * u64::from(i % RING);
            let id: u32 = vq.mem.read_obj(GuestAddress(at)).unwrap();
            let len: u32 = vq.mem.read_obj(GuestAddress(at + 4)).unwrap();
            (id, len)
        })
        .collect()
}

fn guest(mergeable: bool) -> Guest {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x20_0000)]).unwrap();
    let (host, device_end) = UnixDatagram::pair().unwrap();
    device_end.set_nonblocking(true).unwrap();
    host.set_nonblocking(true).unwrap();
    let mut net = Net::new("test", Box::new(device_end), MAC);
    let irq = EventFd::new(EFD_NONBLOCK).unwrap();
    let rx = rx_ring(&mem).queue();
    let tx = tx_ring(&mem).queue();
    let mut features = net.features();
    if !mergeable {
        features &= !(1 << VIRTIO_NET_F_MRG_RXBUF);
    }
    net.activate(Activation {
        memory: mem.clone(),
        queues: vec![rx, tx],
        acked_features: features,
        interrupt: VirtioInterrupt::new(irq.try_clone().unwrap()),
    })
    .unwrap();
    Guest {
        mem,
        host,
        irq,
        net,
    }
}

/// A frame with header: zeroed header, broadcast destination, `seq` in the payload.
fn frame(seq: u16, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; VNET_HDR_LEN + len];
    f[VNET_HDR_LEN..VNET_HDR_LEN + 6].fill(0xff);
    f[VNET_HDR_LEN + 6..VNET_HDR_LEN + 12].copy_from_slice(&MAC);
    f[VNET_HDR_LEN + 12..VNET_HDR_LEN + 14].copy_from_slice(&0x88b5u16.to_be_bytes());
    for (i, b) in f[VNET_HDR_LEN + 14..].iter_mut().enumerate() {
        *b = (i as u16).wrapping_add(seq) as u8;
    }
    f[VNET_HDR_LEN + 14..VNET_HDR_LEN + 16].copy_from_slice(&seq.to_be_bytes());
    f
}

fn read(mem: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
    v
}

fn count(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

const BUF: u64 = 0x10_0000;
const BUF_STRIDE: u64 = 0x1_0000;

#[test]
fn features_and_config_space() {
    let g = guest(true);
    let f = g.net.features();
    for bit in [
        VIRTIO_NET_F_MAC,
        VIRTIO_NET_F_STATUS,
        VIRTIO_NET_F_MRG_RXBUF,
    ] {
        assert_ne!(f & (1 << bit), 0, "feature {bit}");
    }
    assert_ne!(f & VIRTIO_F_VERSION_1, 0);
    // No offloads: CSUM (0), GUEST_CSUM (1), TSO/UFO (7-14).
    assert_eq!(f & 0x7f83, 0);
    assert_eq!(g.net.device_type(), 1);
    let mut cfg = [0u8; 8];
    g.net.read_config(0, &mut cfg);
    assert_eq!(&cfg[..6], &MAC);
    assert_eq!(u16::from_le_bytes([cfg[6], cfg[7]]), 1, "link up");
    let mut beyond = [0xaau8; 4];
    g.net.read_config(8, &mut beyond);
    assert_eq!(beyond, [0; 4]);
}

#[test]
fn default_macs_are_stable_local_unicast_and_differ_by_name() {
    let a = default_mac("tap0");
    assert_eq!(a, default_mac("tap0"));
    assert_ne!(a, default_mac("tap1"));
    assert_eq!(a[0] & 0x03, 0x02, "locally administered, unicast");
}

#[test]
fn tx_sends_whole_frames_with_a_clean_header_and_drops_malformed_chains() {
    let mut g = guest(true);
    let f = frame(7, 100);
    // Chain 0: header with offload flags set by a confused driver, frame in two parts.
    let mut dirty = f.clone();
    dirty[0] = 1; // NEEDS_CSUM
    dirty[1] = 4; // GSO_TCPV6
    g.mem.write_slice(&dirty, GuestAddress(BUF)).unwrap();
    let tx = tx_ring(&g.mem);
    post(
        &tx,
        0,
        &[
            desc(BUF, 40, N, 1),
            desc(BUF + 40, (f.len() - 40) as u32, 0, 0),
        ],
    );
    // Chain 1: a device-writable descriptor.
    post(&tx, 2, &[desc(BUF, f.len() as u32, W, 0)]);
    // Chain 2: outside guest memory.
    post(&tx, 3, &[desc(0x1f_ff00, 0x1000, 0, 0)]);
    // Chain 3: header and 10 bytes: shorter than an Ethernet header.
    post(&tx, 4, &[desc(BUF, 22, 0, 0)]);
    // Chain 4: longer than the largest frame.
    post(&tx, 5, &[desc(BUF, (tx::MAX_TX_LEN + 1) as u32, 0, 0)]);
    // Chain 5: a descriptor that chains to itself.
    post(&tx, 6, &[desc(BUF, 64, N, 6)]);
    // Chain 6: a good one again.
    post(&tx, 7, &[desc(BUF, f.len() as u32, 0, 0)]);
    g.net.process_queue(TX_QUEUE);

    assert_eq!(used(&tx).len(), 7, "every chain is returned");
    assert!(used(&tx).iter().all(|(_, len)| *len == 0));
    let mut got = vec![0u8; 70_000];
    let n = g.host.recv(&mut got).unwrap();
    assert_eq!(&got[..n], &f[..], "header zeroed, frame byte-exact");
    let n = g.host.recv(&mut got).unwrap();
    assert_eq!(&got[VNET_HDR_LEN..n], &dirty[VNET_HDR_LEN..]);
    assert!(g.host.recv(&mut got).is_err(), "nothing else was sent");
    let c = g.net.counters();
    assert_eq!(count(&c.tx_frames), 2);
    assert_eq!(count(&c.tx_bytes), 200);
    assert_eq!(count(&c.tx_malformed), 5);
    assert_eq!(g.irq.read().unwrap(), 1, "one interrupt for the batch");
}

#[test]
fn tx_errors_from_the_host_are_counted_and_the_ring_keeps_moving() {
    let mut g = guest(true);
    let f = frame(1, 60);
    g.mem.write_slice(&f, GuestAddress(BUF)).unwrap();
    drop(std::mem::replace(
        &mut g.host,
        UnixDatagram::unbound().unwrap(),
    ));
    let tx = tx_ring(&g.mem);
    post(&tx, 0, &[desc(BUF, f.len() as u32, 0, 0)]);
    post(&tx, 1, &[desc(BUF, f.len() as u32, 0, 0)]);
    g.net.process_queue(TX_QUEUE);
    assert_eq!(used(&tx).len(), 2);
    assert_eq!(count(&g.net.counters().tx_errors), 2);
}

fn post_rx(g: &Guest, vq: &Ring<'_>, slot: u16, len: u32) {
    post(
        vq,
        slot,
        &[desc(BUF + u64::from(slot) * BUF_STRIDE, len, W, 0)],
    );
    let _ = g;
}

#[test]
fn rx_without_mergeable_buffers_one_frame_per_buffer_and_frames_wait_for_buffers() {
    let mut g = guest(false);
    let rx = rx_ring(&g.mem);
    for seq in 0..3 {
        g.host.send(&frame(seq, 1000)).unwrap();
    }
    post_rx(&g, &rx, 0, 1526);
    post_rx(&g, &rx, 1, 1526);
    g.net.process_backend(0);
    assert_eq!(used(&rx), vec![(0, 1012), (1, 1012)]);
    for slot in 0..2u16 {
        let got = read(&g.mem, BUF + u64::from(slot) * BUF_STRIDE, 1012);
        let mut want = frame(slot, 1000);
        want[NUM_BUFFERS_OFFSET] = 1;
        assert_eq!(got, want);
    }
    // The third frame waits in the device, not lost, until a buffer arrives.
    g.net.process_backend(0);
    assert_eq!(used(&rx).len(), 2);
    post_rx(&g, &rx, 2, 1526);
    g.net.process_queue(RX_QUEUE);
    assert_eq!(used(&rx)[2], (2, 1012));
    assert_eq!(read(&g.mem, BUF + 2 * BUF_STRIDE + 26, 2), vec![0, 2]);
    let c = g.net.counters();
    assert_eq!(count(&c.rx_frames), 3);
    assert_eq!(count(&c.rx_bytes), 3000);
    assert_eq!(count(&c.rx_dropped), 0);
}

#[test]
fn rx_into_a_too_small_buffer_drops_that_frame_only() {
    let mut g = guest(false);
    let rx = rx_ring(&g.mem);
    g.host.send(&frame(0, 1000)).unwrap();
    g.host.send(&frame(1, 60)).unwrap();
    post_rx(&g, &rx, 0, 100);
    post_rx(&g, &rx, 1, 100);
    g.net.process_backend(0);
    assert_eq!(used(&rx), vec![(0, 0), (1, 72)]);
    assert_eq!(count(&g.net.counters().rx_dropped), 1);
    assert_eq!(read(&g.mem, BUF + BUF_STRIDE + 26, 2), vec![0, 1]);
}

#[test]
fn rx_with_mergeable_buffers_spans_buffers_and_waits_for_enough_of_them() {
    let mut g = guest(true);
    let rx = rx_ring(&g.mem);
    let f = frame(9, 3000);
    g.host.send(&f).unwrap();
    post_rx(&g, &rx, 0, 1024);
    post_rx(&g, &rx, 1, 1024);
    g.net.process_backend(0);
    assert!(
        used(&rx).is_empty(),
        "two buffers are not enough: none is taken"
    );
    post_rx(&g, &rx, 2, 1024);
    g.net.process_queue(RX_QUEUE);
    assert_eq!(used(&rx), vec![(0, 1024), (1, 1024), (2, 3012 - 2048)]);
    let mut got = read(&g.mem, BUF, 1024);
    got.extend(read(&g.mem, BUF + BUF_STRIDE, 1024));
    got.extend(read(&g.mem, BUF + 2 * BUF_STRIDE, 3012 - 2048));
    let mut want = f;
    want[NUM_BUFFERS_OFFSET] = 3;
    assert_eq!(got, want);
}

#[test]
fn rx_skips_malformed_buffers_and_returns_them_unused() {
    let mut g = guest(true);
    let rx = rx_ring(&g.mem);
    g.host.send(&frame(5, 200)).unwrap();
    // Read-only, outside memory, a loop, empty, then a good one.
    post(&rx, 0, &[desc(BUF, 2048, 0, 0)]);
    post(&rx, 1, &[desc(0x1f_ff00, 0x1000, W, 0)]);
    post(&rx, 2, &[desc(BUF, 64, W | N, 2)]);
    post(&rx, 3, &[desc(BUF, 0, W, 0)]);
    post_rx(&g, &rx, 4, 2048);
    g.net.process_backend(0);
    assert_eq!(used(&rx), vec![(0, 0), (1, 0), (2, 0), (3, 0), (4, 212)]);
    assert_eq!(count(&g.net.counters().rx_bad_buffers), 4);
    assert_eq!(read(&g.mem, BUF + 4 * BUF_STRIDE + 26, 2), vec![0, 5]);
}

#[test]
fn a_burst_larger_than_the_ring_arrives_whole_and_in_order() {
    let mut g = guest(true);
    let rx = rx_ring(&g.mem);
    let total = 3 * RING;
    for seq in 0..total {
        g.host.send(&frame(seq, 60 + usize::from(seq) * 7)).unwrap();
    }
    for slot in 0..RING {
        post_rx(&g, &rx, slot, 2048);
    }
    g.net.process_backend(0);
    let mut seen = 0u16;
    while seen < total {
        let entries = used(&rx);
        assert!(entries.len() > usize::from(seen), "stalled at {seen}");
        for (id, len) in &entries[usize::from(seen)..] {
            let addr = BUF + u64::from(*id) * BUF_STRIDE;
            let got = read(&g.mem, addr, *len as usize);
            let mut want = frame(seen, 60 + usize::from(seen) * 7);
            want[NUM_BUFFERS_OFFSET] = 1;
            assert_eq!(got, want, "frame {seen}");
            seen += 1;
            // The driver gives the buffer back and notifies.
            post_rx(&g, &rx, *id as u16, 2048);
        }
        g.net.process_queue(RX_QUEUE);
    }
    let c = g.net.counters();
    assert_eq!(count(&c.rx_frames), u64::from(total));
    assert_eq!(count(&c.rx_dropped), 0);
}

#[test]
fn nothing_happens_before_activation_or_after_reset() {
    let (host, device_end) = UnixDatagram::pair().unwrap();
    device_end.set_nonblocking(true).unwrap();
    let mut net = Net::new("test", Box::new(device_end), MAC);
    host.send(&frame(0, 60)).unwrap();
    net.process_backend(0);
    net.process_queue(RX_QUEUE);
    net.process_queue(TX_QUEUE);
    net.process_queue(7);
    assert_eq!(count(&net.counters().rx_frames), 0);
    net.reset();

    // An active device that works, then reset: it must let go of the rings, the
    // memory and the interrupt, and leave the backend alone.
    let mut g = guest(true);
    let rx = rx_ring(&g.mem);
    let tx = tx_ring(&g.mem);
    let f = frame(3, 60);
    let tx_buf = BUF + 8 * BUF_STRIDE;
    g.mem.write_slice(&f, GuestAddress(tx_buf)).unwrap();
    post(&tx, 0, &[desc(tx_buf, f.len() as u32, 0, 0)]);
    g.net.process_queue(TX_QUEUE);
    assert_eq!(used(&tx).len(), 1, "the device works before reset");
    let mut got = vec![0u8; 70_000];
    assert_eq!(g.host.recv(&mut got).unwrap(), f.len());
    assert_eq!(g.irq.read().unwrap(), 1);
    let before = g.net.counters().to_string();

    g.net.reset();
    // The host sends a frame, the driver (wrongly) posts an RX buffer and a TX frame
    // and notifies both queues: none of it may be acted on.
    g.host.send(&frame(4, 60)).unwrap();
    post_rx(&g, &rx, 0, 2048);
    post(&tx, 1, &[desc(tx_buf, f.len() as u32, 0, 0)]);
    g.net.process_backend(0);
    g.net.process_queue(RX_QUEUE);
    g.net.process_queue(TX_QUEUE);
    g.net.process_queue(7);
    assert!(used(&rx).is_empty(), "no RX buffer was used after reset");
    assert_eq!(used(&tx).len(), 1, "no TX chain was used after reset");
    assert_eq!(
        read(&g.mem, BUF, 2048),
        vec![0u8; 2048],
        "nothing was written into guest memory after reset"
    );
    assert!(
        g.host.recv(&mut got).is_err(),
        "nothing was sent to the host after reset"
    );
    assert!(g.irq.read().is_err(), "no interrupt after reset");
    assert_eq!(
        g.net.counters().to_string(),
        before,
        "no counter moved after reset"
    );
}
