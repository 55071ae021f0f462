//! The container's network as CNI left it: in the network namespace the VMM process
//! joined, a CNI plugin has added an interface (a veth) with the pod's IPv4 address
//! and a default route. At `start`, the VMM process moves that address to the guest:
//! it reads the interface's address, prefix and gateway, takes the address off it,
//! and joins it and the VM's tap in a bridge, so frames for the pod's address reach
//! the guest's eth0, which the agent then configures with it. What CNI set up is used
//! as it is; nothing outside the namespace changes.

use crate::error::OciError;
use devices::virtio::net::netif::{self, ifreq_for as ifreq};
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use vmm_sys_util::ioctl::{ioctl_with_mut_ref, ioctl_with_ptr, ioctl_with_ref};

/// The bridge joining the CNI interface and the tap.
pub const BRIDGE: &str = "minivmm-br0";
/// `SIOCBRADDBR` and `SIOCBRADDIF` (linux/sockios.h; the libc crate has them only
/// for Android).
const SIOCBRADDBR: libc::c_ulong = 0x89a0;
const SIOCBRADDIF: libc::c_ulong = 0x89a2;
const SIOCBRDELBR: libc::c_ulong = 0x89a1;

/// The IPv4 set-up of the container's interface, for the guest's eth0.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Adopted {
    /// The CNI interface that carried it.
    pub interface: String,
    /// The address.
    pub address: Ipv4Addr,
    /// Its prefix length.
    pub prefix: u8,
    /// The default gateway, if the namespace had one through that interface.
    pub gateway: Option<Ipv4Addr>,
    /// The interface's MTU.
    pub mtu: u32,
}

impl Adopted {
    /// The shell commands (busybox `ip`) that give the guest's eth0 this set-up.
    pub fn guest_script(&self) -> String {
        let mut s = format!(
            "ip link set eth0 mtu {} up && ip addr add {}/{} dev eth0",
            self.mtu, self.address, self.prefix
        );
        if let Some(gw) = self.gateway {
            s.push_str(&format!(" && ip route add default via {gw} dev eth0"));
        }
        s
    }
}

fn err(what: &'static str, e: std::io::Error) -> OciError {
    OciError::Process(what, e.to_string())
}

fn socket() -> Result<OwnedFd, OciError> {
    netif::control_socket().map_err(|e| err("opening a socket", e))
}

fn if_ioctl(
    sock: &OwnedFd,
    req_code: libc::c_ulong,
    mut req: libc::ifreq,
) -> std::io::Result<libc::ifreq> {
    // SAFETY: the ioctl reads and writes one ifreq that lives for the call.
    if unsafe { ioctl_with_mut_ref(sock, req_code, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(req)
}

fn ipv4_of(req: &libc::ifreq) -> Ipv4Addr {
    // SAFETY: SIOCGIFADDR/SIOCGIFNETMASK fill ifru_addr with a sockaddr_in.
    let sin: libc::sockaddr_in = unsafe {
        std::ptr::read_unaligned((&req.ifr_ifru.ifru_addr as *const libc::sockaddr).cast())
    };
    Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))
}

/// The interfaces of the current network namespace.
fn interfaces() -> Vec<String> {
    // SAFETY: if_nameindex returns an array ending in a zero entry, freed below.
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return Vec::new();
        }
        let mut names = Vec::new();
        let mut p = list;
        while (*p).if_index != 0 {
            names.push(
                std::ffi::CStr::from_ptr((*p).if_name)
                    .to_string_lossy()
                    .into_owned(),
            );
            p = p.add(1);
        }
        libc::if_freenameindex(list);
        names
    }
}

/// The default gateway through `interface` in `/proc/thread-self/net/route` (this
/// thread's namespace).
fn gateway(interface: &str) -> Option<Ipv4Addr> {
    let table = std::fs::read_to_string("/proc/thread-self/net/route").ok()?;
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 2 && f[0] == interface && f[1] == "00000000")
            .then(|| u32::from_str_radix(f[2], 16).ok())
            .flatten()
            .map(|gw| Ipv4Addr::from(u32::from_be(gw)))
    })
}

