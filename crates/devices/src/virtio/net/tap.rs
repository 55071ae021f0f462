//! A Linux TAP interface as the host side of a virtio-net device: opened with
//! IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, a 12-byte virtio-net header on every frame, no
//! offloads, non-blocking. An existing interface is used as it is; a missing one is
//! created only when asked (and then disappears when minivmm closes it).

use super::backend::NetBackend;
use super::netif::{self, ifreq_for};
use super::VNET_HDR_LEN;
use ioctls::{TUNGETIFF, TUNSETIFF, TUNSETOFFLOAD, TUNSETVNETHDRSZ};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use vmm_sys_util::ioctl::{ioctl_with_mut_ref, ioctl_with_ref, ioctl_with_val};

/// The tun driver's ioctl numbers (linux/if_tun.h).
mod ioctls {
    use vmm_sys_util::{ioctl_ior_nr, ioctl_iow_nr};
    const TUNTAP: u32 = b'T' as u32;
    ioctl_iow_nr!(TUNSETIFF, TUNTAP, 202, ::std::os::raw::c_int);
    ioctl_iow_nr!(TUNSETOFFLOAD, TUNTAP, 208, ::std::os::raw::c_uint);
    ioctl_ior_nr!(TUNGETIFF, TUNTAP, 210, ::std::os::raw::c_uint);
    ioctl_iow_nr!(TUNSETVNETHDRSZ, TUNTAP, 216, ::std::os::raw::c_int);
}

const TUN_DEVICE: &str = "/dev/net/tun";

/// Errors opening a tap.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The name is empty, too long or has characters an interface name cannot have.
    #[error("'{0}' is not a valid interface name (1-15 characters, no '/', ':' or spaces)")]
    InvalidName(String),
    /// No interface of that name, and creating it was not asked for.
    #[error(
        "tap '{0}' does not exist: create it with `ip tuntap add dev {0} mode tap user $USER && \
         ip link set {0} up` (as root), or pass create=on to let minivmm create it"
    )]
    Missing(String),
    /// /dev/net/tun could not be opened.
    #[error("cannot open {TUN_DEVICE}: {0} (load the tun module; {TUN_DEVICE} must be readable and writable)")]
    OpenTun(#[source] io::Error),
    /// TUNSETIFF refused the interface.
    #[error("cannot attach to tap '{0}': {1}{hint}", hint = attach_hint(.1))]
    Attach(String, io::Error),
    /// Setting the vnet header size or the offloads failed.
    #[error("cannot configure tap '{0}' ({1})")]
    Configure(String, &'static str, #[source] io::Error),
    /// Bringing a created interface up failed.
    #[error("cannot bring tap '{0}' up")]
    LinkUp(String, #[source] io::Error),
}

fn attach_hint(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::EPERM) => {
            " (the tap belongs to another user or group, or creating it needs CAP_NET_ADMIN)"
        }
        Some(libc::EBUSY) => " (another process has it open)",
        Some(libc::EINVAL) => " (an interface of that name exists but is not a tap)",
        _ => "",
    }
}

/// An open tap interface.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
    created: bool,
}

/// True when `name` is a name the kernel takes for a network interface.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

/// True when a network interface called `name` exists in this network namespace.
pub fn interface_exists(name: &str) -> bool {
    valid_name(name) && Path::new("/sys/class/net").join(name).exists()
}

impl Tap {
    /// Opens tap `name`. With `create`, a missing interface is created (it lives as
    /// long as this `Tap`) and brought up; without, a missing one is an error.
    pub fn open(name: &str, create: bool) -> Result<Self, TapError> {
        if !valid_name(name) {
            return Err(TapError::InvalidName(name.to_string()));
        }
        let exists = interface_exists(name);
        if !exists && !create {
            return Err(TapError::Missing(name.to_string()));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(TUN_DEVICE)
            .map_err(TapError::OpenTun)?;
        let mut req = ifreq_for(name);
        req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as i16;
        // SAFETY: TUNSETIFF reads and writes one ifreq, which lives for the call.
        if unsafe { ioctl_with_mut_ref(&file, TUNSETIFF(), &mut req) } < 0 {
            return Err(TapError::Attach(
                name.to_string(),
                io::Error::last_os_error(),
            ));
        }
        let tap = Tap {
            file,
            name: name.to_string(),
            created: !exists,
        };
        tap.configure()?;
        if tap.created {
            tap.link_up()?;
        }
        Ok(tap)
    }

    fn configure(&self) -> Result<(), TapError> {
        let hdr_len = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int, which lives for the call.
        if unsafe { ioctl_with_ref(&self.file, TUNSETVNETHDRSZ(), &hdr_len) } < 0 {
            return Err(self.configure_error("vnet header size"));
        }
        // No checksum or segmentation offload: frames cross the tap whole and checksummed.
        // SAFETY: TUNSETOFFLOAD takes its argument by value.
        if unsafe { ioctl_with_val(&self.file, TUNSETOFFLOAD(), 0) } < 0 {
            return Err(self.configure_error("offloads"));
        }
        Ok(())
    }

    fn configure_error(&self, what: &'static str) -> TapError {
        TapError::Configure(self.name.clone(), what, io::Error::last_os_error())
    }

    fn link_up(&self) -> Result<(), TapError> {
        let sock = netif::control_socket().map_err(|e| TapError::LinkUp(self.name.clone(), e))?;
        netif::set_up(&sock, &self.name, true).map_err(|e| TapError::LinkUp(self.name.clone(), e))
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True when minivmm created the interface (it goes away when this tap closes).
    pub fn created(&self) -> bool {
        self.created
    }

    /// The interface flags the kernel reports for this file (IFF_TAP, IFF_VNET_HDR...).
    pub fn flags(&self) -> io::Result<i16> {
        let mut req = ifreq_for("");
        // SAFETY: TUNGETIFF fills one ifreq, which lives for the call.
        if unsafe { ioctl_with_mut_ref(&self.file, TUNGETIFF(), &mut req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: TUNGETIFF filled the flags member of the union.
        Ok(unsafe { req.ifr_ifru.ifru_flags })
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl NetBackend for Tap {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }

    fn send(&mut self, frame: &[u8]) -> io::Result<usize> {
        self.file.write(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_any_syscall() {
        for bad in ["", "a/b", "a b", "x:1", "0123456789abcdef", ".."] {
            assert!(
                matches!(Tap::open(bad, false), Err(TapError::InvalidName(_))),
                "{bad}"
            );
        }
        assert!(valid_name("tap0"));
        assert!(valid_name("0123456789abcde"));
    }

    #[test]
    fn a_missing_tap_is_a_clear_error() {
        let err = Tap::open("mvmnosuchtap0", false).unwrap_err();
        assert!(matches!(err, TapError::Missing(_)));
        let text = err.to_string();
        assert!(
            text.contains("ip tuntap add dev mvmnosuchtap0 mode tap"),
            "{text}"
        );
        assert!(text.contains("create=on"), "{text}");
    }
}
