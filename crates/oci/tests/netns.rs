//! The CNI interface's address moved to the guest and given back (crate::netns), in a
//! network namespace of a test thread's own on this host: a veth with an address and
//! a default route (as a CNI plugin leaves it) and a tap, made with iproute2. Needs
//! root (CAP_NET_ADMIN) and `ip`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

use oci::netns::{adopt, restore, BRIDGE};
use std::net::Ipv4Addr;
use std::process::Command;

fn ip(args: &str) -> String {
    let out = Command::new("ip")
        .args(args.split_whitespace())
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_cni_address_moves_to_the_bridge_and_comes_back() {
    // SAFETY: geteuid has no memory effects.
    if unsafe { libc::geteuid() } != 0 {
        test_skips::skip(
            "the_cni_address_moves_to_the_bridge_and_comes_back",
            "needs root",
        );
        return;
    }
    std::thread::spawn(|| {
        // SAFETY: unshare has no memory effects; only this thread changes namespace
        // (children it starts inherit it).
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
        ip("link add cni0 type veth peer name peer0");
        ip("link set cni0 mtu 1400");
        ip("addr add 10.99.0.2/24 dev cni0");
        ip("link set cni0 up");
        ip("link set peer0 up");
        ip("route add default via 10.99.0.1");
        ip("tuntap add dev tap0 mode tap");

        let adopted = adopt("tap0")
            .unwrap()
            .expect("an interface with an address");
        assert_eq!(adopted.interface, "cni0");
        assert_eq!(adopted.address, Ipv4Addr::new(10, 99, 0, 2));
        assert_eq!(adopted.prefix, 24);
        assert_eq!(adopted.gateway, Some(Ipv4Addr::new(10, 99, 0, 1)));
        assert_eq!(adopted.mtu, 1400);
        assert_eq!(
            adopted.guest_script(),
            "ip link set eth0 mtu 1400 up && ip addr add 10.99.0.2/24 dev eth0 && \
             ip route add default via 10.99.0.1 dev eth0"
        );
        // The address left the namespace's stack; both ports are in the bridge, up.
        assert_eq!(ip("-4 -o addr show dev cni0"), "");
        for port in ["cni0", "tap0"] {
            let link = ip(&format!("-o link show dev {port}"));
            assert!(link.contains(&format!("master {BRIDGE}")), "{link}");
        }
        assert!(ip(&format!("-o link show dev {BRIDGE}")).contains(",UP"));
        assert!(ip("-o link show dev tap0").contains("mtu 1400"));
        // No interface with an address left: a second adopt finds nothing.
        assert_eq!(adopt("tap0").unwrap(), None);

        restore(&adopted).unwrap();
        assert!(ip("-4 -o addr show dev cni0").contains("inet 10.99.0.2/24"));
        assert!(ip("route").contains("default via 10.99.0.1 dev cni0"));
        assert!(!ip("-o link").contains(BRIDGE));
        // Giving back twice (the VMM process, then delete) is harmless.
        restore(&adopted).unwrap();
        assert!(ip("-4 -o addr show dev cni0").contains("inet 10.99.0.2/24"));
    })
    .join()
    .unwrap();
}
