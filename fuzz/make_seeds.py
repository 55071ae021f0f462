#!/usr/bin/env python3
"""Writes the hand-made seed inputs of the kernel_loader, boot_layout and
mmio_transport fuzz targets into fuzz/corpus/ (run from the repository root)."""
import os
import struct

C = "fuzz/corpus"


def put(target, name, data):
    with open(os.path.join(C, target, name), "wb") as f:
        f.write(data)


# kernel_loader: a minimal x86_64 ELF with one PT_LOAD, and a minimal bzImage.
payload = b"\xf4" * 64
ehdr = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
ehdr += struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0x1000000, 64, 0, 0, 64, 56, 1, 64, 0, 0)
phdr = struct.pack("<IIQQQQQQ", 1, 5, 120, 0x1000000, 0x1000000, len(payload), len(payload), 0x1000)
put("kernel_loader", "elf-one-load", ehdr + phdr + payload)
bz = bytearray(5 * 512 + 64)
bz[0x1F1] = 4  # setup_sects
struct.pack_into("<I", bz, 0x1F4, 4)  # syssize in 16-byte units
struct.pack_into("<H", bz, 0x1FE, 0xAA55)
bz[0x202:0x206] = b"HdrS"
struct.pack_into("<H", bz, 0x206, 0x020F)  # protocol version
bz[0x211] = 1  # loadflags: LOADED_HIGH
struct.pack_into("<I", bz, 0x22C, 0x37FFFFFF)  # initrd_addr_max
struct.pack_into("<H", bz, 0x236, 1)  # xloadflags: XLF_KERNEL_64
struct.pack_into("<Q", bz, 0x258, 0x1000000)  # pref_address
struct.pack_into("<I", bz, 0x260, 0x100000)  # init_size
put("kernel_loader", "bzimage-minimal", bytes(bz))

# boot_layout: sizes, flags, a header, an initrd and a command line.
put("boot_layout", "small-with-initrd",
    bytes([0, 0, 0, 0x10, 0, 1, 3, 0]) + struct.pack("<I", 0)[:3] + b"" +
    bytes([64, 0, 0]) + b"\x07" * 64 + b"console=ttyS0 quiet")
put("boot_layout", "header-and-long-cmdline",
    bytes([200, 0x34, 0x12, 0x40, 0, 7, 14, 1]) + bytes(0x77) + bytes([0, 16, 0]) +
    b"\x01" * 4096 + b"root=/dev/vda " * 100)

# mmio_transport: a full negotiation and one request on queue 0.
def op(kind, offset, value, width_code=2):
    return struct.pack("<BHBI", kind, offset, width_code, value)


def negotiate(queues):
    ops = op(1, 0x70, 1) + op(1, 0x70, 3)
    ops += op(1, 0x24, 1) + op(1, 0x20, 1)  # VERSION_1
    ops += op(1, 0x24, 0) + op(1, 0x20, 0)
    ops += op(1, 0x70, 0xB)
    for q, base in queues:
        ops += op(1, 0x30, q) + op(1, 0x38, 16)
        ops += op(1, 0x80, base) + op(1, 0x90, base + 0x100) + op(1, 0xA0, base + 0x200)
        ops += op(1, 0x44, 1)
    ops += op(1, 0x70, 0xF)
    return ops


mem = bytearray(0x4000)
struct.pack_into("<QIHH", mem, 0, 0x3000, 16, 1, 1)  # header, NEXT
struct.pack_into("<QIHH", mem, 16, 0x3100, 512, 3, 2)  # data, WRITE|NEXT
struct.pack_into("<QIHH", mem, 32, 0x3400, 1, 2, 0)  # status, WRITE
struct.pack_into("<HHH", mem, 0x100, 0, 1, 0)  # avail: flags, idx 1, ring[0] = 0
put("mmio_transport", "blk-negotiate-and-read",
    b"\x00" + bytes(mem) + negotiate([(0, 0)]) + op(3, 0, 0) + op(0, 0x60, 0) + op(1, 0x64, 1))
net = bytearray(0x4000)
struct.pack_into("<QIHH", net, 0, 0x3000, 2048, 2, 0)  # one writable RX buffer
struct.pack_into("<HHH", net, 0x100, 0, 1, 0)
put("mmio_transport", "net-negotiate-and-receive",
    b"\x01" + bytes(net) + negotiate([(0, 0), (1, 0x1000)]) + op(3, 0, 2) + op(3, 0, 0) +
    op(0, 0x100, 0, 0) + op(0, 0x104, 0, 1))


