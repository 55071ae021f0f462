use super::*;
use std::io::{Read, Write};
use virtio_bindings::virtio_ring::VRING_DESC_F_WRITE;
use vmm_sys_util::tempfile::TempFile;

const W: u16 = VRING_DESC_F_WRITE as u16;
const HDR: u64 = 0x1000;
const DATA: u64 = 0x2000;
const STATUS: u64 = 0x9000;

fn mem() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap()
}

fn disk(sectors: u64, read_only: bool) -> (TempFile, Disk) {
    let f = TempFile::new().unwrap();
    let bytes: Vec<u8> = (0..sectors * SECTOR_SIZE)
        .map(|i| (i % 251) as u8)
        .collect();
    f.as_file().write_all(&bytes).unwrap();
    let d = Disk::open(f.as_path(), read_only, Some("serial-7")).unwrap();
    (f, d)
}

fn header(mem: &GuestMemoryMmap, ty: u32, sector: u64) {
    mem.write_obj(ty, GuestAddress(HDR)).unwrap();
    mem.write_obj(0u32, GuestAddress(HDR + 4)).unwrap();
    mem.write_obj(sector, GuestAddress(HDR + 8)).unwrap();
}

fn d(addr: u64, len: u32, flags: u16) -> Descriptor {
    Descriptor::new(addr, len, flags, 0)
}

fn chain(data: &[Descriptor]) -> Vec<Descriptor> {
    let mut v = vec![d(HDR, 16, 0)];
    v.extend_from_slice(data);
    v.push(d(STATUS, 1, W));
    v
}

fn run(disk: &mut Disk, mem: &GuestMemoryMmap, descs: &[Descriptor]) -> (u8, u32) {
    let req = parse(mem, descs, disk.sectors()).unwrap();
    execute(disk, mem, &req)
}

#[test]
fn read_sectors_into_the_guest() {
    let m = mem();
    let (_f, mut disk) = disk(8, false);
    header(&m, VIRTIO_BLK_T_IN, 2);
    let (status, written) = run(
        &mut disk,
        &m,
        &chain(&[d(DATA, 512, W), d(DATA + 0x1000, 512, W)]),
    );
    assert_eq!((status, written), (VIRTIO_BLK_S_OK as u8, 1024));
    let mut got = [0u8; 512];
    m.read_slice(&mut got, GuestAddress(DATA + 0x1000)).unwrap();
    let want: Vec<u8> = (3 * 512..4 * 512u64).map(|i| (i % 251) as u8).collect();
    assert_eq!(&got[..], &want[..]);
}

#[test]
fn write_sectors_from_the_guest() {
    let m = mem();
    let (f, mut disk) = disk(8, false);
    header(&m, VIRTIO_BLK_T_OUT, 7);
    m.write_slice(&[0xab; 512], GuestAddress(DATA)).unwrap();
    assert_eq!(
        run(&mut disk, &m, &chain(&[d(DATA, 512, 0)])),
        (VIRTIO_BLK_S_OK as u8, 0)
    );
    let mut back = Vec::new();
    std::fs::File::open(f.as_path())
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert!(back[7 * 512..].iter().all(|b| *b == 0xab));
    assert_eq!(back[7 * 512 - 1], ((7 * 512 - 1) % 251) as u8);
}

#[test]
fn read_only_disks_refuse_writes_and_keep_their_bytes() {
    let m = mem();
    let (f, mut disk) = disk(4, true);
    let before = std::fs::read(f.as_path()).unwrap();
    header(&m, VIRTIO_BLK_T_OUT, 0);
    assert_eq!(
        run(&mut disk, &m, &chain(&[d(DATA, 512, 0)])).0,
        VIRTIO_BLK_S_IOERR as u8
    );
    assert_eq!(std::fs::read(f.as_path()).unwrap(), before);
    header(&m, VIRTIO_BLK_T_FLUSH, 0);
    assert_eq!(run(&mut disk, &m, &chain(&[])).0, VIRTIO_BLK_S_OK as u8);
}

#[test]
fn flush_get_id_and_unsupported() {
    let m = mem();
    let (_f, mut disk) = disk(4, false);
    header(&m, VIRTIO_BLK_T_FLUSH, 0);
    assert_eq!(run(&mut disk, &m, &chain(&[])), (VIRTIO_BLK_S_OK as u8, 0));
    header(&m, VIRTIO_BLK_T_GET_ID, 0);
    assert_eq!(
        run(&mut disk, &m, &chain(&[d(DATA, 20, W)])),
        (VIRTIO_BLK_S_OK as u8, 20)
    );
    let mut id = [0xffu8; 20];
    m.read_slice(&mut id, GuestAddress(DATA)).unwrap();
    assert_eq!(&id[..8], b"serial-7");
    assert!(id[8..].iter().all(|b| *b == 0));
    // A short ID buffer gets what fits.
    assert_eq!(run(&mut disk, &m, &chain(&[d(DATA, 4, W)])).1, 4);
    header(&m, 99, 0);
    assert_eq!(
        run(&mut disk, &m, &chain(&[])),
        (VIRTIO_BLK_S_UNSUPP as u8, 0)
    );
}

