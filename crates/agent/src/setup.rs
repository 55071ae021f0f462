//! Set-up connections: the mounts a container needs (its root over virtio-fs, /proc,
//! tmpfs, bind mounts...) made in order, then the host name. The host is trusted to
//! ask; this only refuses what would be ambiguous (a target with `..`).

use crate::conn::{io_code, linger_and_close, FrameWriter};
use agent_proto::{ErrorCode, Frame, MountRequest, SetupRequest};
use std::ffi::CString;
use std::io;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Component, Path};

/// Serves a set-up request: `Ok` after every mount and the host name, else the first
/// failure (mounts made before it stay).
pub fn run(stream: UnixStream, writer: FrameWriter, req: SetupRequest) {
    match apply(&req) {
        Ok(()) => {
            let _ = writer.send(&Frame::Ok);
            let _ = stream.shutdown(Shutdown::Write);
        }
        Err((code, msg)) => {
            log::warn!("set-up: {msg}");
            writer.error(code, msg);
            linger_and_close(stream);
        }
    }
}

fn apply(req: &SetupRequest) -> Result<(), (ErrorCode, String)> {
    for m in &req.mounts {
        mount(m).map_err(|e| {
            (
                io_code(&e),
                format!(
                    "mounting {} ({}) on {}: {e}",
                    m.source,
                    if m.fstype.is_empty() {
                        "bind"
                    } else {
                        &m.fstype
                    },
                    m.target
                ),
            )
        })?;
    }
    if let Some(name) = &req.hostname {
        // SAFETY: the pointer and length describe `name`'s bytes, read only.
        if unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) } != 0 {
            let e = io::Error::last_os_error();
            return Err((io_code(&e), format!("setting the host name {name:?}: {e}")));
        }
    }
    Ok(())
}

fn c(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn mount(m: &MountRequest) -> io::Result<()> {
    let target = Path::new(&m.target);
    if target.components().any(|c| c == Component::ParentDir) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the target holds '..'",
        ));
    }
    // A bind mount of a file needs a file as its target; everything else a directory.
    let source_is_file =
        m.flags & libc::MS_BIND != 0 && std::fs::metadata(&m.source).is_ok_and(|md| !md.is_dir());
    if source_is_file {
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if !target.exists() {
            std::fs::File::create(target)?;
        }
    } else {
        std::fs::create_dir_all(target)?;
    }
    let (source, target_c, fstype, data) =
        (c(&m.source)?, c(&m.target)?, c(&m.fstype)?, c(&m.data)?);
    let fstype_ptr = match m.fstype.is_empty() {
        true => std::ptr::null(),
        false => fstype.as_ptr(),
    };
    let data_ptr = match m.data.is_empty() {
        true => std::ptr::null(),
        false => data.as_ptr().cast(),
    };
    // Read-only bind mounts need a remount: the kernel ignores MS_RDONLY on MS_BIND.
    let readonly_bind = m.flags & libc::MS_BIND != 0 && m.flags & libc::MS_RDONLY != 0;
    let flags = m.flags as libc::c_ulong;
    let passes: &[libc::c_ulong] = match readonly_bind {
        true => &[flags, flags | libc::MS_REMOUNT],
        false => &[flags],
    };
    for &flags in passes {
        // SAFETY: every pointer is a NUL-terminated string that outlives the call, or
        // null.
        let r = unsafe {
            libc::mount(
                source.as_ptr(),
                target_c.as_ptr(),
                fstype_ptr,
                flags,
                data_ptr,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
