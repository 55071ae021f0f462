//! The set-up request: mounts and a host name the agent applies before a command
//! runs in them (a container's root file system and its mounts).

use crate::codec::{check_len, check_str, check_value, FrameError, Reader, Writer};
use crate::limits::{MAX_ARG_LEN, MAX_HOSTNAME_LEN, MAX_MOUNTS, MAX_PATH_LEN};

/// One `mount(2)` the agent makes, in order. The target directory is created
/// (with its parents) when missing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MountRequest {
    /// The source: a device, a virtio-fs tag, a directory for a bind mount, or a
    /// file system's name (`proc`, `tmpfs`...).
    pub source: String,
    /// Where to mount it: an absolute path in the guest.
    pub target: String,
    /// The file system type (`virtiofs`, `proc`, `tmpfs`...); empty for a bind mount
    /// or a remount.
    pub fstype: String,
    /// `MS_*` flags, as the guest kernel takes them.
    pub flags: u64,
    /// File-system-specific options (`mode=755,size=65536k`...).
    pub data: String,
}

/// See [`crate::Kind::Setup`]: the mounts, in order, then the host name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SetupRequest {
    /// Mounts to make, in order (at most [`MAX_MOUNTS`]).
    pub mounts: Vec<MountRequest>,
    /// The guest's new host name, when one is given.
    pub hostname: Option<String>,
}

impl SetupRequest {
    /// Checks every limit and value rule, as the decoder does.
    pub fn validate(&self) -> Result<(), FrameError> {
        check_len("setup.mounts", self.mounts.len(), MAX_MOUNTS)?;
        for m in &self.mounts {
            m.validate()?;
        }
        if let Some(h) = &self.hostname {
            check_str("setup.hostname", h, MAX_HOSTNAME_LEN)?;
        }
        Ok(())
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> Result<(), FrameError> {
        self.validate()?;
        w.u32(self.mounts.len() as u32);
        for m in &self.mounts {
            w.str(&m.source);
            w.str(&m.target);
            w.str(&m.fstype);
            w.u64(m.flags);
            w.str(&m.data);
        }
        w.bool(self.hostname.is_some());
        if let Some(h) = &self.hostname {
            w.str(h);
        }
        Ok(())
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, FrameError> {
        let n = r.count("setup.mounts", MAX_MOUNTS)?;
        let mut mounts = Vec::with_capacity(n);
        for _ in 0..n {
            let m = MountRequest {
                source: r.str("setup.mounts[].source", MAX_PATH_LEN)?,
                target: r.str("setup.mounts[].target", MAX_PATH_LEN)?,
                fstype: r.str("setup.mounts[].fstype", MAX_PATH_LEN)?,
                flags: r.u64("setup.mounts[].flags")?,
                data: r.str("setup.mounts[].data", MAX_ARG_LEN)?,
            };
            m.validate()?;
            mounts.push(m);
        }
        let hostname = match r.bool("setup.hostname?")? {
            true => Some(r.str("setup.hostname", MAX_HOSTNAME_LEN)?),
            false => None,
        };
        Ok(Self { mounts, hostname })
    }
}

impl MountRequest {
    fn validate(&self) -> Result<(), FrameError> {
        check_str("setup.mounts[].source", &self.source, MAX_PATH_LEN)?;
        check_str("setup.mounts[].target", &self.target, MAX_PATH_LEN)?;
        check_value(
            "setup.mounts[].target",
            self.target.starts_with('/'),
            self.target.len() as i64,
        )?;
        check_str("setup.mounts[].fstype", &self.fstype, MAX_PATH_LEN)?;
        check_str("setup.mounts[].data", &self.data, MAX_ARG_LEN)
    }
}