/// Finds the first interface other than `lo` and `tap` with an IPv4 address and
/// bridges it with `tap` (see the module's description). `None` when there is none
/// (no CNI ran: the guest's eth0 stays without an address).
pub fn adopt(tap: &str) -> Result<Option<Adopted>, OciError> {
    let sock = socket()?;
    for name in interfaces() {
        if name == "lo" || name == tap || name == BRIDGE {
            continue;
        }
        let Ok(addr) = if_ioctl(&sock, libc::SIOCGIFADDR, ifreq(&name)) else {
            continue;
        };
        let address = ipv4_of(&addr);
        let mask = ipv4_of(
            &if_ioctl(&sock, libc::SIOCGIFNETMASK, ifreq(&name))
                .map_err(|e| err("reading the netmask", e))?,
        );
        let mtu = if_ioctl(&sock, libc::SIOCGIFMTU, ifreq(&name))
            .map_err(|e| err("reading the MTU", e))?;
        // SAFETY: SIOCGIFMTU fills ifru_mtu.
        let mtu = unsafe { mtu.ifr_ifru.ifru_mtu } as u32;
        let adopted = Adopted {
            gateway: gateway(&name),
            interface: name,
            address,
            prefix: u32::from(mask).count_ones() as u8,
            mtu,
        };
        bridge(&sock, &adopted.interface, tap, mtu)?;
        return Ok(Some(adopted));
    }
    Ok(None)
}

fn bridge(sock: &OwnedFd, interface: &str, tap: &str, mtu: u32) -> Result<(), OciError> {
    // The address leaves the namespace's stack: setting 0.0.0.0 deletes it (and the
    // routes through it), as `ifconfig IF 0.0.0.0` does.
    let mut req = ifreq(interface);
    // SAFETY: sockaddr_in is plain data; it is written into the ifreq's address.
    unsafe {
        let mut sin: libc::sockaddr_in = std::mem::zeroed();
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        std::ptr::write_unaligned(
            (&mut req.ifr_ifru.ifru_addr as *mut libc::sockaddr).cast(),
            sin,
        );
    }
    if_ioctl(sock, libc::SIOCSIFADDR, req)
        .map_err(|e| err("taking the address off the CNI interface", e))?;
    let name = std::ffi::CString::new(BRIDGE)
        .map_err(|_| err("naming the bridge", std::io::ErrorKind::InvalidInput.into()))?;
    // SAFETY: SIOCBRADDBR reads the NUL-terminated name, which lives for the call.
    if unsafe { ioctl_with_ptr(sock, SIOCBRADDBR, name.as_ptr()) } < 0 {
        return Err(err(
            "creating the bridge (is the bridge module loaded?)",
            std::io::Error::last_os_error(),
        ));
    }
    let mut mtu_req = ifreq(tap);
    mtu_req.ifr_ifru.ifru_mtu = mtu as libc::c_int;
    if_ioctl(sock, libc::SIOCSIFMTU, mtu_req).map_err(|e| err("setting the tap's MTU", e))?;
    for port in [interface, tap] {
        let index = if_ioctl(sock, libc::SIOCGIFINDEX, ifreq(port))
            .map_err(|e| err("finding a bridge port", e))?;
        let mut add = ifreq(BRIDGE);
        // SAFETY: SIOCGIFINDEX filled ifru_ifindex.
        add.ifr_ifru.ifru_ifindex = unsafe { index.ifr_ifru.ifru_ifindex };
        // SAFETY: SIOCBRADDIF reads one ifreq that lives for the call.
        if unsafe { ioctl_with_ref(sock, SIOCBRADDIF, &add) } < 0 {
            return Err(err(
                "adding a port to the bridge",
                std::io::Error::last_os_error(),
            ));
        }
    }
    for up in [BRIDGE, interface, tap] {
        netif::set_up(sock, up, true).map_err(|e| err("bringing an interface up", e))?;
    }
    Ok(())
}

fn sockaddr(addr: Ipv4Addr) -> libc::sockaddr {
    // SAFETY: sockaddr_in and sockaddr are plain data of the same size.
    unsafe {
        let mut sin: libc::sockaddr_in = std::mem::zeroed();
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_addr.s_addr = u32::from(addr).to_be();
        std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin)
    }
}