# vsock_queues: RX buffers posted; TX packets (header + data in one descriptor):
# a REQUEST to port 1, data on it, a credit request, a RESPONSE to the host's
# CONNECT 5, a REQUEST to port 9 (no listener), an unknown op, a full shutdown.
def vsock_seed():
    mem = bytearray(0x10000)
    def ring(base, chains):
        for i, (addr, length, flags) in enumerate(chains):
            struct.pack_into("<QIHH", mem, base + 16 * i, addr, length, flags, 0)
            struct.pack_into("<H", mem, base + 0x1000 + 4 + 2 * i, i)
        struct.pack_into("<H", mem, base + 0x1000 + 2, len(chains))
    ring(0, [(0x9000 + 0x400 * i, 0x400, 2) for i in range(8)])
    def hdr(src_port, dst_port, op, data=b"", flags=0):
        return struct.pack("<QQIIIHHIII", 3, 2, src_port, dst_port, len(data), 1, op,
                           flags, 65536, 0) + data
    pkts = [hdr(100, 1, 1), hdr(100, 1, 5, b"data"), hdr(100, 1, 7),
            hdr(5, 1 << 30, 2), hdr(101, 9, 1), hdr(100, 1, 42), hdr(100, 1, 4, b"", 3)]
    tx = []
    for i, p in enumerate(pkts):
        addr = 0xc000 + 0x100 * i
        mem[addr:addr + len(p)] = p
        tx.append((addr, len(p), 0))
    ring(0x3000, tx)
    return bytes(mem[:0xd000])


os.makedirs(os.path.join(C, "vsock_queues"), exist_ok=True)
put("vsock_queues", "connect-data-shutdown", vsock_seed())


# fs_requests: FUSE request sequences (each [len u16][request]), after a mode byte
# (odd: read-only share). Fresh device per input: inodes from 2, handles from 1.
def fuse(opcode, nodeid, body, unique=1, uid=0):
    hdr = struct.pack("<IIQQIIII", 40 + len(body), opcode, unique, nodeid, uid, 0, 0, 0)
    msg = hdr + body
    return struct.pack("<H", len(msg)) + msg


INIT = fuse(26, 0, struct.pack("<IIII", 7, 31, 0x20000, 0xFFFFFFFF) + bytes(48))
name = lambda s: s.encode() + b"\0"
CREATE_IN = lambda mode: struct.pack("<IIII", 0o102, mode, 0, 0)  # O_RDWR|O_CREAT
WRITE_IN = lambda fh, off, data: struct.pack("<QQIIQII", fh, off, len(data), 0, 0, 0, 0) + data
os.makedirs(os.path.join(C, "fs_requests"), exist_ok=True)
put("fs_requests", "init-lookup-read",
    b"\0" + INIT + fuse(1, 1, name("hello")) + fuse(14, 2, struct.pack("<II", 0, 0)) +
    fuse(15, 2, struct.pack("<QQIIQII", 1, 0, 100, 0, 0, 0, 0)))
put("fs_requests", "escapes",
    b"\0" + INIT + fuse(1, 1, name("..")) + fuse(1, 1, name("abs")) + fuse(1, 2, name("secret")) +
    fuse(1, 1, name("rel")) + fuse(35, 3, name("x") , 2) + fuse(9, 1, name("../made")) +
    fuse(13, 2, struct.pack("<Q", 1) + name("hl")) + fuse(8, 1, struct.pack("<IIII", 0o20666, 0x0103, 0, 0) + name("dev")))
put("fs_requests", "create-write-rename",
    b"\0" + INIT + fuse(35, 1, CREATE_IN(0o4755) + name("f")) + fuse(16, 2, WRITE_IN(1, 0, b"data")) +
    fuse(9, 1, struct.pack("<II", 0o2755, 0) + name("d")) +
    fuse(45, 1, struct.pack("<QII", 1, 0, 0) + name("f") + name("g")) +
    fuse(6, 3, name("/etc") + name("link")) + fuse(44, 1, struct.pack("<QQIIQII", 0, 0, 4096, 0, 0, 0, 0)))
put("fs_requests", "read-only",
    b"\1" + INIT + fuse(35, 1, CREATE_IN(0o644) + name("f")) + fuse(1, 1, name("hello")) +
    fuse(14, 2, struct.pack("<II", 2, 0)) + fuse(10, 1, name("hello")))
