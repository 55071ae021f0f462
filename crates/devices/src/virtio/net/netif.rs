//! Host network interfaces by name, through the interface ioctls of an `AF_INET`
//! datagram socket (netdevice(7)): the request block naming an interface, and
//! bringing one up or down. The tap backend uses them for the interface it creates;
//! the OCI runtime for the bridge it builds in a container's network namespace.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use vmm_sys_util::ioctl::ioctl_with_mut_ref;

/// An `ifreq` naming interface `name` (at most `IFNAMSIZ - 1` bytes of it, so the name
/// stays NUL-terminated), everything else zero.
pub fn ifreq_for(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data (arrays and a union of integers); zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req
        .ifr_name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *dst = src as libc::c_char;
    }
    req
}

/// A datagram socket to issue interface ioctls on.
pub fn control_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket() takes no pointers; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sets (`up`) or clears `IFF_UP` on interface `name`, keeping its other flags.
pub fn set_up(sock: &OwnedFd, name: &str, up: bool) -> io::Result<()> {
    let mut req = ifreq_for(name);
    // SAFETY: SIOCGIFFLAGS reads the name and fills the flags of the ifreq, which
    // lives for the call.
    if unsafe { ioctl_with_mut_ref(sock, libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    let iff_up = libc::IFF_UP as libc::c_short;
    req.ifr_ifru.ifru_flags = if up { flags | iff_up } else { flags & !iff_up };
    // SAFETY: SIOCSIFFLAGS reads the name and flags of the ifreq, which lives for the
    // call.
    if unsafe { ioctl_with_mut_ref(sock, libc::SIOCSIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cut_to_stay_terminated() {
        let req = ifreq_for("tap0");
        assert_eq!(
            req.ifr_name[..5],
            [b't', b'a', b'p', b'0', 0].map(|b| b as libc::c_char)
        );
        let long = "x".repeat(40);
        let req = ifreq_for(&long);
        assert_eq!(req.ifr_name[libc::IFNAMSIZ - 1], 0);
        assert_eq!(req.ifr_name[libc::IFNAMSIZ - 2], b'x' as libc::c_char);
    }

    #[test]
    fn a_missing_interface_is_an_error_not_a_panic() {
        let Ok(sock) = control_socket() else { return };
        let err = set_up(&sock, "mvm-no-such-if", true).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENODEV));
    }
}
