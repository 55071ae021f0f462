//! minivmm-oci's command line on this host, where a guest's user space cannot run:
//! bundles with bad config.json give one runc-style error line (and a JSON error line
//! in `--log`, which containerd's shim shows) and leave no state behind; the state,
//! kill, delete and start commands against records of every status; a create whose
//! guest never answers is undone (no VMM process, no state left). The lifecycle with
//! a guest runs under containerd in the nested test (tests/oci_nested.rs).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const OCI: &str = env!("CARGO_BIN_EXE_minivmm-oci");

struct Env {
    dir: PathBuf,
    root: PathBuf,
    config: PathBuf,
}

impl Env {
    /// A scratch state root, and a runtime configuration naming `kernel` (a dummy
    /// file unless given).
    fn new(name: &str, kernel: Option<&Path>, boot_timeout_s: u64) -> Env {
        let dir = scratch(name);
        let (k, i) = (dir.join("kernel"), dir.join("initrd"));
        match kernel {
            Some(real) => std::fs::copy(real, &k).map(|_| ()).unwrap(),
            None => std::fs::write(&k, b"not a kernel").unwrap(),
        }
        std::fs::write(&i, b"not an initramfs").unwrap();
        let config = dir.join("runtime.json");
        let text = serde_json::json!({"kernel": k, "initrd": i, "boot_timeout_s": boot_timeout_s});
        std::fs::write(&config, text.to_string()).unwrap();
        Env {
            root: dir.join("state"),
            config,
            dir,
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        let child = Command::new(OCI)
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .env("MINIVMM_OCI_CONFIG", &self.config)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (out, elapsed) = wait_with_deadline(child, Duration::from_secs(120));
        Run {
            status: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed,
        }
    }

    /// A bundle whose config.json is `config` (a rootfs directory beside it).
    fn bundle(&self, name: &str, config: &str) -> PathBuf {
        let b = self.dir.join(name);
        std::fs::create_dir_all(b.join("rootfs/bin")).unwrap();
        std::fs::write(b.join("config.json"), config).unwrap();
        b
    }

    /// The IDs with state under the root.
    fn containers(&self) -> Vec<String> {
        std::fs::read_dir(&self.root)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn write_record(&self, id: &str, status: &str, pid: Option<u32>) {
        let dir = self.root.join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let record = serde_json::json!({
            "id": id, "status": status, "pid": pid, "bundle": self.dir,
            "annotations": {"a": "b"}, "api_socket": null, "vsock_socket": null,
        });
        std::fs::write(dir.join("state.json"), record.to_string()).unwrap();
    }
}

/// One error line on stderr naming `needle`, no panic, a non-zero status.
fn one_error(run: &Run, needle: &str) {
    assert!(
        matches!(run.status, Some(c) if c != 0),
        "{:?} {}",
        run.status,
        run.stderr
    );
    let lines = run.stderr_lines();
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(lines[0].starts_with("minivmm-oci: error: "), "{}", lines[0]);
    assert!(
        lines[0].contains(needle),
        "'{}' does not name '{needle}'",
        lines[0]
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

const GOOD: &str = r#"{"ociVersion":"1.0.2","process":{"args":["/bin/sh"],"cwd":"/","user":{"uid":0,"gid":0}},"root":{"path":"rootfs"}}"#;

fn with(field: &str, value: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
    let patch: serde_json::Value = serde_json::from_str(value).unwrap();
    let mut at = &mut v;
    let parts: Vec<&str> = field.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        at = at
            .as_object_mut()
            .unwrap()
            .entry(*p)
            .or_insert(serde_json::json!({}));
    }
    at.as_object_mut()
        .unwrap()
        .insert(parts[parts.len() - 1].into(), patch);
    v.to_string()
}

#[test]
fn bad_bundles_give_runc_style_errors_and_leave_nothing() {
    let env = Env::new("oci-bad-bundles", None, 60);
    let no_config = env.dir.join("empty-bundle");
    std::fs::create_dir_all(&no_config).unwrap();
    let run = env.run(&["create", "--bundle", no_config.to_str().unwrap(), "c0"]);
    one_error(&run, "config.json: No such file");
    let cases: Vec<(String, &str)> = vec![
        ("{ not json".into(), "key must be a string"),
        (
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"}}"#.into(),
            "process is missing",
        ),
        (
            with("process.args", "[]"),
            "process.args must name a program",
        ),
        (
            with("process.cwd", r#""relative""#),
            "process.cwd relative is not an absolute path",
        ),
        (
            with("process.env", r#"["NOEQUALS"]"#),
            "'NOEQUALS' is not KEY=value",
        ),
        (
            with("root.path", r#""no-such-dir""#),
            "no-such-dir is not a directory",
        ),
        (
            with("hostname", r#""a b""#),
            "hostname 'a b' is not a hostname",
        ),
        (
            with(
                "linux.resources",
                r#"{"memory":{"limit":1152921504606846976}}"#,
            ),
            "more than this host's memory",
        ),
        (
            with("linux.resources", r#"{"memory":{"limit":4096}}"#),
            "below the minimum",
        ),
        (
            with("linux.resources", r#"{"cpu":{"quota":-5,"period":100000}}"#),
            "is not a CPU share",
        ),
        (
            with(
                "mounts",
                r#"[{"destination":"/x","type":"nfs","source":"srv:/"}]"#,
            ),
            "type 'nfs' at /x is not supported",
        ),
        (
            with(
                "mounts",
                r#"[{"destination":"/x","type":"bind","source":"/no/such","options":["rbind"]}]"#,
            ),
            "bind mount source /no/such is not a directory",
        ),
        (
            with(
                "linux.namespaces",
                r#"[{"type":"network","path":"/no/such/netns"}]"#,
            ),
            "network namespace /no/such/netns does not exist",
        ),
    ];
    let log = env.dir.join("log.json");
    for (i, (config, needle)) in cases.iter().enumerate() {
        let b = env.bundle(&format!("b{i}"), config);
        let run = env.run(&[
            "--log",
            log.to_str().unwrap(),
            "--log-format",
            "json",
            "create",
            "--bundle",
            b.to_str().unwrap(),
            "--pid-file",
            b.join("init.pid").to_str().unwrap(),
            &format!("c{i}"),
        ]);
        one_error(&run, needle);
        // The shim reads the last error line of --log: JSON with level and msg.
        let last = std::fs::read_to_string(&log).unwrap();
        let last: serde_json::Value = serde_json::from_str(last.lines().last().unwrap()).unwrap();
        assert_eq!(last["level"], "error");
        assert!(last["msg"].as_str().unwrap().contains(needle), "{last}");
        assert!(!b.join("init.pid").exists());
    }
    assert!(env.containers().is_empty(), "{:?}", env.containers());

    let good = env.bundle("good", GOOD);
    let g = good.to_str().unwrap();
    one_error(
        &env.run(&["create", "--bundle", g, "../escape"]),
        "invalid container id",
    );
    // The runtime's own configuration missing: what to run says how to install it.
    let run = Command::new(OCI)
        .args([
            "--root",
            env.root.to_str().unwrap(),
            "create",
            "--bundle",
            g,
            "c-noconf",
        ])
        .env("MINIVMM_OCI_CONFIG", env.dir.join("absent.json"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("minivmm-oci install"), "{stderr}");
    // A kernel that is not one: the VMM process fails, create reports why, undoes all.
    let run = env.run(&["create", "--bundle", g, "c-badkernel"]);
    one_error(&run, "container VM:");
    assert!(env.containers().is_empty(), "{:?}", env.containers());
}

#[test]
fn commands_follow_each_records_status() {
    let env = Env::new("oci-records", None, 60);
    for cmd in [
        &["state", "ghost"][..],
        &["kill", "ghost", "KILL"],
        &["delete", "ghost"],
        &["start", "ghost"],
    ] {
        one_error(&env.run(cmd), "container 'ghost' does not exist");
    }
    // containerd's cleanup deletes twice: the forced second one succeeds.
    assert_eq!(env.run(&["delete", "--force", "ghost"]).status, Some(0));
    one_error(
        &env.run(&["kill", "ghost", "SIGBOGUS"]),
        "unknown signal 'SIGBOGUS'",
    );

    env.write_record("done", "stopped", None);
    let state: serde_json::Value =
        serde_json::from_str(&env.run(&["state", "done"]).stdout).unwrap();
    assert_eq!(state["status"], "stopped");
    assert_eq!(state["id"], "done");
    assert_eq!(state["annotations"]["a"], "b");
    assert!(state.get("pid").is_none(), "{state}");
    one_error(&env.run(&["kill", "done", "TERM"]), "not running");
    one_error(&env.run(&["start", "done"]), "cannot start it");
    one_error(
        &env.run(&[
            "create",
            "--bundle",
            env.bundle("b", GOOD).to_str().unwrap(),
            "done",
        ]),
        "already exists",
    );
    assert_eq!(env.run(&["delete", "done"]).status, Some(0));
    assert!(env.containers().is_empty());

    // A "running" container stands for a live process: state shows its pid, kill
    // signals it, delete refuses without --force and kills it with --force.
    let mut proc = Command::new("sleep").arg("600").spawn().unwrap();
    env.write_record("live", "running", Some(proc.id()));
    let state: serde_json::Value =
        serde_json::from_str(&env.run(&["state", "live"]).stdout).unwrap();
    assert_eq!(state["status"], "running");
    assert_eq!(state["pid"], proc.id());
    one_error(&env.run(&["delete", "live"]), "is running");
    assert_eq!(env.run(&["kill", "live", "15"]).status, Some(0));
    let status = proc.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(15)
    );
    // Its process gone (reaped), the record reads as stopped.
    let state: serde_json::Value =
        serde_json::from_str(&env.run(&["state", "live"]).stdout).unwrap();
    assert_eq!(state["status"], "stopped");
    assert_eq!(env.run(&["delete", "live"]).status, Some(0));
    let mut proc = Command::new("sleep").arg("600").spawn().unwrap();
    env.write_record("live2", "running", Some(proc.id()));
    let pid = proc.id();
    let waiter = std::thread::spawn(move || proc.wait().unwrap());
    assert_eq!(env.run(&["delete", "--force", "live2"]).status, Some(0));
    let status = waiter.join().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "pid {pid}"
    );
    assert!(env.containers().is_empty());

    let features: serde_json::Value = serde_json::from_str(&env.run(&["features"]).stdout).unwrap();
    assert_eq!(features["ociVersionMax"], "1.2.0");
    assert!(features["mountOptions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o == "rbind"));
}

/// A real VM (the resources/ kernel on this host's KVM) whose agent never answers in
/// time: create fails naming the wait, and kills the VMM process it started.
#[test]
fn a_create_whose_guest_never_answers_is_undone() {
    let test = "a_create_whose_guest_never_answers_is_undone";
    let Some(kernel) = linux_guest(test) else {
        return;
    };
    let env = Env::new("oci-no-agent", Some(&kernel.join("vmlinux")), 2);
    let b = env.bundle("b", GOOD);
    let pid_file = b.join("init.pid");
    let run = env.run(&[
        "create",
        "--bundle",
        b.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        "slow",
    ]);
    one_error(&run, "waiting for the guest agent");
    assert!(env.containers().is_empty(), "{:?}", env.containers());
    assert!(!pid_file.exists());
    // No VMM process of this root is left (the keeper names the root on its command line).
    let root = env.root.to_str().unwrap().to_string();
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&root) && c.contains("keeper"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
