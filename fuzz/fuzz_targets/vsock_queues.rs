//! Fuzz target: the virtio-vsock device processing its TX and RX queues over arbitrary
//! guest memory, with host programs on both sides of its Unix sockets.
//!
//! The input becomes the first bytes of a 64 KiB guest memory. The RX queue (16
//! entries) has its descriptors at 0, available ring at 0x1000, used ring at 0x2000;
//! TX at 0x3000-0x5000; the event queue at 0x6000-0x8000. Host listeners wait on
//! guest ports 1-4 (`<socket>_P`), and a host program has sent `CONNECT 5` and some
//! data, so packets the input forges can meet live connections in every state. The
//! device must never panic, touch memory outside the guest, or hold more than its
//! bounds, whatever the headers, lengths, credits and chains say.
#![no_main]

mod shared;

use devices::virtio::vsock::Vsock;
use devices::virtio::{Activation, VirtioDevice, VirtioInterrupt};
use libfuzzer_sys::fuzz_target;
use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const MEM_SIZE: usize = 0x1_0000;


fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("mv-fuzz-vsock-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&d);
    d
}

fuzz_target!(|data: &[u8]| {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
    let n = data.len().min(MEM_SIZE);
    mem.write_slice(&data[..n], GuestAddress(0)).unwrap();
    let path = dir().join("v.sock");
    let listeners: Vec<UnixListener> = (1..=4)
        .filter_map(|p| {
            let at = format!("{}_{p}", path.display());
            let _ = std::fs::remove_file(&at);
            UnixListener::bind(at).ok()
        })
        .collect();
    let mut dev = Vsock::new(3, &path, 8).unwrap();
    dev.activate(Activation {
        memory: mem.clone(),
        queues: vec![shared::queue(0), shared::queue(0x3000), shared::queue(0x6000)],
        acked_features: dev.features(),
        interrupt: VirtioInterrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()),
    })
    .unwrap();
    let mut host = UnixStream::connect(&path).unwrap();
    let _ = host.write_all(b"CONNECT 5\nhello");
    dev.process_backend(0);
    dev.process_queue(1);
    for l in &listeners {
        l.set_nonblocking(true).unwrap();
        while let Ok((mut s, _)) = l.accept() {
            let _ = s.write_all(b"from the host");
        }
    }
    dev.process_backend(0);
    dev.process_queue(0);
    dev.process_queue(1);
    dev.process_queue(2);
    drop(host);
    dev.process_backend(0);
    dev.process_queue(0);
    dev.reset();
});
