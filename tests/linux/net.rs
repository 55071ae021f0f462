//! A real Linux guest on this host's KVM configures its network by DHCP over
//! virtio-net: kernel IP auto-configuration (`ip=dhcp`) against dnsmasq serving the
//! tap inside a network namespace this test creates and removes.

use crate::common::net::{TestNetns, TestTap};
use crate::common::*;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const NETNS: &str = "mvt-dhcp";
const TAP: &str = "mvt-dhcp0";
const MAC: &str = "02:00:00:00:00:77";
const LEASED: &str = "10.0.77.55";
const DEADLINE: Duration = Duration::from_secs(480);

/// dnsmasq, killed when dropped.
struct Dnsmasq(Child);

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn linux_gets_its_address_by_dhcp_over_virtio_net() {
    let test = "linux dhcp";
    let Some(kernel_dir) = linux_guest(test) else {
        return;
    };
    if Command::new("dnsmasq").arg("--version").output().is_err() {
        skip(test, "dnsmasq is not installed (apt install dnsmasq-base)");
        return;
    }
    let ns = match TestNetns::create(NETNS) {
        Ok(ns) => ns,
        Err(e) => {
            skip(
                test,
                format!("cannot create a network namespace ({e}); needs root"),
            );
            return;
        }
    };
    let tap = TestTap::create(TAP, Some(&ns.name)).expect("tap in the namespace");
    crate::common::net::ip(
        Some(&ns.name),
        &["addr", "add", "10.0.77.1/24", "dev", &tap.name],
    )
    .expect("address on the tap");

    let dir = scratch(test);
    let log = dir.join("dnsmasq.log");
    let dnsmasq = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            "dnsmasq",
            "--no-daemon",
            "--conf-file=/dev/null",
        ])
        .arg(format!("--interface={TAP}"))
        .args([
            "--bind-interfaces",
            "--port=0",
            "--log-dhcp",
            "--log-facility=-",
        ])
        .arg("--dhcp-range=10.0.77.50,10.0.77.60,255.255.255.0,1h")
        .arg(format!("--dhcp-host={MAC},{LEASED}"))
        .arg(format!("--dhcp-leasefile={}", dir.join("leases").display()))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start dnsmasq");
    let _dnsmasq = Dnsmasq(dnsmasq);

    let initrd = guest_initramfs(&dir, false);
    let kernel = kernel_dir.join("vmlinux");
    let net = format!("tap={TAP},mac={MAC}");
    let mut args = vec![
        "--kernel",
        kernel.to_str().unwrap(),
        "--initrd",
        initrd.to_str().unwrap(),
        "--mem",
        "256M",
        "--net",
        &net,
        "--cmdline",
        "ip=dhcp",
        "--boot-timeline",
    ];
    if host_emulates_guest_code() {
        args.extend(["--cmdline-preset", "emulated-kvm"]);
    }
    let mut command = Command::new("ip");
    command.args(["netns", "exec", &ns.name, MINIVMM]);
    let run = run_command_until_marker(command, &args, "rootserver=", DEADLINE);
    let out = &run.stdout;
    let served = std::fs::read_to_string(&log).unwrap_or_default();
    println!("{test}: {:.1} s\n{}", run.elapsed.as_secs_f64(), run.stderr);
    for line in [
        "IP-Config: Complete:",
        &format!("device=eth0, hwaddr={MAC}, ipaddr={LEASED}, mask=255.255.255.0"),
        "bootserver=10.0.77.1",
        "virtio_mmio.device=4K@0xd0001000:10",
    ] {
        assert!(
            out.contains(line),
            "missing '{line}':\n{out}\ndnsmasq:\n{served}"
        );
    }
    assert!(
        served.contains(&format!("DHCPACK({TAP}) {LEASED} {MAC}")),
        "dnsmasq did not lease {LEASED}:\n{served}"
    );
    // minivmm stopped on the test's SIGTERM, cleanly.
    assert_eq!(run.status, Some(128 + libc::SIGTERM), "{}", run.stderr);
}
