//! Fuzz target: the virtio-blk device processing its queue over arbitrary guest memory.
//!
//! The input becomes the first bytes of a 64 KiB guest memory; the split queue (16
//! entries) sits at fixed addresses in it (descriptors at 0, available ring at 0x1000,
//! used ring at 0x2000), so the fuzzer controls every descriptor, chain, header, ring
//! index and buffer. The device must never panic or touch memory outside the guest.
#![no_main]

use devices::virtio::block::disk::Disk;
use devices::virtio::block::Block;
use devices::virtio::{Activation, VirtioDevice, VirtioInterrupt};
#[path = "shared/mod.rs"]
mod shared;

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const MEM_SIZE: usize = 0x1_0000;
const QUEUE_SIZE: u16 = 16;

fn image() -> &'static std::path::Path {
    static PATH: OnceLock<std::path::PathBuf> = OnceLock::new();
    PATH.get_or_init(|| shared::scratch_image("blk"))
}

fuzz_target!(|data: &[u8]| {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
    let n = data.len().min(MEM_SIZE);
    mem.write_slice(&data[..n], GuestAddress(0)).unwrap();
    // The last input byte picks a read-only disk half of the time.
    let read_only = data.last().is_some_and(|b| b & 1 == 1);
    let disk = Disk::open(image(), read_only, Some("fuzz")).unwrap();
    let mut block = Block::new(disk);
    let mut queue = Queue::new(QUEUE_SIZE).unwrap();
    queue.set_size(QUEUE_SIZE);
    queue.set_desc_table_address(Some(0), Some(0));
    queue.set_avail_ring_address(Some(0x1000), Some(0));
    queue.set_used_ring_address(Some(0x2000), Some(0));
    queue.set_ready(true);
    let irq = EventFd::new(EFD_NONBLOCK).unwrap();
    let features = block.features();
    block
        .activate(Activation {
            memory: mem.clone(),
            queues: vec![queue],
            acked_features: features,
            interrupt: VirtioInterrupt::new(irq),
        })
        .unwrap();
    block.process_queue(0);
});
