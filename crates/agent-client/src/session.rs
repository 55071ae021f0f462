//! A streaming command: stdin as a writer, stdout and stderr as readers, signals,
//! resizes and the exit status.
//!
//! One thread reads the connection and hands output to the two readers through
//! bounded channels (a few frames each): a consumer that stops reading stops that
//! thread, then the agent, then the command, instead of buffering without bound.

use crate::error::ClientError;
use crate::replies::{io_error, unexpected, ReplyReader};
use agent_proto::limits::MAX_DATA_PAYLOAD;
use agent_proto::{write_data, Exited, Frame, Kind, WindowSize, WriteError};
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Frames of output buffered per stream before the reading thread waits.
const CHANNEL_FRAMES: usize = 4;

/// A chunk of output, or word that the connection failed.
type Chunk = Result<Vec<u8>, ()>;

/// The sending half of a session's connection, shared by stdin, kill and resize.
#[derive(Clone)]
struct Sender(Arc<Mutex<UnixStream>>);

impl Sender {
    fn send(&self, frame: &Frame) -> Result<(), ClientError> {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        frame.write_to(&mut *s).map_err(write_error)
    }

    fn send_data(&self, data: &[u8]) -> Result<(), ClientError> {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        write_data(&mut *s, Kind::StdinData, data).map_err(write_error)
    }
}

fn write_error(e: WriteError) -> ClientError {
    match e {
        WriteError::Io(e) => io_error(e, "a frame to be sent", Duration::ZERO),
        WriteError::Invalid(e) => ClientError::InvalidRequest(e),
    }
}

/// A running command. Take `stdin`, `stdout` and `stderr` to use them (like
/// `std::process::Child`); dropping the session before [`ExecSession::wait`]
/// returns closes the connection, which kills the command.
pub struct ExecSession {
    /// The command's stdin, when the request streams it.
    pub stdin: Option<ExecStdin>,
    /// The command's stdout (the terminal's output with a tty).
    pub stdout: Option<OutputReader>,
    /// The command's stderr (empty with a tty).
    pub stderr: Option<OutputReader>,
    pid: u32,
    sender: Sender,
    socket: UnixStream,
    reader: Option<JoinHandle<Result<Exited, ClientError>>>,
    exited: Option<Exited>,
}

impl ExecSession {
    /// Starts the session on a connection whose `Started` answer was read.
    pub(crate) fn start(socket: UnixStream, pid: u32, stdin: bool) -> Result<Self, ClientError> {
        let clone = |s: &UnixStream| {
            s.try_clone().map_err(|source| ClientError::Io {
                op: "cloning",
                source,
            })
        };
        let sender = Sender(Arc::new(Mutex::new(clone(&socket)?)));
        let read_half = clone(&socket)?;
        let (out_tx, out_rx) = sync_channel(CHANNEL_FRAMES);
        let (err_tx, err_rx) = sync_channel(CHANNEL_FRAMES);
        let reader = std::thread::Builder::new()
            .name("agent-session".into())
            .spawn(move || demux(ReplyReader::new(read_half, Duration::ZERO), out_tx, err_tx))
            .map_err(|source| ClientError::Io {
                op: "starting a reader thread for",
                source,
            })?;
        Ok(Self {
            stdin: stdin.then(|| ExecStdin {
                sender: sender.clone(),
                closed: false,
            }),
            stdout: Some(OutputReader::new(out_rx)),
            stderr: Some(OutputReader::new(err_rx)),
            pid,
            sender,
            socket,
            reader: Some(reader),
            exited: None,
        })
    }

    /// The command's pid in the guest.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `signal` to the command's process group.
    pub fn kill(&self, signal: i32) -> Result<(), ClientError> {
        self.sender.send(&Frame::Signal(signal))
    }

    /// Resizes the command's terminal (nothing without a tty).
    pub fn resize(&self, rows: u16, cols: u16) -> Result<(), ClientError> {
        self.sender.send(&Frame::Resize(WindowSize { rows, cols }))
    }

