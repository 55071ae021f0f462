//! The guest agent and snapshots in the nested harness: `minivmm exec`/`minivmm cp`
//! from L1, the library's exec from programs in L1 (examples/sandbox.rs,
//! examples/exec_bench.rs), snapshot clones (examples/snapshot_clones.rs); the L1 side
//! of the scenario and the assertions on its log.

use super::nested_log::{section, tail, value, L2Run};

/// L1 shell for the scenario. Every L2 run here is bounded by L1's watchdog
/// (run_program, run_l2_agent): one that hangs is stopped after 120 s (the slowest,
/// the agent's, takes about 40 s of a slow CI machine's time) and run again, well
/// within L1's own time limit. The setting holds for what follows in the same L1.
pub const SANDBOX_SCENARIO: &str = r#"
MINIVMM_L2_TIMEOUT=120
run_l2_agent agent --kernel /l2/vmlinux --initrd /l2/initramfs.cpio --mem 256M --cmdline 'noxsave minivmm.action=agent'
run_program sandbox-example sandbox --kernel /l2/vmlinux --initrd /l2/initramfs.cpio --cmdline 'noxsave minivmm.action=agent' -- sh -c 'echo hello from $(uname -s); exit 3'
run_program absent-check exec_bench --kernel /l2/vmlinux --initrd /l2/initramfs.cpio --cmdline 'noxsave minivmm.action=idle minivmm.agent=on' --absent-check
run_program snapshot-clones snapshot_clones --kernel /l2/vmlinux --initrd /l2/initramfs.cpio --cmdline 'noxsave minivmm.action=agent' --clones 3 --taps
"#;

/// The "AGENT: <check> ..." line of `run`.
fn agent_line<'a>(run: &'a L2Run, check: &str) -> &'a str {
    let prefix = format!("AGENT: {check} ");
    run.output
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no '{prefix}' line in:\n{}", tail(&run.output, 60)))
}

/// Commands in a guest through vsock and the agent, driven by `minivmm exec` and
/// `minivmm cp` from L1 (run_l2_agent), and the library's from programs in L1
/// (examples/sandbox.rs, examples/exec_bench.rs --absent-check).
pub fn check_agent(log: &str) {
    let run = section(log, "agent");
    assert_eq!(run.rc, 0, "{}", tail(&run.output, 60));
    let line = |c| agent_line(&run, c);
    assert_eq!(value(line("first-exec"), "rc="), "0");
    let uname = line("uname");
    assert_eq!(value(uname, "rc="), "0");
    assert!(uname.contains("out=Linux "), "{uname}");
    assert_eq!(value(line("exit7"), "rc="), "7");
    assert_eq!(value(line("sigkill"), "rc="), "137");
    assert!(
        line("streams").ends_with("out=to-stdout err=to-stderr"),
        "{}",
        line("streams")
    );
    let big = line("big16");
    assert_eq!(value(big, "size="), "16777216");
    assert_eq!(value(big, "host="), value(big, "guest="), "{big}");
    let stdin = line("stdin");
    assert_eq!(value(stdin, "host="), value(stdin, "guest="), "{stdin}");
    let conc = line("concurrent");
    assert_eq!(value(conc, "distinct="), "32", "{conc}");
    assert_eq!(value(conc, "failed="), "0", "{conc}");
    let cp = line("cp");
    assert_eq!(value(cp, "rc="), "0,0", "{cp}");
    assert_eq!(value(cp, "host="), value(cp, "back="), "{cp}");
    assert_eq!(value(cp, "host="), value(cp, "guest="), "{cp}");
    let timeout = line("timeout");
    assert_eq!(value(timeout, "rc="), "137", "{timeout}");
    let took: f64 = value(timeout, "took=").parse().unwrap_or(f64::MAX);
    assert!(took < 10.0, "{timeout}");
    let gone = line("reader-gone");
    assert_eq!(value(gone, "then="), "alive", "{gone}");
    let rng = line("hwrng");
    assert_eq!(value(rng, "bytes="), "32", "{rng}");
    assert!(value(rng, "current=").starts_with("virtio_rng"), "{rng}");
    let tty = line("tty");
    assert_eq!(value(tty, "rc="), "0", "{tty}");
    assert!(tty.contains("/dev/pts/") && tty.contains("40 100"), "{tty}");
    // The guest's console shows it ran under the agent and powered off.
    assert!(
        run.output.contains("MINIVMM-GUEST: agent ready"),
        "{}",
        tail(&run.output, 40)
    );

    // examples/sandbox.rs: the library's exec, from a program.
    let example = section(log, "sandbox-example");
    assert_eq!(example.rc, 3, "{}", example.output);
    assert!(
        example.output.contains("hello from Linux"),
        "{}",
        example.output
    );
    assert!(
        example.output.contains("agent answered:"),
        "{}",
        example.output
    );

    // The 16 MiB-across-pauses check runs in an L1 of its own (pause_check below).
    let pause = section(log, "absent-check");
    assert_eq!(pause.rc, 0, "{}", pause.output);
    // The agent gone (killed in that guest): AgentTimeout within the 3 s deadline.
    assert!(
        pause.output.contains("EXEC-BENCH absent=agent-timeout "),
        "{}",
        pause.output
    );
    let took: f64 = value(&pause.output, "absent_ms=")
        .parse()
        .unwrap_or(f64::MAX);
    assert!((2500.0..8000.0).contains(&took), "{}", pause.output);
    for check in ["first-exec", "big16", "stdin"] {
        println!("nested agent: {}", agent_line(&run, check));
    }
}

