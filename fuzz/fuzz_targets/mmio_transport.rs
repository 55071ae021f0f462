//! Fuzz target: the virtio-mmio register interface, driven by an arbitrary sequence of
//! guest reads and writes (any offset, any width) with queue processing in between,
//! in front of a virtio-blk or a virtio-net device. The first 16 KiB of input become
//! guest memory, so the queues a sequence sets up point at fuzzer-made rings. The
//! transport must answer every access without a panic, and the device must never
//! touch memory outside the guest.
#![no_main]

use devices::virtio::block::disk::Disk;
use devices::virtio::block::Block;
use devices::virtio::mmio::MmioTransport;
use devices::virtio::net::Net;
use devices::virtio::{VirtioDevice, VirtioInterrupt};
use devices::BusDevice;
#[path = "shared/mod.rs"]
mod shared;

use libfuzzer_sys::fuzz_target;
use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const MEM_SIZE: usize = 0x1_0000;
const MEM_FROM_INPUT: usize = 0x4000;
/// One operation: kind, offset (2 bytes), width, value (4 bytes).
const OP_LEN: usize = 8;

fn image() -> &'static std::path::Path {
    static PATH: OnceLock<std::path::PathBuf> = OnceLock::new();
    PATH.get_or_init(|| shared::scratch_image("mmio"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
    let n = rest.len().min(MEM_FROM_INPUT);
    mem.write_slice(&rest[..n], GuestAddress(0)).unwrap();
    let ops = &rest[n..];

    // A host peer for the net device; frames it sends wait for the guest.
    let (host, device_end) = UnixDatagram::pair().unwrap();
    host.set_nonblocking(true).unwrap();
    device_end.set_nonblocking(true).unwrap();
    let device: Box<dyn VirtioDevice> = if selector & 1 == 0 {
        let disk = Disk::open(image(), selector & 2 != 0, Some("fuzz")).unwrap();
        Box::new(Block::new(disk))
    } else {
        let _ = host.send(&[0xffu8; 60]);
        Box::new(Net::new("fuzz", Box::new(device_end), [2, 0, 0, 0, 0, 1]))
    };
    let queues = device.queue_max_sizes().len();
    let notify: Vec<EventFd> = (0..queues)
        .map(|_| EventFd::new(EFD_NONBLOCK).unwrap())
        .collect();
    let irq = EventFd::new(EFD_NONBLOCK).unwrap();
    let mut t = MmioTransport::new(
        device,
        mem.clone(),
        VirtioInterrupt::new(irq),
        notify.iter().map(|e| e.try_clone().unwrap()).collect(),
    );

    for op in ops.chunks_exact(OP_LEN) {
        let kind = op[0];
        let offset = u64::from(u16::from_le_bytes([op[1], op[2]])) % 0x1000;
        let width = match op[3] % 4 {
            0 => 1,
            1 => 2,
            2 => 4,
            _ => 8,
        };
        let value = u64::from(u32::from_le_bytes([op[4], op[5], op[6], op[7]]));
        match kind % 4 {
            0 => {
                let mut buf = [0u8; 8];
                t.read(offset, &mut buf[..width]);
            }
            1 | 2 => t.write(offset, &value.to_le_bytes()[..width]),
            _ => {
                // The event loop's side: a notification or host readiness.
                if t.is_activated() {
                    let index = (value as usize) % (queues + 1);
                    if index < queues {
                        t.device_mut().process_queue(index);
                    } else {
                        t.device_mut().process_backend(0);
                    }
                }
            }
        }
    }
    let mut buf = [0u8; 2048];
    while host.recv(&mut buf).is_ok() {}
});
