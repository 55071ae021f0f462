//! Write-file and read-file connections. Writes go to a temporary file in the target's
//! directory, are synced, get their mode and are renamed over the target, so a reader
//! sees the old file or the new one, never a part. Reads stream the file in data
//! frames. Neither holds more than one frame of the file in memory.

use crate::conn::{chain, io_code, linger_and_close, FrameWriter};
use crate::server::reject;
use agent_proto::limits::MAX_FILE_SIZE;
use agent_proto::{ErrorCode, Frame, Kind, ReadError, WriteFileRequest};
use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes of a file read at once for a data frame.
const CHUNK: usize = 64 * 1024;

/// Why a transfer stopped.
enum Stop {
    /// Answer this error, then close.
    Answer(ErrorCode, String),
    /// The host went away or broke a frame (already answered): just close.
    HostGone,
}

fn io_stop(what: &str, path: &Path, e: &io::Error) -> Stop {
    Stop::Answer(io_code(e), format!("{what} {}: {e}", path.display()))
}

/// The target and its temporary sibling, or why the path is unusable.
fn paths(path: &str) -> Result<(PathBuf, PathBuf), Stop> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let target = PathBuf::from(path);
    let invalid = |why: &str| Stop::Answer(ErrorCode::InvalidRequest, format!("{path}: {why}"));
    if !target.is_absolute() {
        return Err(invalid("not an absolute path"));
    }
    let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
        return Err(invalid("names no file"));
    };
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(
        ".{}.agent-tmp.{}.{n}",
        name.to_string_lossy(),
        std::process::id()
    ));
    Ok((target, tmp))
}

/// Serves a write-file request: the data frames follow on `stream`.
pub fn write_file(mut stream: UnixStream, writer: FrameWriter, req: WriteFileRequest) {
    match receive(&mut stream, &writer, &req) {
        Ok(()) => {
            let _ = writer.send(&Frame::Ok);
            let _ = stream.shutdown(Shutdown::Write);
        }
        Err(Stop::Answer(code, msg)) => {
            writer.error(code, msg);
            linger_and_close(stream);
        }
        Err(Stop::HostGone) => {}
    }
}

fn receive(
    stream: &mut UnixStream,
    writer: &FrameWriter,
    req: &WriteFileRequest,
) -> Result<(), Stop> {
    let (target, tmp) = paths(&req.path)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(|e| io_stop("creating", &tmp, &e))?;
    let result = fill(stream, writer, &mut file, req, &tmp).and_then(|()| {
        file.set_permissions(Permissions::from_mode(req.mode))
            .map_err(|e| io_stop("setting the mode of", &tmp, &e))?;
        file.sync_all().map_err(|e| io_stop("syncing", &tmp, &e))?;
        std::fs::rename(&tmp, &target).map_err(|e| io_stop("renaming onto", &target, &e))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    // Make the rename itself durable.
    if let Some(dir) = target.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Copies the file-data frames into `file` until the end frame.
fn fill(
    stream: &mut UnixStream,
    writer: &FrameWriter,
    file: &mut File,
    req: &WriteFileRequest,
    tmp: &Path,
) -> Result<(), Stop> {
    let mut received: u64 = 0;
    loop {
        let frame = match Frame::read_from(stream) {
            Ok(Some(f)) => f,
            Ok(None) | Err(ReadError::Io(_) | ReadError::Truncated) => return Err(Stop::HostGone),
            Err(e) => {
                reject(writer, &e);
                linger_and_close_ref(stream);
                return Err(Stop::HostGone);
            }
        };
        match frame {
            Frame::FileData(data) => {
                received += data.len() as u64;
                if received > req.size {
                    return Err(Stop::Answer(
                        ErrorCode::InvalidRequest,
                        format!("more than the announced {} bytes", req.size),
                    ));
                }
                file.write_all(&data)
                    .map_err(|e| io_stop("writing", tmp, &e))?;
            }
            Frame::FileEnd if received == req.size => return Ok(()),
            Frame::FileEnd => {
                return Err(Stop::Answer(
                    ErrorCode::InvalidRequest,
                    format!("{received} of the announced {} bytes", req.size),
                ))
            }
            other => {
                return Err(Stop::Answer(
                    ErrorCode::UnexpectedFrame,
                    format!("{:?} during a file write", other.kind()),
                ))
            }
        }
    }
}

fn linger_and_close_ref(stream: &UnixStream) {
    if let Ok(s) = stream.try_clone() {
        linger_and_close(s);
    }
}

/// Serves a read-file request.
pub fn read_file(stream: UnixStream, writer: FrameWriter, path: &str) {
    match send(&writer, path) {
        Ok(()) => {
            let _ = stream.shutdown(Shutdown::Write);
        }
        Err(Stop::Answer(code, msg)) => {
            writer.error(code, msg);
            linger_and_close(stream);
        }
        Err(Stop::HostGone) => {}
    }
}

fn send(writer: &FrameWriter, path: &str) -> Result<(), Stop> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(Stop::Answer(
            ErrorCode::InvalidRequest,
            format!("{path}: not an absolute path"),
        ));
    }
    let mut file = File::open(p).map_err(|e| io_stop("opening", p, &e))?;
    let meta = file
        .metadata()
        .map_err(|e| io_stop("reading metadata of", p, &e))?;
    if !meta.is_file() {
        return Err(Stop::Answer(
            ErrorCode::InvalidRequest,
            format!("{path}: not a regular file"),
        ));
    }
    let size = meta.len();
    if size > MAX_FILE_SIZE {
        return Err(Stop::Answer(
            ErrorCode::FileTooLarge,
            format!("{path}: {size} bytes, over the limit of {MAX_FILE_SIZE}"),
        ));
    }
    let gone = |e: agent_proto::WriteError| {
        log::debug!("sending {path}: {}", chain(&e));
        Stop::HostGone
    };
    writer.send(&Frame::FileInfo { size }).map_err(gone)?;
    let mut buf = vec![0u8; CHUNK];
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match file.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(Stop::Answer(
                    ErrorCode::Io,
                    format!("{path}: shrank while being read"),
                ))
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_stop("reading", p, &e)),
        };
        writer.send_data(Kind::FileData, &buf[..n]).map_err(gone)?;
        left -= n as u64;
    }
    writer.send(&Frame::FileEnd).map_err(gone)
}