    /// A handle that signals and resizes the command from another thread while this
    /// one waits.
    pub fn control(&self) -> SessionControl {
        SessionControl {
            sender: self.sender.clone(),
        }
    }

    /// Closes stdin (if not taken), drops the readers not taken, and waits for the
    /// command to end. Readers that were taken must be read to their end (or
    /// dropped), or this waits for them.
    pub fn wait(&mut self) -> Result<Exited, ClientError> {
        if let Some(e) = self.exited {
            return Ok(e);
        }
        if let Some(mut stdin) = self.stdin.take() {
            // A failure shows in the reader's result below.
            let _ = stdin.close();
        }
        self.stdout = None;
        self.stderr = None;
        let result = match self.reader.take() {
            Some(h) => h.join().unwrap_or(Err(ClientError::Disconnected {
                waiting_for: "the command's exit",
            })),
            None => Err(ClientError::Disconnected {
                waiting_for: "the command's exit",
            }),
        };
        if let Ok(e) = result {
            self.exited = Some(e);
        }
        result
    }
}

impl Drop for ExecSession {
    fn drop(&mut self) {
        if self.exited.is_none() {
            // Closing the connection before the exit kills the command in the guest.
            let _ = self.socket.shutdown(Shutdown::Both);
        }
    }
}

/// Signals and resizes a running command; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct SessionControl {
    sender: Sender,
}

impl SessionControl {
    /// Sends `signal` to the command's process group.
    pub fn kill(&self, signal: i32) -> Result<(), ClientError> {
        self.sender.send(&Frame::Signal(signal))
    }

    /// Resizes the command's terminal (nothing without a tty).
    pub fn resize(&self, rows: u16, cols: u16) -> Result<(), ClientError> {
        self.sender.send(&Frame::Resize(WindowSize { rows, cols }))
    }
}

/// The reading thread: output to the channels until the exit frame.
fn demux(
    mut rr: ReplyReader<UnixStream>,
    out: SyncSender<Chunk>,
    err: SyncSender<Chunk>,
) -> Result<Exited, ClientError> {
    let (mut out, mut err) = (Some(out), Some(err));
    let result = loop {
        let frame = match rr.next("the command's exit") {
            Ok(f) => f,
            Err(e) => break Err(e),
        };
        let (tx, data) = match frame {
            Frame::Stdout(d) => (&mut out, d),
            Frame::Stderr(d) => (&mut err, d),
            Frame::Exited(e) => return Ok(e),
            other => break Err(unexpected(other, "the command's exit")),
        };
        // A reader that was dropped no longer wants its stream.
        if tx.as_ref().is_some_and(|t| t.send(Ok(data)).is_err()) {
            *tx = None;
        }
    };
    for tx in [out, err].into_iter().flatten() {
        let _ = tx.try_send(Err(()));
    }
    result
}

/// The command's stdin. Writes become stdin-data frames; [`ExecStdin::close`] or
/// dropping it sends stdin-close (end of file for the command).
pub struct ExecStdin {
    sender: Sender,
    closed: bool,
}

impl ExecStdin {
    /// Sends end of file.
    pub fn close(&mut self) -> Result<(), ClientError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        self.sender.send(&Frame::StdinClose)
    }
}

impl Write for ExecStdin {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.closed {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "stdin is closed"));
        }
        let n = buf.len().min(MAX_DATA_PAYLOAD);
        self.sender
            .send_data(&buf[..n])
            .map_err(|e| io::Error::new(io::ErrorKind::BrokenPipe, e))?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ExecStdin {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// One of the command's output streams.
pub struct OutputReader {
    rx: Receiver<Chunk>,
    chunk: Vec<u8>,
    pos: usize,
}

impl OutputReader {
    fn new(rx: Receiver<Chunk>) -> Self {
        Self {
            rx,
            chunk: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for OutputReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(c)) => {
                    self.chunk = c;
                    self.pos = 0;
                }
                Ok(Err(())) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the connection to the agent failed",
                    ))
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
