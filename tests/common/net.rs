//! Host-side network helpers for tests: taps made with `ip` (removed on drop, even
//! when a test fails) and AF_PACKET raw sockets bound to them.
#![allow(dead_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::Duration;

/// Runs `ip ARGS` (optionally inside network namespace `ns`); Err with its stderr.
pub fn ip(ns: Option<&str>, args: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new("ip");
    if let Some(ns) = ns {
        cmd.args(["netns", "exec", ns, "ip"]);
    }
    let out = cmd
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A persistent tap that exists for the guard's lifetime.
pub struct TestTap {
    pub name: String,
    ns: Option<String>,
}

impl TestTap {
    /// Creates tap `name` (in namespace `ns`), without IPv6 (no router solicitations
    /// or MLD reports on the wire), and brings it up. Err says why (no root, no tun).
    pub fn create(name: &str, ns: Option<&str>) -> Result<Self, String> {
        let _ = ip(ns, &["link", "del", name]);
        ip(ns, &["tuntap", "add", "dev", name, "mode", "tap"])?;
        let tap = Self {
            name: name.to_string(),
            ns: ns.map(str::to_string),
        };
        let sysctl = format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6");
        let disable = match ns {
            None => std::fs::write(&sysctl, "1").map_err(|e| e.to_string()),
            Some(ns) => Command::new("ip")
                .args(["netns", "exec", ns, "sh", "-c"])
                .arg(format!("echo 1 > {sysctl}"))
                .status()
                .map_err(|e| e.to_string())
                .map(|_| ()),
        };
        if let Err(e) = disable {
            eprintln!("note: IPv6 stays on for {name}: {e}");
        }
        ip(ns, &["link", "set", name, "up"])?;
        Ok(tap)
    }
}

impl Drop for TestTap {
    fn drop(&mut self) {
        let _ = ip(self.ns.as_deref(), &["link", "del", &self.name]);
    }
}

/// A network namespace that exists for the guard's lifetime.
pub struct TestNetns {
    pub name: String,
}

impl TestNetns {
    pub fn create(name: &str) -> Result<Self, String> {
        let _ = ip(None, &["netns", "del", name]);
        ip(None, &["netns", "add", name])?;
        let ns = Self {
            name: name.to_string(),
        };
        ip(Some(name), &["link", "set", "lo", "up"])?;
        Ok(ns)
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = ip(None, &["netns", "del", &self.name]);
    }
}

/// An AF_PACKET socket on one interface, for frames of one EtherType.
pub struct RawSocket {
    fd: OwnedFd,
    ifindex: i32,
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

impl RawSocket {
    /// Opens a socket bound to interface `name` that receives `ethertype` frames.
    pub fn open(name: &str, ethertype: u16) -> io::Result<Self> {
        let cname = std::ffi::CString::new(name).map_err(io::Error::other)?;
        // SAFETY: a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) } as i32;
        if ifindex == 0 {
            return Err(io::Error::last_os_error());
        }
        let proto = i32::from(ethertype.to_be());
        // SAFETY: socket() takes no pointers.
        let fd = check(unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto) })?;
        // SAFETY: a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let addr = Self::addr(ifindex, ethertype);
        // SAFETY: bind reads a sockaddr_ll of the given size.
        check(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        })?;
        let size: libc::c_int = 8 << 20;
        // SAFETY: setsockopt reads one int. FORCE needs CAP_NET_ADMIN; fall back.
        unsafe {
            for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
                let p = &size as *const libc::c_int as *const libc::c_void;
                if libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, opt, p, 4) == 0 {
                    break;
                }
            }
        }
        Ok(Self { fd, ifindex })
    }

    fn addr(ifindex: i32, ethertype: u16) -> libc::sockaddr_ll {
        // SAFETY: sockaddr_ll is plain data; zero is valid.
        let mut a: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        a.sll_family = libc::AF_PACKET as u16;
        a.sll_protocol = ethertype.to_be();
        a.sll_ifindex = ifindex;
        a
    }

    /// Sends one whole Ethernet frame out of the interface (towards the guest).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let addr = Self::addr(self.ifindex, 0);
        // SAFETY: sendto reads `frame` and one sockaddr_ll.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
                &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The next frame that came in from the guest (frames this host sent are
    /// skipped); None after `timeout` without one.
    pub fn recv(&self, buf: &mut [u8], timeout: Duration) -> Option<usize> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: poll reads and writes one pollfd.
            if unsafe { libc::poll(&mut pfd, 1, ms.max(1)) } <= 0 {
                continue;
            }
            // SAFETY: sockaddr_ll is plain data.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: recvfrom writes at most buf.len() bytes and one sockaddr_ll.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    &mut from as *mut libc::sockaddr_ll as *mut libc::sockaddr,
                    &mut len,
                )
            };
            if n < 0 {
                continue;
            }
            if from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            return Some(n as usize);
        }
    }
}
