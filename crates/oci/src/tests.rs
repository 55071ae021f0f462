//! Bundles good and bad, and the state directory.

use super::bundle::{plan, DEFAULT_MEM_MIB, GUEST_OVERHEAD_MIB};
use super::*;
use std::path::{Path, PathBuf};

const HOST: HostLimits = HostLimits {
    ram_bytes: 8 << 30,
    cpus: 4,
};

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("minivmm-oci-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        std::fs::create_dir_all(dir.join("data")).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A config.json like `runc spec` writes, with `edit` applied to its JSON.
fn bundle(
    s: &Scratch,
    edit: impl FnOnce(&mut serde_json::Value),
) -> Result<ContainerPlan, OciError> {
    let mut config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 1000, "gid": 100, "additionalGids": [10]},
            "args": ["sh", "-c", "echo hi"],
            "env": ["PATH=/usr/bin:/bin", "TERM=xterm"],
            "cwd": "/work"
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "box",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
            {"destination": "/data", "type": "bind", "source": "data", "options": ["rbind", "ro"]}
        ],
        "linux": {
            "resources": {"memory": {"limit": 134217728}, "cpu": {"quota": 150000, "period": 100000}},
            "namespaces": [{"type": "pid"}, {"type": "network", "path": "/proc/self/ns/net"}]
        }
    });
    edit(&mut config);
    std::fs::write(s.0.join("config.json"), config.to_string()).unwrap();
    load(&s.0, HOST)
}

/// A change to a config.json.
type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;

fn field_error(r: Result<ContainerPlan, OciError>) -> String {
    let e = r.unwrap_err();
    assert!(
        matches!(e, OciError::Field(..) | OciError::Config(..)),
        "{e}"
    );
    e.to_string()
}

#[test]
fn a_runc_style_bundle_becomes_a_plan() {
    let s = Scratch::new("good");
    let p = bundle(&s, |_| {}).unwrap();
    let root = std::fs::canonicalize(&s.0).unwrap();
    assert_eq!(p.bundle, root);
    assert_eq!(p.rootfs, root.join("rootfs"));
    assert!(p.rootfs_read_only);
    assert_eq!(p.process.args, ["sh", "-c", "echo hi"]);
    assert_eq!((p.process.uid, p.process.gid), (1000, 100));
    assert_eq!(p.process.additional_gids, [10]);
    assert_eq!(p.process.cwd, Path::new("/work"));
    assert!(!p.process.terminal);
    assert_eq!(p.hostname.as_deref(), Some("box"));
    assert_eq!(p.mem_mib, 128 + GUEST_OVERHEAD_MIB);
    assert_eq!(p.vcpus, 2, "1.5 CPUs of quota round up");
    assert_eq!(p.network, Network::Join("/proc/self/ns/net".into()));
    assert_eq!(p.mounts.len(), 3);
    assert!(matches!(&p.mounts[0], MountPlan::Guest { fstype, .. } if fstype == "proc"));
    assert_eq!(
        p.mounts[2],
        MountPlan::Share {
            destination: "/data".into(),
            source: root.join("data"),
            read_only: true
        }
    );
}

#[test]
fn defaults_when_resources_and_namespaces_are_absent() {
    let s = Scratch::new("defaults");
    let p = bundle(&s, |c| {
        c["linux"] = serde_json::json!({});
        c.as_object_mut().unwrap().remove("mounts");
        c.as_object_mut().unwrap().remove("hostname");
    })
    .unwrap();
    assert_eq!((p.mem_mib, p.vcpus), (DEFAULT_MEM_MIB, 1));
    assert!(p.network == Network::None && p.hostname.is_none() && p.mounts.is_empty());
    // A quota of more CPUs than the host has gets the host's.
    let p = bundle(&s, |c| {
        c["linux"]["resources"]["cpu"]["quota"] = 10_000_000.into()
    })
    .unwrap();
    assert_eq!(p.vcpus, HOST.cpus);
}

