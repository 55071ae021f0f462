//! Fuzz target: placing the initrd and the command line, then the boot structures
//! (zero page with e820, MP table, ACPI) for arbitrary sizes and text, as
//! `load_payload` does for x86_64: guest memory 16-271 MiB, a kernel ending anywhere,
//! an arbitrary bzImage setup header (initrd_addr_max), 1-254 vCPUs, 0-14 virtio
//! devices, an arbitrary user command line. Every step must succeed or return an
//! error; what is placed must lie where the layout says.
#![no_main]

use arch::layout::{CMDLINE_MAX_SIZE, CMDLINE_START, HIMEM_START};
use arch::{BootInfo, InitrdRange};
use libfuzzer_sys::fuzz_target;
use linux_loader::loader::bootparam::setup_header;
use std::io::Cursor;
use std::path::Path;
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};

const PAGE: u64 = 4096;

fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let n = n.min(data.len());
    let (head, rest) = data.split_at(n);
    *data = rest;
    head
}

fn number(data: &mut &[u8], bytes: usize) -> u64 {
    take(data, bytes)
        .iter()
        .rev()
        .fold(0u64, |acc, b| acc << 8 | u64::from(*b))
}

fuzz_target!(|input: &[u8]| {
    let mut data = input;
    let mem_size = (16 + number(&mut data, 1)) << 20;
    let mem: GuestMemoryMmap =
        GuestMemoryMmap::from_ranges(&arch::guest_memory_regions(mem_size)).unwrap();
    let low_end = arch::low_memory_end(&mem);
    let kernel_end = HIMEM_START + number(&mut data, 4) % low_end;
    let vcpus = 1 + (number(&mut data, 1) as usize % 254);
    let devices = number(&mut data, 1) % 15;
    let flags = number(&mut data, 1);
    let header = if flags & 1 == 1 {
        let mut h = setup_header::default();
        let bytes = take(&mut data, std::mem::size_of::<setup_header>());
        h.as_mut_slice()[..bytes.len()].copy_from_slice(bytes);
        Some(h)
    } else {
        None
    };
    let initrd_len = number(&mut data, 3) as usize;
    let initrd_bytes = take(&mut data, initrd_len).to_vec();
    let user = String::from_utf8_lossy(data).into_owned();

    // The initrd: below the header's limit and the end of low memory, above the kernel.
    let top = header
        .map(|h| u64::from(h.initrd_addr_max) + 1)
        .filter(|max| *max > 1)
        .unwrap_or(u64::from(u32::MAX))
        .min(low_end);
    let initrd = if initrd_bytes.is_empty() {
        None
    } else {
        let mut file = Cursor::new(&initrd_bytes[..]);
        match boot::initrd::load_initrd_from(
            &mem,
            Path::new("fuzz-initrd"),
            &mut file,
            initrd_bytes.len() as u64,
            kernel_end,
            top,
        ) {
            Ok((addr, size)) => {
                assert_eq!(addr.0 % PAGE, 0);
                assert!(addr.0 >= kernel_end && addr.0 + size <= top);
                let mut back = vec![0u8; size as usize];
                mem.read_slice(&mut back, addr).unwrap();
                assert_eq!(back, initrd_bytes);
                Some(InitrdRange { addr, size })
            }
            Err(_) => None,
        }
    };

    // The command line: defaults and the user's text, then one entry per device.
    let Ok(mut cmdline) =
        boot::cmdline::build_cmdline(flags & 2 == 0, None, Some(&user), CMDLINE_MAX_SIZE)
    else {
        return;
    };
    for d in 0..devices {
        let arg = format!(
            "virtio_mmio.device=4K@{:#x}:{}",
            0xd000_1000 + d * 0x1000,
            10 + d
        );
        if boot::cmdline::append(&mut cmdline, &arg, CMDLINE_MAX_SIZE).is_err() {
            return;
        }
    }
    let text = cmdline.as_cstring().unwrap();
    assert!(text.as_bytes().len() < CMDLINE_MAX_SIZE);
    linux_loader::loader::load_cmdline(&mem, GuestAddress(CMDLINE_START), &cmdline).unwrap();
    let mut back = vec![0u8; text.as_bytes_with_nul().len()];
    mem.read_slice(&mut back, GuestAddress(CMDLINE_START))
        .unwrap();
    assert_eq!(back, text.as_bytes_with_nul());

    let info = BootInfo {
        header,
        cmdline_addr: GuestAddress(CMDLINE_START),
        cmdline_len: text.as_bytes().len(),
        initrd,
        acpi_rsdp: None,
    };
    arch::configure_system(&mem, vcpus, info).unwrap();
});
