//! The runtime's state directory (`--root`), as runc keeps one: a directory per
//! container holding its record, so that `create`, `start`, `state`, `kill` and `delete`
//! can each be a process of their own. A record is written to a temporary file and
//! renamed into place, so a reader sees the old one or the new one, never half.

use crate::error::OciError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The runtime-spec version this runtime reports.
pub const OCI_VERSION: &str = "1.2.0";
/// Where state lives when `--root` is not given.
pub const DEFAULT_ROOT: &str = "/run/minivmm-oci";
/// Longest container ID.
pub const ID_MAX: usize = 1024;
const RECORD: &str = "state.json";

/// A container's status (runtime spec, "State").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// `create` is under way.
    Creating,
    /// Created; the process waits for `start`.
    Created,
    /// The process runs.
    Running,
    /// The process has exited (or its VM is gone).
    Stopped,
}

impl Status {
    /// The status as the spec writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Created => "created",
            Self::Running => "running",
            Self::Stopped => "stopped",
        }
    }
}

/// What the runtime keeps of one container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Its ID.
    pub id: String,
    /// Its status when last written ([`Record::refresh`] corrects a stale one).
    pub status: Status,
    /// The process the shim waits on: the VMM running the container's VM.
    pub pid: Option<i32>,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The spec's annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The VM's control API socket.
    pub api_socket: Option<PathBuf>,
    /// The VM's vsock socket (the guest agent).
    pub vsock_socket: Option<PathBuf>,
}

impl Record {
    /// A record for a container being created.
    pub fn new(id: &str, bundle: &Path) -> Self {
        Self {
            id: id.to_string(),
            status: Status::Creating,
            pid: None,
            bundle: bundle.to_path_buf(),
            annotations: BTreeMap::new(),
            api_socket: None,
            vsock_socket: None,
        }
    }

    /// Marks a created or running container whose VMM process is gone as stopped.
    pub fn refresh(&mut self) {
        let live = matches!(self.status, Status::Created | Status::Running);
        if live && !self.pid.is_some_and(process_alive) {
            self.status = Status::Stopped;
        }
    }

    /// The state as `state` prints it (runtime spec: ociVersion, id, status, pid,
    /// bundle, annotations).
    pub fn oci_state(&self) -> serde_json::Value {
        let mut state = serde_json::json!({
            "ociVersion": OCI_VERSION,
            "id": self.id,
            "status": self.status.as_str(),
            "bundle": self.bundle,
            "annotations": self.annotations,
        });
        if let (Some(pid), true) = (self.pid, self.status != Status::Stopped) {
            state["pid"] = pid.into();
        }
        state
    }
}

/// Whether process `pid` exists and has not exited (a zombie waiting for the shim
/// to reap it has stopped).
pub fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// Checks a container ID as runc does: 1 to [`ID_MAX`] of letters, digits, `_+-.`,
/// not `.` or `..`.
pub fn check_id(id: &str) -> Result<(), OciError> {
    let ok = !id.is_empty()
        && id.len() <= ID_MAX
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(OciError::BadId(id.to_string()))
    }
}

/// The state directory.
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// The state directory at `root`, created (0700) if missing.
    pub fn open(root: &Path) -> Result<Self, OciError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|e| OciError::State(root.to_path_buf(), e.to_string()))?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// The directory of container `id` (its record, its sockets).
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Claims `record.id` (refused if in use) and writes the record.
    pub fn create(&self, record: &Record) -> Result<(), OciError> {
        check_id(&record.id)?;
        let dir = self.dir(&record.id);
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(OciError::Exists(record.id.clone()))
            }
            Err(e) => return Err(OciError::State(dir, e.to_string())),
        }
        self.save(record)
    }

    /// Writes `record` in place of the container's last one.
    pub fn save(&self, record: &Record) -> Result<(), OciError> {
        let dir = self.dir(&record.id);
        let path = dir.join(RECORD);
        let tmp = dir.join(format!(".{RECORD}.{}", std::process::id()));
        let err = |p: &Path, e: std::io::Error| OciError::State(p.to_path_buf(), e.to_string());
        let text = serde_json::to_vec_pretty(record)
            .map_err(|e| OciError::State(path.clone(), e.to_string()))?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| err(&tmp, e))?;
        std::io::Write::write_all(&mut file, &text).map_err(|e| err(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| err(&path, e))
    }

    /// The record of `id`, its status refreshed.
    pub fn load(&self, id: &str) -> Result<Record, OciError> {
        check_id(id)?;
        let path = self.dir(id).join(RECORD);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(OciError::NotFound(id.to_string()))
            }
            Err(e) => return Err(OciError::State(path, e.to_string())),
        };
        let mut record: Record = serde_json::from_slice(&text)
            .map_err(|e| OciError::State(path.clone(), e.to_string()))?;
        record.refresh();
        Ok(record)
    }

    /// Every container's ID.
    pub fn ids(&self) -> Result<Vec<String>, OciError> {
        let entries = std::fs::read_dir(&self.root)
            .map_err(|e| OciError::State(self.root.clone(), e.to_string()))?;
        let mut ids: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().join(RECORD).is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Removes the container's directory and everything in it.
    pub fn remove(&self, id: &str) -> Result<(), OciError> {
        check_id(id)?;
        let dir = self.dir(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(OciError::NotFound(id.to_string()))
            }
            Err(e) => Err(OciError::State(dir, e.to_string())),
        }
    }
}