#[test]
fn bad_bundles_are_refused_naming_the_field() {
    let s = Scratch::new("bad");
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("process");
            }),
            "process is missing",
        ),
        (
            Box::new(|c| c["process"]["args"] = serde_json::json!([])),
            "process.args must name a program",
        ),
        (
            Box::new(|c| c["process"]["cwd"] = "work".into()),
            "process.cwd work is not an absolute path",
        ),
        (
            Box::new(|c| c["process"]["env"] = serde_json::json!(["NOEQUALS"])),
            "'NOEQUALS' is not KEY=value",
        ),
        (
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("root");
            }),
            "root is missing",
        ),
        (
            Box::new(|c| c["root"]["path"] = "missing".into()),
            "root.path",
        ),
        (
            Box::new(|c| c["hostname"] = "a/b".into()),
            "hostname 'a/b' is not a hostname",
        ),
        (
            Box::new(|c| c["mounts"][0]["type"] = "nfs".into()),
            "type 'nfs' at /proc is not supported",
        ),
        (
            Box::new(|c| c["mounts"][2]["source"] = "/nonexistent/dir".into()),
            "bind mount source /nonexistent/dir is not a directory",
        ),
        (
            Box::new(|c| c["mounts"][1]["destination"] = "dev".into()),
            "destination dev is not absolute",
        ),
        (
            Box::new(|c| c["linux"]["resources"]["memory"]["limit"] = 4096.into()),
            "4096 bytes is below the minimum",
        ),
        (
            Box::new(|c| c["linux"]["resources"]["memory"]["limit"] = (1i64 << 40).into()),
            "more than this host's memory",
        ),
        (
            Box::new(|c| c["linux"]["resources"]["cpu"]["quota"] = 0.into()),
            "quota 0 over period 100000",
        ),
        (
            Box::new(|c| c["linux"]["resources"]["cpu"]["period"] = 0.into()),
            "is not a CPU share",
        ),
        (
            Box::new(|c| c["linux"]["namespaces"][1]["path"] = "/nonexistent/ns".into()),
            "network namespace /nonexistent/ns does not exist",
        ),
        (
            Box::new(|c| c["process"] = "not an object".into()),
            "config",
        ),
    ];
    for (edit, needle) in cases {
        let msg = field_error(bundle(&s, edit));
        assert!(msg.contains(needle), "'{msg}' lacks '{needle}'");
    }
    std::fs::write(s.0.join("config.json"), "{ broken").unwrap();
    assert!(matches!(load(&s.0, HOST), Err(OciError::Config(..))));
    std::fs::remove_file(s.0.join("config.json")).unwrap();
    assert!(matches!(load(&s.0, HOST), Err(OciError::Config(..))));
    assert!(matches!(
        load(Path::new("/nonexistent/bundle"), HOST),
        Err(OciError::Bundle(..))
    ));
    let spec: oci_spec::runtime::Spec = serde_json::from_str("{}").unwrap();
    assert!(plan(&s.0, &spec, HOST).is_err());
}

#[test]
fn ids_follow_runc_rules() {
    for good in ["a", "web-1", "x_y+z.2", &"a".repeat(state::ID_MAX)] {
        state::check_id(good).unwrap();
    }
    for bad in [
        "",
        ".",
        "..",
        "a/b",
        "a b",
        "ü",
        &"a".repeat(state::ID_MAX + 1),
    ] {
        assert!(
            matches!(state::check_id(bad), Err(OciError::BadId(_))),
            "{bad}"
        );
    }
}

#[test]
fn the_state_directory_keeps_records_across_processes() {
    let s = Scratch::new("state");
    let dir = StateDir::open(&s.0.join("root")).unwrap();
    let mut r = Record::new("c1", Path::new("/b"));
    dir.create(&r).unwrap();
    assert!(matches!(dir.create(&r), Err(OciError::Exists(_))));
    // A created container whose VMM runs (this test process stands for it).
    r.status = Status::Created;
    r.pid = Some(std::process::id() as i32);
    r.annotations.insert("k".into(), "v".into());
    dir.save(&r).unwrap();
    let back = StateDir::open(&s.0.join("root"))
        .unwrap()
        .load("c1")
        .unwrap();
    assert_eq!(back, r);
    let state = back.oci_state();
    assert_eq!(state["status"], "created");
    assert_eq!(state["pid"], std::process::id());
    assert_eq!(state["ociVersion"], state::OCI_VERSION);
    assert_eq!(state["annotations"]["k"], "v");
    assert_eq!(dir.ids().unwrap(), ["c1"]);
    // Its VMM gone: stopped, and no pid reported.
    let mut gone = r.clone();
    gone.pid = Some(i32::MAX);
    dir.save(&gone).unwrap();
    let back = dir.load("c1").unwrap();
    assert_eq!(back.status, Status::Stopped);
    assert!(back.oci_state().get("pid").is_none());
    dir.remove("c1").unwrap();
    assert!(matches!(dir.load("c1"), Err(OciError::NotFound(_))));
    assert!(matches!(dir.remove("c1"), Err(OciError::NotFound(_))));
    assert!(matches!(dir.load("../x"), Err(OciError::BadId(_))));
    assert!(dir.ids().unwrap().is_empty());
}

