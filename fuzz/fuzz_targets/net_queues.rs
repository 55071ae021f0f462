//! Fuzz target: the virtio-net device processing its TX and RX queues over arbitrary
//! guest memory, with frames waiting on the host side.
//!
//! The input becomes the first bytes of a 64 KiB guest memory. The RX queue (16
//! entries) has its descriptors at 0, available ring at 0x1000 and used ring at
//! 0x2000; the TX queue at 0x3000, 0x4000 and 0x5000. The last input byte picks
//! mergeable RX buffers (bit 0) and how many frames the host queues (bits 1-4, sizes
//! from the byte before). The device must never panic or touch memory outside the
//! guest, whatever the chains, indexes and lengths say.
#![no_main]

mod shared;

use devices::virtio::net::Net;
use devices::virtio::{Activation, VirtioDevice, VirtioInterrupt};
use libfuzzer_sys::fuzz_target;
use std::os::unix::net::UnixDatagram;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const MEM_SIZE: usize = 0x1_0000;


fuzz_target!(|data: &[u8]| {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
    let n = data.len().min(MEM_SIZE);
    mem.write_slice(&data[..n], GuestAddress(0)).unwrap();
    let last = data.last().copied().unwrap_or(0);
    let size_seed = data.len().checked_sub(2).map_or(0, |i| data[i]);
    let (host, device_end) = UnixDatagram::pair().unwrap();
    device_end.set_nonblocking(true).unwrap();
    host.set_nonblocking(true).unwrap();
    for i in 0..(last >> 1) & 0xf {
        let len = 12 + 14 + usize::from(size_seed.wrapping_mul(i + 1)) * 8;
        let _ = host.send(&vec![i; len]);
    }
    let mut net = Net::new("fuzz", Box::new(device_end), [2, 0, 0, 0, 0, 1]);
    let mut features = net.features();
    if last & 1 == 0 {
        features &= !(1 << virtio_bindings::virtio_net::VIRTIO_NET_F_MRG_RXBUF);
    }
    let irq = EventFd::new(EFD_NONBLOCK).unwrap();
    net.activate(Activation {
        memory: mem.clone(),
        queues: vec![shared::queue(0), shared::queue(0x3000)],
        acked_features: features,
        interrupt: VirtioInterrupt::new(irq),
    })
    .unwrap();
    net.process_queue(1);
    net.process_backend(0);
    net.process_queue(0);
    let mut buf = [0u8; 2048];
    while host.recv(&mut buf).is_ok() {}
});
