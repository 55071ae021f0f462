//! Set-up requests and commands run in a root of their own (what the OCI runtime
//! asks of the agent for a container), against an agent in private mount and UTS
//! namespaces on this host (the tests run as root, as the agent does in a guest).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test, as clippy.toml allows in unit tests

mod common;

use agent_client::{ClientError, ExecRequest, MountRequest, SetupRequest};
use common::Agent;

fn busybox() -> &'static str {
    "/bin/busybox"
}

/// A container image's tree: a static busybox, `sh` a relative link to it, a file.
fn image(dir: &std::path::Path) -> std::path::PathBuf {
    let img = dir.join("image");
    std::fs::create_dir_all(img.join("bin")).unwrap();
    std::fs::copy(busybox(), img.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", img.join("bin/sh")).unwrap();
    std::fs::write(img.join("marker"), "in the image\n").unwrap();
    img
}

fn mount(source: &str, target: &str, fstype: &str, flags: u64, data: &str) -> MountRequest {
    MountRequest {
        source: source.into(),
        target: target.into(),
        fstype: fstype.into(),
        flags,
        data: data.into(),
    }
}

#[test]
fn a_command_runs_in_its_root_with_the_set_up_mounts_host_name_and_user() {
    let agent = Agent::start_unshared(&["--mount", "--uts"]);
    let img = image(&agent.dir);
    let root = agent.dir.join("root");
    let r = root.to_str().unwrap();
    let bind = libc::MS_BIND | libc::MS_REC;
    let setup = SetupRequest {
        mounts: vec![
            mount(img.to_str().unwrap(), r, "", bind, ""),
            mount("proc", &format!("{r}/proc"), "proc", 0, ""),
            mount("tmpfs", &format!("{r}/run"), "tmpfs", 0, "mode=0755"),
            mount(
                "devpts",
                &format!("{r}/dev/pts"),
                "devpts",
                0,
                "newinstance,ptmxmode=0666,mode=620",
            ),
            mount(
                agent.dir.to_str().unwrap(),
                &format!("{r}/data"),
                "",
                bind | libc::MS_RDONLY,
                "",
            ),
        ],
        hostname: Some("ctr-test".into()),
    };
    let c = agent.client();
    c.setup(&setup).unwrap();
    let script = "cat /marker; hostname; test -e /proc/self/status && echo proc; \
                  grep -c ' /run tmpfs' /proc/mounts; touch /data/x || echo read-only; \
                  id -u; id -G; pwd; test -e /image || echo no-host-tree";
    let req = ExecRequest::new(["sh", "-c", script])
        .env("PATH", "/bin")
        .root(r)
        .cwd("/run")
        .user(1000, 1000)
        .groups(vec![1000, 20]);
    let out = c.exec(&req).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "in the image",
            "ctr-test",
            "proc",
            "1",
            "read-only",
            "1000",
            "1000 20",
            "/run",
            "no-host-tree"
        ],
        "{text}"
    );
    // The agent's own tree is unchanged: the move happened in the command's namespace.
    let out = c
        .exec(&ExecRequest::new([busybox(), "test", "-d", r]))
        .unwrap();
    assert!(out.status.success());
    // A terminal comes from the root's own devpts: the command can name it there.
    let tty = ExecRequest::new(["busybox", "tty"])
        .env("PATH", "/bin")
        .root(r)
        .tty(24, 80);
    let out = c.exec(&tty).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.trim(), "/dev/pts/0");
    // A program the root lacks is an error, not a lookup on the agent's side.
    let missing = ExecRequest::new(["busybox-not-there"]).root(r);
    assert!(matches!(c.exec(&missing), Err(ClientError::Remote { .. })));
}

#[test]
fn a_failed_mount_names_itself() {
    let agent = Agent::start_unshared(&["--mount", "--uts"]);
    let target = agent.dir.join("t");
    let setup = SetupRequest {
        mounts: vec![mount("none", target.to_str().unwrap(), "no-such-fs", 0, "")],
        hostname: None,
    };
    match agent.client().setup(&setup) {
        Err(ClientError::Remote { message, .. }) => {
            assert!(message.contains("no-such-fs"), "{message}");
            assert!(message.contains(target.to_str().unwrap()), "{message}");
        }
        other => panic!("expected a remote error, got {other:?}"),
    }
    let dotdot = SetupRequest {
        mounts: vec![mount("tmpfs", "/tmp/../etc", "tmpfs", 0, "")],
        hostname: None,
    };
    assert!(agent.client().setup(&dotdot).is_err());
}