#[test]
fn the_guest_is_asked_for_the_root_mounts_devices_and_process() {
    let s = Scratch::new("guest");
    let p = bundle(&s, |_| {}).unwrap();
    let g = guest::guest_plan(&p);
    // The root share first (read-only as root.readonly asks), then one per bind mount.
    assert_eq!(g.shares.len(), 2);
    assert_eq!(
        (g.shares[0].tag.as_str(), g.shares[0].read_only),
        (guest::ROOT_TAG, true)
    );
    assert_eq!(g.shares[1].path, s.0.join("data"));
    assert!(g.shares[1].read_only);
    let m = &g.setup.mounts;
    assert_eq!(
        (m[0].source.as_str(), m[0].target.as_str()),
        ("rootfs", "/container")
    );
    assert_eq!(
        (m[0].fstype.as_str(), m[0].flags),
        ("virtiofs", libc::MS_RDONLY)
    );
    assert_eq!(
        (m[1].target.as_str(), m[1].fstype.as_str()),
        ("/container/proc", "proc")
    );
    assert_eq!(m[2].target, "/container/dev");
    assert_eq!(
        (m[2].flags, m[2].data.as_str()),
        (libc::MS_NOSUID, "mode=755")
    );
    // A tmpfs /dev gets the guest's device nodes bound in.
    let nodes: Vec<&str> = m[3..9].iter().map(|n| n.target.as_str()).collect();
    assert_eq!(
        nodes,
        ["null", "zero", "full", "random", "urandom", "tty"].map(|d| format!("/container/dev/{d}"))
    );
    assert!(m[3..9]
        .iter()
        .all(|n| n.flags == libc::MS_BIND && n.source.starts_with("/dev/")));
    assert_eq!(
        (m[9].source.as_str(), m[9].target.as_str()),
        ("oci1", "/container/data")
    );
    assert_eq!(m[9].flags, libc::MS_RDONLY);
    assert_eq!(g.setup.hostname.as_deref(), Some("box"));
    let e = &g.exec;
    assert_eq!(e.argv, ["sh", "-c", "echo hi"]);
    assert_eq!(e.root.as_deref(), Some("/container"));
    assert_eq!(
        (e.uid, e.gid, e.groups.clone()),
        (Some(1000), Some(100), vec![10])
    );
    assert_eq!(e.cwd.as_deref(), Some("/work"));
    assert!(e.env.contains(&("TERM".into(), "xterm".into())));
    assert!(e.stdin && e.tty.is_none());
}

#[test]
fn mount_options_become_flags_and_data() {
    let opts =
        |o: &[&str]| guest::mount_options(&o.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(
        opts(&["ro", "nosuid", "nodev", "noexec"]),
        (
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            String::new()
        )
    );
    // Later options win; propagation and "defaults" are no flags; the rest is data.
    assert_eq!(
        opts(&["ro", "rw", "rprivate", "defaults", "mode=1777", "size=64k"]),
        (0, "mode=1777,size=64k".into())
    );
    assert_eq!(opts(&["rbind"]).0, libc::MS_BIND | libc::MS_REC);
}

#[test]
fn signals_by_number_and_name() {
    use signals::parse_signal;
    for (text, sig) in [
        ("15", 15),
        ("TERM", 15),
        ("SIGTERM", 15),
        ("sigkill", 9),
        ("KILL", 9),
        ("64", 64),
        ("WINCH", 28),
    ] {
        assert_eq!(parse_signal(text).unwrap(), sig, "{text}");
    }
    for bad in ["0", "65", "-1", "SIGNOPE", ""] {
        assert!(
            matches!(parse_signal(bad), Err(OciError::BadSignal(_))),
            "{bad}"
        );
    }
    let forwarded = signals::forwarded();
    assert!(forwarded.contains(&libc::SIGTERM) && forwarded.contains(&libc::SIGWINCH));
    assert!(!forwarded.contains(&libc::SIGKILL) && !forwarded.contains(&libc::SIGSEGV));
}

#[test]
fn the_runtime_configuration_is_installed_and_read_back() {
    let s = Scratch::new("install");
    let (k, i) = (s.0.join("k"), s.0.join("i"));
    std::fs::write(&k, b"kernel").unwrap();
    std::fs::write(&i, b"initrd").unwrap();
    let dir = s.0.join("minivmm-oci.d");
    let path = runtime_config::install(&k, &i, None, &dir).unwrap();
    let c = runtime_config::RuntimeConfig::load(&path).unwrap();
    assert_eq!(
        (c.kernel, c.initrd),
        (dir.join("kernel"), dir.join("initrd"))
    );
    assert_eq!(c.cmdline, runtime_config::DEFAULT_CMDLINE);
    std::fs::write(&path, r#"{"kernel":"kernel","initrd":"missing"}"#).unwrap();
    let e = runtime_config::RuntimeConfig::load(&path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("initrd") && e.contains("is not a file"), "{e}");
    std::fs::write(&path, r#"{"kernel":"kernel","initrd":"initrd","extra":1}"#).unwrap();
    assert!(runtime_config::RuntimeConfig::load(&path).is_err());
    let empty = s.0.join("empty");
    std::fs::write(&empty, b"").unwrap();
    assert!(runtime_config::install(&empty, &i, None, &dir).is_err());
}
