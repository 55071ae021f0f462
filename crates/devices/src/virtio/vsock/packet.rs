//! The virtio-vsock packet header (virtio 1.2 §5.10.6, `struct virtio_vsock_hdr`,
//! 44 bytes, little-endian) and the operations and flags it carries.

/// Size of the header in front of every packet.
pub const HDR_LEN: usize = 44;
/// Largest payload one packet carries either way (Linux uses the same, 64 KiB).
pub const MAX_PKT_LEN: usize = 64 * 1024;

/// The only socket type served: a stream.
pub const TYPE_STREAM: u16 = 1;

/// Shutdown flag: the sender will receive no more data.
pub const SHUTDOWN_RCV: u32 = 1;
/// Shutdown flag: the sender will send no more data.
pub const SHUTDOWN_SEND: u32 = 2;

/// Packet operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Op {
    /// Connect.
    Request = 1,
    /// Accept a connection.
    Response = 2,
    /// Refuse or end a connection at once.
    Rst = 3,
    /// Half or full close (`flags`: [`SHUTDOWN_RCV`], [`SHUTDOWN_SEND`]).
    Shutdown = 4,
    /// Stream data.
    Rw = 5,
    /// Announces the sender's buffer space (`buf_alloc`, `fwd_cnt`).
    CreditUpdate = 6,
    /// Asks for a credit update.
    CreditRequest = 7,
}

impl Op {
    /// The operation numbered `value`, if known.
    pub fn from_u16(value: u16) -> Option<Self> {
        Some(match value {
            1 => Op::Request,
            2 => Op::Response,
            3 => Op::Rst,
            4 => Op::Shutdown,
            5 => Op::Rw,
            6 => Op::CreditUpdate,
            7 => Op::CreditRequest,
            _ => return None,
        })
    }
}

/// A packet header, decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// Source context ID.
    pub src_cid: u64,
    /// Destination context ID.
    pub dst_cid: u64,
    /// Source port.
    pub src_port: u32,
    /// Destination port.
    pub dst_port: u32,
    /// Payload length.
    pub len: u32,
    /// Socket type ([`TYPE_STREAM`]).
    pub type_: u16,
    /// Operation (an [`Op`] when valid).
    pub op: u16,
    /// Operation flags.
    pub flags: u32,
    /// The sender's receive buffer size.
    pub buf_alloc: u32,
    /// Bytes the sender has consumed from its receive buffer so far.
    pub fwd_cnt: u32,
}

fn u32_at(b: &[u8; HDR_LEN], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8; HDR_LEN], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | (u64::from(u32_at(b, at + 4)) << 32)
}

impl Header {
    /// Decodes a header.
    pub fn decode(b: &[u8; HDR_LEN]) -> Self {
        Self {
            src_cid: u64_at(b, 0),
            dst_cid: u64_at(b, 8),
            src_port: u32_at(b, 16),
            dst_port: u32_at(b, 20),
            len: u32_at(b, 24),
            type_: u16::from_le_bytes([b[28], b[29]]),
            op: u16::from_le_bytes([b[30], b[31]]),
            flags: u32_at(b, 32),
            buf_alloc: u32_at(b, 36),
            fwd_cnt: u32_at(b, 40),
        }
    }

    /// Encodes the header.
    pub fn encode(&self) -> [u8; HDR_LEN] {
        let mut b = [0u8; HDR_LEN];
        b[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        b[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        b[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        b[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        b[24..28].copy_from_slice(&self.len.to_le_bytes());
        b[28..30].copy_from_slice(&self.type_.to_le_bytes());
        b[30..32].copy_from_slice(&self.op.to_le_bytes());
        b[32..36].copy_from_slice(&self.flags.to_le_bytes());
        b[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        b[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
        b
    }

    /// The operation, if known.
    pub fn op(&self) -> Option<Op> {
        Op::from_u16(self.op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_matches_the_spec_layout() {
        let h = Header {
            src_cid: 3,
            dst_cid: 2,
            src_port: 0x1234,
            dst_port: 52,
            len: 7,
            type_: TYPE_STREAM,
            op: Op::Rw as u16,
            flags: SHUTDOWN_SEND,
            buf_alloc: 0x40000,
            fwd_cnt: 9,
        };
        let b = h.encode();
        assert_eq!(b[0], 3);
        assert_eq!(b[8], 2);
        assert_eq!(&b[16..18], &[0x34, 0x12]);
        assert_eq!(b[20], 52);
        assert_eq!(b[24], 7);
        assert_eq!(b[28], 1);
        assert_eq!(b[30], 5);
        assert_eq!(b[32], 2);
        assert_eq!(&b[36..40], &[0, 0, 4, 0]);
        assert_eq!(b[40], 9);
        assert_eq!(Header::decode(&b), h);
        assert_eq!(h.op(), Some(Op::Rw));
        assert_eq!(Op::from_u16(0), None);
        assert_eq!(Op::from_u16(8), None);
    }
}
