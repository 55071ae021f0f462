//! A container plan turned into what the guest agent is asked: the shares (the root
//! and one per bind mount), the set-up request (mounts under the container's root in
//! the guest, the host name) and the exec request of the container's process.

use crate::bundle::{ContainerPlan, MountPlan};
use std::path::{Path, PathBuf};
use vmm::sandbox::{ExecRequest, MountRequest, SetupRequest};

/// Where the container's root is mounted in the guest (the process runs with it
/// moved onto `/`).
pub const GUEST_ROOT: &str = "/container";
/// The virtio-fs tag of the container's root.
pub const ROOT_TAG: &str = "rootfs";
/// Device nodes of the guest bound into a container's `/dev` when it mounts a tmpfs
/// there (runc creates the same set).
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// A host directory shared into the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Share {
    /// Its virtio-fs tag.
    pub tag: String,
    /// The host directory.
    pub path: PathBuf,
    /// Shared read-only.
    pub read_only: bool,
}

/// What the guest is asked for one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestPlan {
    /// The shares, the root first.
    pub shares: Vec<Share>,
    /// The mounts and host name.
    pub setup: SetupRequest,
    /// The container's process.
    pub exec: ExecRequest,
}

/// The guest side of `plan`.
pub fn guest_plan(plan: &ContainerPlan) -> GuestPlan {
    let mut shares = vec![Share {
        tag: ROOT_TAG.into(),
        path: plan.rootfs.clone(),
        read_only: plan.rootfs_read_only,
    }];
    let mut mounts = vec![MountRequest {
        source: ROOT_TAG.into(),
        target: GUEST_ROOT.into(),
        fstype: "virtiofs".into(),
        flags: if plan.rootfs_read_only {
            libc::MS_RDONLY
        } else {
            0
        },
        data: String::new(),
    }];
    for m in &plan.mounts {
        match m {
            MountPlan::Guest {
                destination,
                fstype,
                source,
                options,
            } => {
                let (flags, data) = mount_options(options);
                // A cgroup v1 mount cannot be made without naming controllers; the
                // guest offers the unified hierarchy at the same place instead.
                let fstype = match fstype.as_str() {
                    "cgroup" => "cgroup2",
                    other => other,
                };
                let target = in_root(destination);
                mounts.push(MountRequest {
                    source: source.clone(),
                    target: target.clone(),
                    fstype: fstype.into(),
                    flags: flags & !(libc::MS_BIND | libc::MS_REC),
                    data: if fstype == "cgroup2" {
                        String::new()
                    } else {
                        data
                    },
                });
                if fstype == "tmpfs" && destination == Path::new("/dev") {
                    mounts.extend(dev_nodes(&target));
                }
            }
            MountPlan::Share {
                destination,
                source,
                read_only,
            } => {
                let tag = format!("oci{}", shares.len());
                shares.push(Share {
                    tag: tag.clone(),
                    path: source.clone(),
                    read_only: *read_only,
                });
                mounts.push(MountRequest {
                    source: tag,
                    target: in_root(destination),
                    fstype: "virtiofs".into(),
                    flags: if *read_only { libc::MS_RDONLY } else { 0 },
                    data: String::new(),
                });
            }
        }
    }
    let p = &plan.process;
    let mut exec = ExecRequest::new(p.args.clone())
        .cwd(p.cwd.to_string_lossy())
        .root(GUEST_ROOT)
        .user(p.uid, p.gid)
        .groups(p.additional_gids.clone())
        .stdin(true);
    for kv in &p.env {
        if let Some((k, v)) = kv.split_once('=') {
            exec = exec.env(k, v);
        }
    }
    if p.terminal {
        exec = exec.tty(24, 80);
    }
    GuestPlan {
        shares,
        setup: SetupRequest {
            mounts,
            hostname: plan.hostname.clone(),
        },
        exec,
    }
}

/// `destination` (absolute, in the container) as a path in the guest.
fn in_root(destination: &Path) -> String {
    let rel = destination.to_string_lossy();
    let rel = rel.trim_start_matches('/');
    match rel.is_empty() {
        true => GUEST_ROOT.to_string(),
        false => format!("{GUEST_ROOT}/{rel}"),
    }
}

/// Bind mounts of the guest's device nodes into a container's fresh `/dev`.
fn dev_nodes(dev: &str) -> Vec<MountRequest> {
    let bind = |source: String, target: String| MountRequest {
        source,
        target,
        fstype: String::new(),
        flags: libc::MS_BIND,
        data: String::new(),
    };
    DEVICES
        .iter()
        .map(|d| bind(format!("/dev/{d}"), format!("{dev}/{d}")))
        .collect()
}

/// An OCI mount's options as mount(2) flags and the file-system data string.
pub fn mount_options(options: &[String]) -> (u64, String) {
    let mut flags: u64 = 0;
    let mut data = Vec::new();
    for o in options {
        let (set, clear): (u64, u64) = match o.as_str() {
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "nosuid" => (libc::MS_NOSUID, 0),
            "suid" => (0, libc::MS_NOSUID),
            "nodev" => (libc::MS_NODEV, 0),
            "dev" => (0, libc::MS_NODEV),
            "noexec" => (libc::MS_NOEXEC, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "async" => (0, libc::MS_SYNCHRONOUS),
            "dirsync" => (libc::MS_DIRSYNC, 0),
            "noatime" => (libc::MS_NOATIME, 0),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "relatime" => (libc::MS_RELATIME, 0),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "bind" => (libc::MS_BIND, 0),
            "rbind" => (libc::MS_BIND | libc::MS_REC, 0),
            // Propagation is per mount in runc and means nothing inside a guest of
            // one container; "defaults" is no option at all.
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" | "defaults" => (0, 0),
            other => {
                data.push(other.to_string());
                (0, 0)
            }
        };
        flags = (flags | set) & !clear;
    }
    (flags, data.join(","))
}
