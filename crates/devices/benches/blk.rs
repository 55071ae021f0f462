//! The virtio-blk device model's own cost, with no guest: this program plays the
//! driver's part on guest memory (virtio-queue's mock split queue), the backing file
//! is on tmpfs (/dev/shm), and only `process_queue` is timed. Prints sequential read
//! and write throughput (128 KiB requests) and the 4 KiB request rate.
//!
//! Run: `cargo bench -p devices --bench blk [-- --seconds S]`; writes
//! target/blk-bench.json and target/blk-bench.svg.

// A benchmark: any failure should stop it, loudly.
#![allow(clippy::expect_used)]

#[path = "../../../benches/shared/chart.rs"]
mod chart;
#[path = "../../../benches/shared/output.rs"]
mod output;

use devices::virtio::block::disk::Disk;
use devices::virtio::block::Block;
use devices::virtio::{Activation, VirtioDevice, VirtioInterrupt};
use std::time::{Duration, Instant};
use virtio_bindings::virtio_blk::{VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT};
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::split::Descriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::Queue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const QUEUE: u16 = 256;
const DISK_BYTES: u64 = 256 << 20;
const DATA_BASE: u64 = 1 << 20;
const HEADERS: u64 = 0x8_0000;
const STATUS: u64 = 0xc_0000;

/// Runs batches of `req_bytes` requests of type `ty` for about `budget`; returns
/// (requests, bytes, time spent in the device).
fn run(
    block: &mut Block,
    mem: &GuestMemoryMmap,
    ty: u32,
    req_bytes: u32,
    budget: Duration,
) -> (u64, u64, Duration) {
    let per_batch = u64::from(QUEUE / 3);
    let sectors_per_req = u64::from(req_bytes) / 512;
    let disk_reqs = DISK_BYTES / u64::from(req_bytes);
    let (mut reqs, mut spent, mut next) = (0u64, Duration::ZERO, 0u64);
    let irq = EventFd::new(EFD_NONBLOCK).expect("eventfd");
    while spent < budget {
        let vq = MockSplitQueue::new(mem, QUEUE);
        let mut descs = Vec::new();
        for i in 0..per_batch {
            let sector = (next % disk_reqs) * sectors_per_req;
            next += 1;
            let hdr = HEADERS + i * 16;
            mem.write_obj(ty, GuestAddress(hdr)).expect("header");
            mem.write_obj(sector, GuestAddress(hdr + 8))
                .expect("header");
            let d = (i * 3) as u16;
            let data_flags = if ty == VIRTIO_BLK_T_IN {
                VRING_DESC_F_WRITE as u16
            } else {
                0
            };
            let data_addr = DATA_BASE + i * u64::from(req_bytes);
            let next_flag = VRING_DESC_F_NEXT as u16;
            descs.push(RawDescriptor::from(Descriptor::new(
                hdr,
                16,
                next_flag,
                d + 1,
            )));
            descs.push(RawDescriptor::from(Descriptor::new(
                data_addr,
                req_bytes,
                data_flags | next_flag,
                d + 2,
            )));
            descs.push(RawDescriptor::from(Descriptor::new(
                STATUS + i,
                1,
                VRING_DESC_F_WRITE as u16,
                0,
            )));
        }
        vq.add_desc_chains(&descs, 0).expect("chains");
        let queue: Queue = vq.create_queue().expect("queue");
        block
            .activate(Activation {
                memory: mem.clone(),
                queues: vec![queue],
                acked_features: block.features(),
                interrupt: VirtioInterrupt::new(irq.try_clone().expect("eventfd")),
            })
            .expect("activate");
        let t = Instant::now();
        block.process_queue(0);
        spent += t.elapsed();
        assert_eq!(
            vq.used().idx().load(),
            per_batch as u16,
            "all requests completed"
        );
        let status: u8 = mem.read_obj(GuestAddress(STATUS)).expect("status");
        assert_eq!(status, 0, "request failed");
        reqs += per_batch;
    }
    (reqs, reqs * u64::from(req_bytes), spent)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: f64 = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(2.0);
    let budget = Duration::from_secs_f64(seconds);
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    };
    let path = std::path::PathBuf::from(format!(
        "{dir}/minivmm-blk-bench-{}.img",
        std::process::id()
    ));
    let file = std::fs::File::create(&path).expect("create image");
    file.set_len(DISK_BYTES).expect("size image");
    drop(file);
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 128 << 20)]).expect("memory");
    let mut block = Block::new(Disk::open(&path, false, None).expect("open image"));
    println!("== virtio-blk device model, backing file on {dir}, {seconds} s per case");
    // Touch the whole image once so reads are not served from holes.
    run(
        &mut block,
        &mem,
        VIRTIO_BLK_T_OUT,
        128 << 10,
        Duration::from_millis(200),
    );
    for (name, ty, size) in [
        ("sequential write, 128 KiB", VIRTIO_BLK_T_OUT, 128u32 << 10),
        ("sequential read, 128 KiB", VIRTIO_BLK_T_IN, 128 << 10),
        ("write, 4 KiB", VIRTIO_BLK_T_OUT, 4 << 10),
        ("read, 4 KiB", VIRTIO_BLK_T_IN, 4 << 10),
    ] {
        let (reqs, bytes, spent) = run(&mut block, &mem, ty, size, budget);
        let secs = spent.as_secs_f64();
        let (mibs, rps) = (bytes as f64 / secs / (1 << 20) as f64, reqs as f64 / secs);
        output::record(name, "MiB/s", mibs, mibs, mibs, 1);
        output::record(name, "requests/s", rps, rps, rps, 1);
        println!("{name:<28} {mibs:>9.0} MiB/s {rps:>10.0} requests/s");
    }
    let _ = std::fs::remove_file(&path);
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    if let Err(e) = output::write(
        &target,
        "blk-bench",
        "virtio-blk device model (MiB/s, log scale)",
        "MiB/s",
    ) {
        eprintln!("blk bench FAILED: {e}");
        std::process::exit(1);
    }
}
