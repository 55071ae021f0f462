use super::*;
use crate::virtio::VirtioInterrupt;
use std::io::Write;
use virtio_bindings::virtio_blk::VIRTIO_BLK_S_IOERR;
use virtio_bindings::virtio_blk::{VIRTIO_BLK_S_OK, VIRTIO_BLK_T_IN};
use virtio_bindings::virtio_ring::VRING_DESC_F_WRITE;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::Queue;
use vm_memory::GuestAddress;
use vm_memory::{Bytes, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vmm_sys_util::tempfile::TempFile;

const W: u16 = VRING_DESC_F_WRITE as u16;

fn raw(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
    RawDescriptor::from(Descriptor::new(addr, len, flags, next))
}

fn disk_file(sectors: u64) -> TempFile {
    let f = TempFile::new().unwrap();
    f.as_file()
        .write_all(&vec![0x5a; (sectors * 512) as usize])
        .unwrap();
    f
}

#[test]
fn features_and_config_space() {
    let f = disk_file(8);
    let rw = Block::new(Disk::open(f.as_path(), false, None).unwrap());
    assert_eq!(rw.device_type(), 2);
    assert_eq!(rw.features() & (1 << VIRTIO_BLK_F_RO), 0);
    assert_ne!(rw.features() & (1 << VIRTIO_BLK_F_FLUSH), 0);
    assert_ne!(rw.features() & VIRTIO_F_VERSION_1, 0);
    let mut cap = [0u8; 8];
    rw.read_config(0, &mut cap);
    assert_eq!(u64::from_le_bytes(cap), 8);
    let mut seg = [0u8; 4];
    rw.read_config(12, &mut seg);
    assert_eq!(u32::from_le_bytes(seg), SEG_MAX);
    rw.read_config(20, &mut seg);
    assert_eq!(u32::from_le_bytes(seg), 512);
    drop(rw);
    let ro = Block::new(Disk::open(f.as_path(), true, None).unwrap());
    assert_ne!(ro.features() & (1 << VIRTIO_BLK_F_RO), 0);
}

#[test]
fn queue_processing_answers_good_and_bad_chains_and_keeps_going() {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
    let vq = MockSplitQueue::new(&mem, 16);
    let f = disk_file(8);
    let mut block = Block::new(Disk::open(f.as_path(), false, None).unwrap());

    // Chain 0 (descriptors 0-2): a good read of sector 1.
    mem.write_obj(VIRTIO_BLK_T_IN, GuestAddress(0x4_0000))
        .unwrap();
    mem.write_obj(1u64, GuestAddress(0x4_0008)).unwrap();
    // Chain 1 (descriptors 3-4): header then a read-only "status": no usable status.
    // Chain 2 (descriptors 5-7): a read beyond the end: answered IOERR.
    // Chain 3 (descriptor 8): a descriptor that chains to itself (a loop).
    mem.write_obj(VIRTIO_BLK_T_IN, GuestAddress(0x4_1000))
        .unwrap();
    mem.write_obj(8u64, GuestAddress(0x4_1008)).unwrap();
    let next = virtio_bindings::virtio_ring::VRING_DESC_F_NEXT as u16;
    let descs = [
        raw(0x4_0000, 16, next, 1),
        raw(0x5_0000, 512, W | next, 2),
        raw(0x6_0000, 1, W, 0),
        raw(0x4_0000, 16, next, 4),
        raw(0x6_1000, 1, 0, 0),
        raw(0x4_1000, 16, next, 6),
        raw(0x5_1000, 512, W | next, 7),
        raw(0x6_2000, 1, W, 0),
        raw(0x4_0000, 16, next, 8),
    ];
    vq.add_desc_chains(&descs, 0).unwrap();
    let queue: Queue = vq.create_queue().unwrap();
    let irq = EventFd::new(EFD_NONBLOCK).unwrap();
    let interrupt = VirtioInterrupt::new(irq.try_clone().unwrap());
    block
        .activate(Activation {
            memory: mem.clone(),
            queues: vec![queue],
            acked_features: block.features(),
            interrupt: interrupt.clone(),
        })
        .unwrap();
    block.process_queue(0);

    let used_idx = vq.used().idx().load();
    assert_eq!(used_idx, 4, "every chain is returned");
    let lens: Vec<u32> = (0..4)
        .map(|i| vq.used().ring().ref_at(i).unwrap().load().len())
        .collect();
    assert_eq!(lens, vec![513, 0, 1, 0]);
    let status: u8 = mem.read_obj(GuestAddress(0x6_0000)).unwrap();
    assert_eq!(status, VIRTIO_BLK_S_OK as u8);
    let bad: u8 = mem.read_obj(GuestAddress(0x6_2000)).unwrap();
    assert_eq!(bad, VIRTIO_BLK_S_IOERR as u8);
    let mut data = [0u8; 512];
    mem.read_slice(&mut data, GuestAddress(0x5_0000)).unwrap();
    assert!(data.iter().all(|b| *b == 0x5a));
    assert_eq!(irq.read().unwrap(), 1);
    assert_eq!(interrupt.status() & 1, 1);

    // After a reset the device does nothing until activated again.
    block.reset();
    block.process_queue(0);
    assert_eq!(vq.used().idx().load(), 4);
}