/// Undoes [`adopt`] when the container ends: the bridge goes, and the interface
/// gets its address and default route back, as CNI left them (so a CNI `DEL`, or
/// another container of the pod, finds them).
pub fn restore(adopted: &Adopted) -> Result<(), OciError> {
    let sock = socket()?;
    // No bridge (ENODEV): the container ended before `start` made one.
    let bridged = match netif::set_up(&sock, BRIDGE, false) {
        Ok(()) => true,
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => false,
        Err(e) => return Err(err("bringing the bridge down", e)),
    };
    if bridged {
        let name = std::ffi::CString::new(BRIDGE)
            .map_err(|_| err("naming the bridge", std::io::ErrorKind::InvalidInput.into()))?;
        // SAFETY: SIOCBRDELBR reads the NUL-terminated name, which lives for the call.
        if unsafe { ioctl_with_ptr(&sock, SIOCBRDELBR, name.as_ptr()) } < 0 {
            return Err(err("deleting the bridge", std::io::Error::last_os_error()));
        }
    }
    let mut addr = ifreq(&adopted.interface);
    addr.ifr_ifru.ifru_addr = sockaddr(adopted.address);
    if_ioctl(&sock, libc::SIOCSIFADDR, addr).map_err(|e| err("giving the address back", e))?;
    let mask = u32::MAX
        .checked_shl(32 - u32::from(adopted.prefix))
        .unwrap_or(0);
    let mut netmask = ifreq(&adopted.interface);
    netmask.ifr_ifru.ifru_netmask = sockaddr(Ipv4Addr::from(mask));
    if_ioctl(&sock, libc::SIOCSIFNETMASK, netmask)
        .map_err(|e| err("giving the netmask back", e))?;
    if let Some(gw) = adopted.gateway {
        let dev = std::ffi::CString::new(adopted.interface.as_str()).map_err(|_| {
            err(
                "naming the interface",
                std::io::ErrorKind::InvalidInput.into(),
            )
        })?;
        // SAFETY: rtentry is plain data; zero is a valid start.
        let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
        rt.rt_dst = sockaddr(Ipv4Addr::UNSPECIFIED);
        rt.rt_genmask = sockaddr(Ipv4Addr::UNSPECIFIED);
        rt.rt_gateway = sockaddr(gw);
        rt.rt_flags = (libc::RTF_UP | libc::RTF_GATEWAY) as libc::c_ushort;
        rt.rt_dev = dev.as_ptr().cast_mut();
        // SAFETY: SIOCADDRT reads the rtentry and the device name, both alive here.
        if unsafe { ioctl_with_ref(&sock, libc::SIOCADDRT, &rt) } < 0 {
            let e = std::io::Error::last_os_error();
            // Already back (a second restore): fine.
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(err("giving the default route back", e));
            }
        }
    }
    Ok(())
}

/// What `delete` needs to give a namespace back when the VMM process could not (it
/// was killed): the namespace's path and what was taken.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Taken {
    /// The network namespace (a path that outlives the VMM process).
    pub netns: std::path::PathBuf,
    /// What was moved to the guest.
    pub adopted: Adopted,
}

/// The file in a container's state directory that holds a [`Taken`] until it is
/// given back.
pub const TAKEN_FILE: &str = "network.json";

/// Gives `taken` back from a thread of its own that enters the namespace (this
/// process's other threads stay where they are).
pub fn restore_in(taken: &Taken) -> Result<(), OciError> {
    let taken = taken.clone();
    std::thread::spawn(move || -> Result<(), OciError> {
        let ns = std::fs::File::open(&taken.netns)
            .map_err(|e| err("opening the network namespace", e))?;
        // SAFETY: the fd is open for the call; setns changes only this thread.
        if unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) } != 0 {
            return Err(err(
                "entering the network namespace",
                std::io::Error::last_os_error(),
            ));
        }
        restore(&taken.adopted)
    })
    .join()
    .unwrap_or_else(|_| {
        Err(OciError::Process(
            "restoring the network",
            "the thread failed".into(),
        ))
    })
}
