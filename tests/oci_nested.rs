//! minivmm-oci under the real client: in the nested harness's L1 host (qemu TCG with
//! emulated SVM, where L2 guest user space runs), Debian's containerd runs a busybox
//! image's containers with `ctr run --runc-binary /bin/minivmm-oci`, each in its own
//! L2 microVM (tests/nested/oci-scenario.sh). One L1 boot checks: output and exit
//! status, `ctr task kill`, the process's view (its own kernel, env, cwd, memory limit
//! and CPU quota as the VM's size, a read-only bind mount, /dev), a terminal, writes
//! landing in the snapshot, two containers at once, a CNI-style network namespace
//! whose address the guest takes over (given back at the end, and by `delete` after a
//! SIGKILL), and nothing left behind.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

mod common;

use common::nested_log::{run_harness, section, tail, value};
use common::skip;

fn line<'a>(log: &'a str, prefix: &str) -> &'a str {
    log.lines()
        .rev()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no '{prefix}' line in:\n{}", tail(log, 80)))
}

#[test]
fn containerd_runs_containers_in_microvms() {
    if std::env::var_os("MINIVMM_SKIP_NESTED_TESTS").is_some() {
        skip("nested containerd", "MINIVMM_SKIP_NESTED_TESTS is set");
        return;
    }
    let scenario =
        std::fs::read_to_string(common::repo().join("tests/nested/oci-scenario.sh")).unwrap();
    let log = run_harness(
        "harness.sh",
        "oci",
        &scenario,
        // About a dozen L2 boots in one L1: more than the default 420 s limit.
        &[
            ("MINIVMM_NESTED_CONTAINERD", "1".into()),
            ("MINIVMM_NESTED_TIMEOUT", "900".into()),
        ],
    );
    let l1_kernel = value(&log, "OCI: L1 kernel ").to_string();
    assert!(!l1_kernel.is_empty(), "{}", tail(&log, 80));

    let echo = section(&log, "oci-echo");
    assert_eq!(echo.rc, 0, "{}", echo.output);
    assert_eq!(
        echo.output.trim(),
        "hello-from-a-microvm",
        "{}",
        echo.output
    );

    let exit = section(&log, "oci-exit");
    assert_eq!(exit.rc, 3, "{}", exit.output);
    assert!(exit.output.contains("before-exit"), "{}", exit.output);

    // The process runs on the L2 guest's kernel, not L1's: a VM, not a namespace.
    let inside = section(&log, "oci-inside");
    let out = &inside.output;
    assert_eq!(inside.rc, 0, "{out}");
    let guest_kernel = value(out, "kernel ");
    assert!(
        !guest_kernel.is_empty() && guest_kernel != l1_kernel,
        "{out}"
    );
    assert!(out.contains("foo=bar cwd=/bin"), "{out}");
    // --memory-limit 128 MiB: the VM has that plus 64 MiB for its kernel and agent.
    let mem_kib: u64 = value(out, "MemTotal:").parse().unwrap();
    assert!((150_000..=196_608).contains(&mem_kib), "{out}");
    assert!(out.contains("cpus 2"), "{out}");
    assert!(out.contains("host file"), "{out}");
    assert!(out.contains("bind read-only"), "{out}");
    for dev in ["null", "zero", "urandom", "pts", "shm", "mqueue"] {
        assert!(
            out.lines().any(|l| l.trim() == dev),
            "/dev/{dev} missing: {out}"
        );
    }
    // A new network namespace: the VM's interface (from the tap in it).
    assert!(
        value(out, "ifaces ").contains("eth0") || out.contains("eth0"),
        "{out}"
    );
    assert!(
        out.contains("uid=0(root) gid=0(root)") || out.contains("uid=0 gid=0"),
        "{out}"
    );

    // ctr run -t: the shim's console socket gets the terminal; the process names its
    // own in the container's /dev/pts.
    let tty = section(&log, "oci-tty");
    assert_eq!(tty.rc, 0, "{}", tty.output);
    assert!(tty.output.contains("/dev/pts/0"), "{}", tty.output);
    assert!(tty.output.contains("tty-ok"), "{}", tty.output);

    // ctr task kill: SIGTERM reached sleep in the guest; ctr run reports 128+15.
    let sleeping = line(&log, "OCI: c-sleep running pid=");
    assert!(
        sleeping.contains("tap0"),
        "no tap in the container's netns: {sleeping}"
    );
    assert_eq!(
        value(&log, "OCI: c-sleep exit="),
        "143",
        "{}",
        tail(&log, 60)
    );

    let write = section(&log, "oci-write");
    assert_eq!(write.rc, 0, "{}", write.output);
    let snap = line(&log, "OCI: snapshot file=");
    assert!(
        snap.contains("content=written-in-the-vm made=y true-removed=yes"),
        "{snap}"
    );

    // Two at once, each its own VMM process; SIGKILL ends each: 128+9.
    let two = line(&log, "OCI: two running pids=");
    let pids: Vec<&str> = value(two, "pids=").split(',').collect();
    assert!(pids.len() == 2 && pids[0] != pids[1], "{two}");
    assert!(
        two.contains("alive=both") && two.contains("c-a:RUNNING c-b:RUNNING"),
        "{two}"
    );
    let exits = line(&log, "OCI: two exits");
    assert!(exits.contains("a=137 b=137"), "{exits}");
    assert!(exits.contains("a-up") && exits.contains("b-up"), "{exits}");

    // A CNI-style namespace: the veth's address moved to the guest's eth0 (it pings
    // L1 and L1 pings it), and given back to the veth when the container ended.
    let net = section(&log, "oci-net");
    let out = &net.output;
    assert_eq!(net.rc, 143, "{out}");
    assert!(out.contains("inet 10.88.0.2/24"), "{out}");
    assert!(out.contains("default via 10.88.0.1 dev eth0"), "{out}");
    assert!(
        out.contains("3 packets transmitted, 3 packets received"),
        "{out}"
    );
    let to = line(&log, "OCI: L1 to the container:");
    assert!(to.contains("3 packets received"), "{to}");
    let after = line(&log, "OCI: cni netns after:");
    assert_eq!(
        after, "OCI: cni netns after: links=lo,eth0, 10.88.0.2/24 default via 10.88.0.1 dev eth0 ",
        "the namespace is not as CNI left it"
    );
    // Its VMM process killed while the address was in the guest: delete gave it back.
    let running = line(&log, "OCI: cni netns while running:");
    assert_eq!(
        running, "OCI: cni netns while running: |3",
        "the address stayed on the veth"
    );
    assert_eq!(
        line(&log, "OCI: cni netns after kill:"),
        "OCI: cni netns after kill: rc=137 links=lo,eth0, 10.88.0.2/24 default via 10.88.0.1 dev eth0 "
    );

    let left = line(&log, "OCI: left ");
    assert_eq!(
        left,
        "OCI: left tasks=0 containers=0 state=0 keepers=0 taps=0",
        "{}",
        tail(&log, 60)
    );
}
