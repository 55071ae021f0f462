//! A container bundle (`config.json` beside the root file system) read into what its
//! microVM needs: the process to run, the root directory to share, the guest mounts and
//! host directories to share, the hostname, the VM's size from `linux.resources`, and
//! the network namespace whose tap carries its traffic. The OCI types and their JSON
//! are oci-spec's; what minivmm can honour is checked here, each refusal a runc-style
//! message naming the field.

use crate::error::OciError;
use oci_spec::runtime::{LinuxNamespaceType, Mount, Spec};
use std::path::{Path, PathBuf};

/// Guest memory when `linux.resources.memory.limit` is not given.
pub const DEFAULT_MEM_MIB: u64 = 256;
/// Added to a container's memory limit for the guest kernel and agent.
pub const GUEST_OVERHEAD_MIB: u64 = 64;
/// The smallest memory limit taken (a container needs more than the guest's own).
pub const MIN_LIMIT_BYTES: i64 = 6 << 20;
/// vCPUs when `linux.resources.cpu` gives no quota.
pub const DEFAULT_VCPUS: u32 = 1;
/// Longest hostname (Linux's `HOST_NAME_MAX`).
pub const HOSTNAME_MAX: usize = 64;

/// File systems the guest kernel mounts itself, by type.
const GUEST_FS_TYPES: &[&str] = &[
    "proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "devtmpfs",
];

/// The process to start in the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessPlan {
    /// Program and arguments (`args`, at least one).
    pub args: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    /// Working directory inside the container (absolute).
    pub cwd: PathBuf,
    /// User and group IDs it runs as.
    pub uid: u32,
    /// Primary group.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
    /// With a terminal (`--console-socket` then receives its pty).
    pub terminal: bool,
}

/// One mount of the container, as the guest makes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountPlan {
    /// A file system of the guest kernel (`proc`, `tmpfs`, ...) at `destination`.
    Guest {
        /// Where, inside the container.
        destination: PathBuf,
        /// File-system type.
        fstype: String,
        /// Source text given to mount(2) (`proc`, `tmpfs`, ...).
        source: String,
        /// Mount options as given.
        options: Vec<String>,
    },
    /// A host directory, shared into the guest (virtio-fs) and mounted there.
    Share {
        /// Where, inside the container.
        destination: PathBuf,
        /// The host directory (absolute).
        source: PathBuf,
        /// Mounted read-only (`ro` among the options).
        read_only: bool,
    },
}

/// Everything a container's microVM is made from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerPlan {
    /// The bundle directory (absolute).
    pub bundle: PathBuf,
    /// The process.
    pub process: ProcessPlan,
    /// The root file system on the host (absolute), shared as the container's root.
    pub rootfs: PathBuf,
    /// The root is read-only (`root.readonly`).
    pub rootfs_read_only: bool,
    /// The container's hostname, if set.
    pub hostname: Option<String>,
    /// Mounts, in order.
    pub mounts: Vec<MountPlan>,
    /// Guest memory, MiB.
    pub mem_mib: u64,
    /// vCPUs.
    pub vcpus: u32,
    /// Where the container's network interface (a tap) lives.
    pub network: Network,
}

/// The container's network, from `linux.namespaces`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Network {
    /// No network namespace entry (the host's network, as `--net-host` asks): the
    /// VM gets no interface, since it cannot share the host's.
    None,
    /// A new network namespace: the VMM creates it and its tap in it; CNI (or the
    /// user) adds the container's interface to `/proc/PID/ns/net` after `create`.
    New,
    /// The network namespace at this path (Kubernetes' pod sandbox): the tap is
    /// created in it.
    Join(PathBuf),
}

/// What this host allows: memory and CPUs a VM may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostLimits {
    /// Host RAM, bytes.
    pub ram_bytes: u64,
    /// Host CPUs.
    pub cpus: u32,
}

impl HostLimits {
    /// This host's RAM and online CPUs.
    pub fn of_this_host() -> Self {
        // SAFETY: sysconf reads system values and touches no memory of ours.
        let (pages, page, cpus) = unsafe {
            (
                libc::sysconf(libc::_SC_PHYS_PAGES),
                libc::sysconf(libc::_SC_PAGESIZE),
                libc::sysconf(libc::_SC_NPROCESSORS_ONLN),
            )
        };
        Self {
            ram_bytes: (pages.max(0) as u64).saturating_mul(page.max(0) as u64),
            cpus: u32::try_from(cpus.max(1)).unwrap_or(1),
        }
    }
}

/// Reads `bundle/config.json` and checks it against what minivmm runs on `host`.
pub fn load(bundle: &Path, host: HostLimits) -> Result<ContainerPlan, OciError> {
    let bundle = std::fs::canonicalize(bundle)
        .map_err(|e| OciError::Bundle(bundle.to_path_buf(), e.to_string()))?;
    let config = bundle.join("config.json");
    let text = std::fs::read_to_string(&config)
        .map_err(|e| OciError::Config(config.clone(), e.to_string()))?;
    let spec: Spec =
        serde_json::from_str(&text).map_err(|e| OciError::Config(config.clone(), e.to_string()))?;
    plan(&bundle, &spec, host)
}

