//! minivmm's host side of the guest agent: run commands and move files in a VM.
//!
//! [`AgentClient`] reaches the agent through the VMM's vsock Unix socket
//! (Firecracker-style `CONNECT <port>` handshake) or a plain Unix socket (tests), one
//! connection per request, with the protocol of `agent-proto`
//! (`docs/agent-protocol.md`). Every reply is untrusted: sizes are bounded before
//! anything is allocated, and each failure is its own [`ClientError`] variant.
//!
//! ```no_run
//! use agent_client::{AgentClient, ExecRequest};
//! use std::time::Duration;
//! let agent = AgentClient::vsock("/run/vm/vsock.sock", agent_proto::DEFAULT_PORT);
//! agent.wait_for_agent(Duration::from_secs(10))?;
//! let out = agent.exec(&ExecRequest::new(["uname", "-a"]))?;
//! println!("{} {}", out.status, String::from_utf8_lossy(&out.stdout));
//! # Ok::<(), agent_client::ClientError>(())
//! ```

mod error;
mod files;
pub mod replies;
mod session;
pub mod transport;

pub use agent_proto::{
    ErrorCode, ExecRequest, ExitStatus, Exited, MountRequest, SetupRequest, Version, WindowSize,
};
pub use error::{ClientError, HandshakeError, ProtocolError, Result};
pub use replies::{ExecOutput, ReplyReader};
pub use session::{ExecSession, ExecStdin, OutputReader, SessionControl};
pub use transport::Transport;

use agent_proto::{Frame, PROTOCOL_VERSION};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use transport::set_timeouts;

/// Default time allowed to connect (and shake hands).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Default time allowed for each reply the agent should send promptly.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Default cap on each output stream [`AgentClient::exec`] collects.
pub const DEFAULT_OUTPUT_LIMIT: u64 = 64 << 20;

/// Default cap on a file [`AgentClient::read_file`] returns.
pub const DEFAULT_FILE_LIMIT: u64 = 256 << 20;

/// A handle on one VM's agent. Cheap to clone; every call opens its own connection,
/// so calls may run at once from many threads.
#[derive(Debug, Clone)]
pub struct AgentClient {
    transport: Transport,
    connect_timeout: Duration,
    io_timeout: Duration,
    output_limit: u64,
    file_limit: u64,
}

impl AgentClient {
    /// The agent on guest `port`, through the VMM's vsock Unix socket `uds_path`.
    pub fn vsock(uds_path: impl Into<PathBuf>, port: u32) -> Self {
        Self::new(Transport::Vsock {
            uds: uds_path.into(),
            port,
        })
    }

    /// The agent listening on the Unix socket `path` (`minivmm-agent --unix PATH`).
    pub fn unix(path: impl Into<PathBuf>) -> Self {
        Self::new(Transport::Unix(path.into()))
    }

    fn new(transport: Transport) -> Self {
        Self {
            transport,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            io_timeout: DEFAULT_IO_TIMEOUT,
            output_limit: DEFAULT_OUTPUT_LIMIT,
            file_limit: DEFAULT_FILE_LIMIT,
        }
    }