/// examples/snapshot_clones.rs: a Linux guest with the agent snapshotted after it
/// wrote a file in its tmpfs, then three clones restored at once: each one's agent
/// answers over its own vsock socket (after the transport reset), sees the file, keeps
/// what it writes to itself, and reads its own /dev/urandom bytes after the kernel
/// reseeded its RNG on the VM generation ID that changed; clone 0, given its own tap in
/// place of the template's, pings L1 through it.
pub fn check_snapshot_clones(log: &str) {
    let run = section(log, "snapshot-clones");
    assert_eq!(run.rc, 0, "{}", run.output);
    let line = |what: &str| -> &str {
        run.output
            .lines()
            .find(|l| l.starts_with(&format!("SNAPSHOT: {what}")))
            .unwrap_or_else(|| panic!("no '{what}' line in:\n{}", run.output))
    };
    assert!(
        line("template-wrote").ends_with("from-template"),
        "{}",
        run.output
    );
    let mut random = Vec::new();
    for i in 0..3 {
        let clone = line(&format!("clone{i} marker="));
        assert_eq!(value(clone, "marker="), "from-template", "{clone}");
        assert_eq!(value(clone, "own="), format!("clone-{i}"), "{clone}");
        let bytes = value(clone, "urandom=");
        assert_eq!(bytes.len(), 32, "{clone}");
        // The new VM generation ID reached the guest: its RNG was reseeded.
        assert_eq!(value(clone, "reseeded="), "1", "{clone}");
        random.push(bytes.to_string());
        println!("nested snapshot: {}", line(&format!("clone{i} running")));
    }
    // Clone 0, on its own tap in place of the template's, reaches L1 through it.
    let ping = line("clone0 ping-host");
    assert_eq!(value(ping, "replies="), "3", "{}", run.output);
    for counter in ["tx_frames=", "rx_frames="] {
        let n: u64 = value(ping, counter).parse().unwrap();
        assert!(n >= 3, "{ping}");
    }
    println!("nested snapshot: {ping}");
    random.sort();
    random.dedup();
    assert_eq!(
        random.len(),
        3,
        "clones read the same random bytes:\n{}",
        run.output
    );
    println!("nested snapshot: {}", line("created"));
}
