//! Fuzz target: the x86_64 kernel loaders (format detection, then linux-loader's ELF or
//! bzImage parsing) on an arbitrary file, into a 64 MiB guest. Any file must load or
//! fail with an error: no panic, no write outside guest memory, no huge allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::Cursor;
use std::path::Path;
use std::sync::OnceLock;
use vm_memory::{GuestAddress, GuestMemoryMmap};

const MEM_SIZE: usize = 64 << 20;

fn memory() -> &'static GuestMemoryMmap {
    static MEM: OnceLock<GuestMemoryMmap> = OnceLock::new();
    MEM.get_or_init(|| GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap())
}

fuzz_target!(|data: &[u8]| {
    let mem = memory();
    let mut file = Cursor::new(data);
    if let Ok(k) = boot::load_kernel_from(
        mem,
        Path::new("fuzz"),
        &mut file,
        data.len() as u64,
        MEM_SIZE as u64,
    ) {
        // A loaded kernel lies inside the guest and starts where it ends or before.
        assert!(k.end <= MEM_SIZE as u64, "end {:#x}", k.end);
        assert!(k.entry.0 < k.end, "entry {:#x} end {:#x}", k.entry.0, k.end);
    }
});