    /// Sets the time allowed to connect and shake hands.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the time allowed for each prompt reply (and each send).
    pub fn with_io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout;
        self
    }

    /// Sets the cap on each output stream [`AgentClient::exec`] collects.
    pub fn with_output_limit(mut self, bytes: u64) -> Self {
        self.output_limit = bytes;
        self
    }

    /// Sets the cap on the size of a file [`AgentClient::read_file`] accepts.
    pub fn with_file_limit(mut self, bytes: u64) -> Self {
        self.file_limit = bytes;
        self
    }

    /// Where the agent is.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// A connection with the I/O timeout set, and `request` sent on it.
    fn request(&self, request: &Frame) -> Result<UnixStream> {
        let buf = request.encode().map_err(ClientError::InvalidRequest)?;
        let mut s = self.transport.connect(self.connect_timeout)?;
        set_timeouts(&s, Some(self.io_timeout)).map_err(|source| ClientError::Io {
            op: "setting timeouts on",
            source,
        })?;
        if let Err(e) = s.write_all(&buf) {
            // An agent that refused at once (busy) has closed after its answer.
            return Err(match self.replies(&s).next("the request to be sent") {
                Ok(Frame::Error(reply)) => ClientError::Remote {
                    code: reply.code,
                    message: reply.message,
                },
                _ => replies::io_error(e, "the request to be sent", self.io_timeout),
            });
        }
        Ok(s)
    }

    fn replies<'a>(&self, s: &'a UnixStream) -> ReplyReader<&'a UnixStream> {
        ReplyReader::new(s, self.io_timeout)
    }

    /// Asks the agent's version (whatever protocol it speaks).
    pub fn version(&self) -> Result<Version> {
        let s = self.request(&Frame::VersionRequest {
            protocol: PROTOCOL_VERSION,
        })?;
        self.replies(&s).version()
    }

    /// Connects and asks the version until the agent answers or `timeout` passes
    /// ([`ClientError::AgentTimeout`], with the last attempt's error as its source).
    /// An agent with another protocol version is [`ClientError::IncompatibleAgent`].
    pub fn wait_for_agent(&self, timeout: Duration) -> Result<Version> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let attempt = Self {
                connect_timeout: self.connect_timeout.min(left),
                io_timeout: self.io_timeout.min(left),
                ..self.clone()
            };
            let last = match attempt.version() {
                Ok(v) if v.protocol == PROTOCOL_VERSION => return Ok(v),
                Ok(v) => {
                    return Err(ClientError::IncompatibleAgent {
                        agent: v.protocol,
                        host: PROTOCOL_VERSION,
                        agent_version: v.agent,
                    })
                }
                Err(e @ (ClientError::Protocol(_) | ClientError::Remote { .. })) => return Err(e),
                Err(e) => e,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::AgentTimeout {
                    waiting_for: "the version request",
                    after: timeout,
                    last: Some(Box::new(last)),
                });
            }
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }

    /// Runs a command to its end and returns its status and output (each stream at
    /// most the output limit, else [`ClientError::OutputLimit`] and the command is
    /// killed). The command's stdin is `/dev/null` whatever `req.stdin` says; use
    /// [`AgentClient::spawn`] to stream it.
    pub fn exec(&self, req: &ExecRequest) -> Result<ExecOutput> {
        let mut req = req.clone();
        req.stdin = false;
        let s = self.request(&Frame::Exec(req.clone()))?;
        let mut rr = self.replies(&s);
        rr.started()?;
        rr.timeout = self.run_timeout(&req, &s)?;
        rr.exec_output(self.output_limit)
    }

    /// Starts a command and returns its streams. See [`ExecSession`].
    pub fn spawn(&self, req: &ExecRequest) -> Result<ExecSession> {
        let s = self.request(&Frame::Exec(req.clone()))?;
        let pid = self.replies(&s).started()?;
        self.run_timeout(req, &s)?;
        // Stdin may wait on a command that reads slowly: no send timeout.
        s.set_write_timeout(None)
            .map_err(|source| ClientError::Io {
                op: "setting timeouts on",
                source,
            })?;
        ExecSession::start(s, pid, req.stdin)
    }

    /// While a command runs, replies may pause as long as it is silent: the read
    /// timeout becomes its own timeout plus the I/O timeout, or none.
    fn run_timeout(&self, req: &ExecRequest, s: &UnixStream) -> Result<Duration> {
        let t = req
            .timeout_ms
            .map(|ms| Duration::from_millis(ms).saturating_add(self.io_timeout));
        s.set_read_timeout(t).map_err(|source| ClientError::Io {
            op: "setting timeouts on",
            source,
        })?;
        Ok(t.unwrap_or(Duration::MAX))
    }

    /// Asks the agent to make `req`'s mounts, in order, and set its host name
    /// (a container's root and mounts). An error names the mount that failed.
    pub fn setup(&self, req: &SetupRequest) -> Result<()> {
        let s = self.request(&Frame::Setup(req.clone()))?;
        self.replies(&s).ok("the set-up answer")
    }

    /// Asks the agent to sync and power the guest off. `Ok` means the agent accepted;
    /// the VM exits shortly after.
    pub fn power_off(&self) -> Result<()> {
        let s = self.request(&Frame::PowerOff)?;
        self.replies(&s).ok("the power-off answer")
    }
}
