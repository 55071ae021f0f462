//! What a virtio-net device sends frames to and receives them from: a tap in minivmm,
//! a socket pair in tests. Every frame carries a 12-byte virtio-net header first.

use std::io;
use std::os::fd::AsRawFd;

/// A non-blocking, message-preserving frame channel on the host.
pub trait NetBackend: Send + AsRawFd {
    /// Reads one frame (header first) into `buf`; `ErrorKind::WouldBlock` when none
    /// waits. The descriptor becomes readable (edge) when frames arrive.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes one frame (header first).
    fn send(&mut self, frame: &[u8]) -> io::Result<usize>;
}

impl NetBackend for std::os::unix::net::UnixDatagram {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        std::os::unix::net::UnixDatagram::recv(self, buf)
    }

    fn send(&mut self, frame: &[u8]) -> io::Result<usize> {
        std::os::unix::net::UnixDatagram::send(self, frame)
    }
}