/// The plan for `spec` of the (absolute) bundle directory `bundle`.
pub fn plan(bundle: &Path, spec: &Spec, host: HostLimits) -> Result<ContainerPlan, OciError> {
    let process = process_plan(spec)?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| OciError::Field("root", "is missing".into()))?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    if !rootfs.is_dir() {
        return Err(OciError::Field(
            "root.path",
            format!("{} is not a directory", rootfs.display()),
        ));
    }
    let hostname = spec.hostname().clone().filter(|h| !h.is_empty());
    if let Some(h) = &hostname {
        if h.len() > HOSTNAME_MAX || h.contains(['/', '\0', ' ']) {
            return Err(OciError::Field(
                "hostname",
                format!("'{h}' is not a hostname"),
            ));
        }
    }
    let mounts = spec
        .mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|m| mount_plan(bundle, m))
        .collect::<Result<Vec<_>, _>>()?;
    let (mem_mib, vcpus) = sizes(spec, host)?;
    Ok(ContainerPlan {
        bundle: bundle.to_path_buf(),
        process,
        rootfs,
        rootfs_read_only: root.readonly().unwrap_or(false),
        hostname,
        mounts,
        mem_mib,
        vcpus,
        network: network(spec)?,
    })
}

fn process_plan(spec: &Spec) -> Result<ProcessPlan, OciError> {
    let p = spec
        .process()
        .as_ref()
        .ok_or_else(|| OciError::Field("process", "is missing".into()))?;
    let args = p.args().clone().unwrap_or_default();
    if args.is_empty() || args[0].is_empty() {
        return Err(OciError::Field(
            "process.args",
            "must name a program".into(),
        ));
    }
    if !p.cwd().is_absolute() {
        return Err(OciError::Field(
            "process.cwd",
            format!("{} is not an absolute path", p.cwd().display()),
        ));
    }
    let env = p.env().clone().unwrap_or_default();
    if let Some(bad) = env.iter().find(|e| !e.contains('=') || e.starts_with('=')) {
        return Err(OciError::Field(
            "process.env",
            format!("'{bad}' is not KEY=value"),
        ));
    }
    Ok(ProcessPlan {
        args,
        env,
        cwd: p.cwd().clone(),
        uid: p.user().uid(),
        gid: p.user().gid(),
        additional_gids: p.user().additional_gids().clone().unwrap_or_default(),
        terminal: p.terminal().unwrap_or(false),
    })
}

fn mount_plan(bundle: &Path, m: &Mount) -> Result<MountPlan, OciError> {
    let destination = m.destination().clone();
    if !destination.is_absolute() {
        return Err(OciError::Field(
            "mounts",
            format!("destination {} is not absolute", destination.display()),
        ));
    }
    let options = m.options().clone().unwrap_or_default();
    let fstype = m.typ().clone().unwrap_or_default();
    let bind = fstype == "bind" || options.iter().any(|o| o == "bind" || o == "rbind");
    if bind {
        let source = m.source().clone().ok_or_else(|| {
            OciError::Field(
                "mounts",
                format!("bind mount at {} has no source", destination.display()),
            )
        })?;
        let source = if source.is_absolute() {
            source
        } else {
            bundle.join(source)
        };
        if !source.is_dir() {
            return Err(OciError::Field(
                "mounts",
                format!(
                    "bind mount source {} is not a directory (only directories are shared)",
                    source.display()
                ),
            ));
        }
        return Ok(MountPlan::Share {
            destination,
            source,
            read_only: options.iter().any(|o| o == "ro"),
        });
    }
    if !GUEST_FS_TYPES.contains(&fstype.as_str()) {
        return Err(OciError::Field(
            "mounts",
            format!(
                "type '{fstype}' at {} is not supported (known: {}, bind)",
                destination.display(),
                GUEST_FS_TYPES.join(", ")
            ),
        ));
    }
    Ok(MountPlan::Guest {
        destination,
        source: m
            .source()
            .as_ref()
            .map(|s| s.display().to_string())
            .unwrap_or_else(|| fstype.clone()),
        fstype,
        options,
    })
}

/// Guest memory (MiB) and vCPUs from `linux.resources`.
fn sizes(spec: &Spec, host: HostLimits) -> Result<(u64, u32), OciError> {
    let resources = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
    let limit = resources
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit());
    let mem_mib = match limit {
        None | Some(-1) => DEFAULT_MEM_MIB,
        Some(l) if l < MIN_LIMIT_BYTES => {
            return Err(OciError::Field(
                "linux.resources.memory.limit",
                format!("{l} bytes is below the minimum of {MIN_LIMIT_BYTES}"),
            ))
        }
        Some(l) => {
            let mib = (l as u64).div_ceil(1 << 20) + GUEST_OVERHEAD_MIB;
            if mib.saturating_mul(1 << 20) > host.ram_bytes {
                return Err(OciError::Field(
                    "linux.resources.memory.limit",
                    format!("{l} bytes is more than this host's memory"),
                ));
            }
            mib
        }
    };
    let cpu = resources.and_then(|r| r.cpu().as_ref());
    let quota = cpu.and_then(|c| c.quota());
    let period = cpu.and_then(|c| c.period()).unwrap_or(100_000);
    let vcpus = match quota {
        None | Some(-1) => DEFAULT_VCPUS,
        Some(q) if q <= 0 || period == 0 => {
            return Err(OciError::Field(
                "linux.resources.cpu",
                format!("quota {q} over period {period} is not a CPU share"),
            ))
        }
        // A quota of more CPUs than the host has gets them all.
        Some(q) => {
            u32::try_from((q as u64).div_ceil(period).min(u64::from(host.cpus))).unwrap_or(1)
        }
    };
    Ok((mem_mib, vcpus.max(1)))
}

/// The network namespace the spec asks for.
fn network(spec: &Spec) -> Result<Network, OciError> {
    let namespaces = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref());
    let Some(ns) = namespaces
        .into_iter()
        .flatten()
        .find(|n| n.typ() == LinuxNamespaceType::Network)
    else {
        return Ok(Network::None);
    };
    match ns.path() {
        None => Ok(Network::New),
        Some(p) if p.exists() => Ok(Network::Join(p.clone())),
        Some(p) => Err(OciError::Field(
            "linux.namespaces",
            format!("network namespace {} does not exist", p.display()),
        )),
    }
}