#[test]
fn requests_beyond_the_end_are_rejected() {
    let m = mem();
    header(&m, VIRTIO_BLK_T_IN, 3);
    assert_eq!(
        parse(&m, &chain(&[d(DATA, 1024, W)]), 4),
        Err(RequestError::BeyondEnd)
    );
    assert!(parse(&m, &chain(&[d(DATA, 512, W)]), 4).is_ok());
    header(&m, VIRTIO_BLK_T_OUT, u64::MAX);
    assert_eq!(
        parse(&m, &chain(&[d(DATA, 512, 0)]), 4),
        Err(RequestError::BeyondEnd)
    );
}

#[test]
fn malformed_chains_are_rejected() {
    let m = mem();
    header(&m, VIRTIO_BLK_T_IN, 0);
    let n = 1 << 20;
    // Zero or one descriptor.
    assert_eq!(parse(&m, &[], n), Err(RequestError::TooShort));
    assert_eq!(parse(&m, &[d(HDR, 16, 0)], n), Err(RequestError::TooShort));
    // Header write-only, or too short.
    assert_eq!(
        parse(&m, &[d(HDR, 16, W), d(STATUS, 1, W)], n),
        Err(RequestError::BadHeader)
    );
    assert_eq!(
        parse(&m, &[d(HDR, 8, 0), d(STATUS, 1, W)], n),
        Err(RequestError::BadHeader)
    );
    // Status not writable, or empty.
    assert_eq!(
        parse(&m, &[d(HDR, 16, 0), d(STATUS, 1, 0)], n),
        Err(RequestError::BadStatus)
    );
    assert_eq!(
        parse(&m, &[d(HDR, 16, 0), d(STATUS, 0, W)], n),
        Err(RequestError::BadStatus)
    );
    // Data in the wrong direction for a read.
    assert_eq!(
        parse(&m, &chain(&[d(DATA, 512, 0)]), n),
        Err(RequestError::WrongDirection)
    );
    // A partial sector.
    assert_eq!(
        parse(&m, &chain(&[d(DATA, 100, W)]), n),
        Err(RequestError::UnalignedLength)
    );
    // Buffers outside guest memory, including ones that wrap the address space.
    assert_eq!(
        parse(&m, &chain(&[d(0xff_f000, 512, W)]), n),
        Err(RequestError::OutOfRange)
    );
    assert_eq!(
        parse(&m, &chain(&[d(u64::MAX - 10, 512, W)]), n),
        Err(RequestError::OutOfRange)
    );
    assert_eq!(
        parse(&m, &[d(HDR, 16, 0), d(0x20_0000, 1, W)], n),
        Err(RequestError::OutOfRange)
    );
    // Oversize chains.
    let long: Vec<Descriptor> = (0..MAX_DESCRIPTORS - 1).map(|_| d(DATA, 512, W)).collect();
    assert_eq!(
        parse(&m, &chain(&long), n),
        Err(RequestError::TooManyDescriptors)
    );
    let max: Vec<Descriptor> = (0..MAX_DESCRIPTORS - 2).map(|_| d(DATA, 512, W)).collect();
    assert!(parse(&m, &chain(&max), n).is_ok());
}

#[test]
fn status_of_a_malformed_chain_is_found_when_usable() {
    let m = mem();
    assert_eq!(
        status_address(&m, &[d(HDR, 16, W), d(STATUS, 4, W)]),
        Some(GuestAddress(STATUS + 3))
    );
    assert_eq!(status_address(&m, &[d(HDR, 16, 0), d(STATUS, 1, 0)]), None);
    assert_eq!(status_address(&m, &[d(STATUS, 1, W)]), None);
    assert_eq!(
        status_address(&m, &[d(HDR, 16, 0), d(0x20_0000, 1, W)]),
        None
    );
}

#[test]
fn host_io_errors_become_ioerr() {
    let m = mem();
    let (f, mut disk) = disk(4, false);
    header(&m, VIRTIO_BLK_T_IN, 2);
    let req = parse(&m, &chain(&[d(DATA, 1024, W)]), disk.sectors()).unwrap();
    // The file shrinks under the VMM: the read hits EOF.
    f.as_file().set_len(512).unwrap();
    assert_eq!(execute(&mut disk, &m, &req).0, VIRTIO_BLK_S_IOERR as u8);
}

#[test]
fn enospc_from_the_host_becomes_ioerr() {
    // /dev/full fails every write with ENOSPC; give it a size so the request is valid.
    let Ok(full) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/full")
    else {
        test_skips::skip(
            "enospc_from_the_host_becomes_ioerr",
            "no /dev/full on this host",
        );
        return;
    };
    let m = mem();
    let mut disk = Disk {
        file: full,
        sectors: 8,
        read_only: false,
        id: [0; ID_BYTES],
    };
    header(&m, VIRTIO_BLK_T_OUT, 0);
    assert_eq!(
        run(&mut disk, &m, &chain(&[d(DATA, 512, 0)])).0,
        VIRTIO_BLK_S_IOERR as u8
    );
    // The device keeps serving: a read from the same disk still completes.
    header(&m, VIRTIO_BLK_T_IN, 0);
    assert_eq!(
        run(&mut disk, &m, &chain(&[d(DATA, 512, W)])).0,
        VIRTIO_BLK_S_OK as u8
    );
}
