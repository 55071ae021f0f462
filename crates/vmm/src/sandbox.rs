//! Commands and files in a running guest, through minivmm's guest agent
//! (`minivmm-agent`, crates/agent) over the VM's vsock device: the agent-client
//! calls, with the one thing the client cannot know added — whether the VM itself
//! has ended. A connection that closes mid-command is [`SandboxError::GuestExited`]
//! when the VM is gone, [`SandboxError::StreamClosed`] when it still runs.

pub use agent_client::{
    AgentClient, ClientError, ExecOutput, ExecRequest, ExecStdin, ExitStatus, Exited, MountRequest,
    OutputReader, SessionControl, SetupRequest, Version,
};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The vsock port the agent listens on.
pub const AGENT_PORT: u32 = agent_proto::DEFAULT_PORT;
/// How often a wait for the agent checks that the VM still runs.
const WAIT_SLICE: Duration = Duration::from_secs(1);
/// How long a closed connection may wait for the VM's end to show.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// A call into the guest failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The VM was built without a vsock device.
    #[error("the VM has no vsock device: give it one (VmBuilder::vsock, --vsock)")]
    NoVsock,
    /// The agent did not answer within the deadline (not started, not in the guest,
    /// or the guest is hung).
    #[error("the guest agent did not answer within {0:?}")]
    AgentTimeout(Duration),
    /// The VM ended while the call was under way (the guest died or powered off).
    #[error("the VM ended while waiting for {0}")]
    GuestExited(&'static str),
    /// The connection closed while the VM still runs (the agent went away).
    #[error("the connection to the guest agent closed while waiting for {0}")]
    StreamClosed(&'static str),
    /// Any other failure of the agent call.
    #[error(transparent)]
    Agent(ClientError),
}

/// Whether a VM still runs; shared by its handle and its sandboxes.
#[derive(Clone, Debug)]
pub struct Liveness(Arc<AtomicBool>);

impl Liveness {
    pub(crate) fn new() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }

    pub(crate) fn ended(&self) {
        self.0.store(false, Ordering::Release);
    }

    /// True until the VM has ended.
    pub fn alive(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Waits up to `grace` for the VM to end; true if it has.
    fn ends_within(&self, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        while self.alive() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    fn map(&self, e: ClientError) -> SandboxError {
        match e {
            ClientError::Disconnected { waiting_for } if self.ends_within(EXIT_GRACE) => {
                SandboxError::GuestExited(waiting_for)
            }
            ClientError::Disconnected { waiting_for } => SandboxError::StreamClosed(waiting_for),
            ClientError::AgentTimeout { .. } if !self.alive() => {
                SandboxError::GuestExited("the agent")
            }
            ClientError::AgentTimeout { after, .. } => SandboxError::AgentTimeout(after),
            other if !self.alive() => {
                log::debug!("agent call failed after the VM ended: {other}");
                SandboxError::GuestExited("the agent")
            }
            other => SandboxError::Agent(other),
        }
    }
}

/// The guest agent of one VM.
#[derive(Clone, Debug)]
pub struct Sandbox {
    client: AgentClient,
    live: Liveness,
}

impl Sandbox {
    /// The agent of the VM whose vsock socket is `socket`.
    pub(crate) fn new(socket: &Path, live: Liveness) -> Self {
        Self {
            client: AgentClient::vsock(socket, AGENT_PORT),
            live,
        }
    }

    /// The same with a client configured by `f` (timeouts, output limits).
    pub fn configure(mut self, f: impl FnOnce(AgentClient) -> AgentClient) -> Self {
        self.client = f(self.client);
        self
    }

    /// The underlying client.
    pub fn client(&self) -> &AgentClient {
        &self.client
    }

    /// Waits until the agent answers (the guest has booted far enough); a VM that
    /// ends meanwhile ends the wait at once ([`SandboxError::GuestExited`]).
    pub fn wait_for_agent(&self, timeout: Duration) -> Result<Version, SandboxError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.client.wait_for_agent(left.min(WAIT_SLICE)) {
                Ok(v) => return Ok(v),
                Err(ClientError::AgentTimeout { .. })
                    if self.live.alive() && Instant::now() < deadline => {}
                Err(ClientError::AgentTimeout { .. }) if self.live.alive() => {
                    return Err(SandboxError::AgentTimeout(timeout))
                }
                Err(e) => return Err(self.live.map(e)),
            }
        }
    }

    /// Runs a command to its end: its status and whole output.
    pub fn exec(&self, req: &ExecRequest) -> Result<ExecOutput, SandboxError> {
        self.client.exec(req).map_err(|e| self.live.map(e))
    }

    /// Starts a command with streamed input and output.
    pub fn spawn(&self, req: &ExecRequest) -> Result<Session, SandboxError> {
        let mut inner = self.client.spawn(req).map_err(|e| self.live.map(e))?;
        Ok(Session {
            stdin: inner.stdin.take(),
            stdout: inner.stdout.take(),
            stderr: inner.stderr.take(),
            inner,
            live: self.live.clone(),
        })
    }

    /// Writes `data` to `path` in the guest (atomically: a temporary file renamed).
    pub fn write_file(&self, path: &str, mode: u32, data: &[u8]) -> Result<(), SandboxError> {
        self.client
            .write_file(path, mode, data)
            .map_err(|e| self.live.map(e))
    }

    /// Reads the guest file `path`.
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>, SandboxError> {
        self.client.read_file(path).map_err(|e| self.live.map(e))
    }

    /// Makes mounts in the guest and sets its host name (a container's root).
    pub fn setup(&self, req: &SetupRequest) -> Result<(), SandboxError> {
        self.client.setup(req).map_err(|e| self.live.map(e))
    }

    /// Asks the agent to sync and power the guest off.
    pub fn power_off(&self) -> Result<(), SandboxError> {
        self.client.power_off().map_err(|e| self.live.map(e))
    }
}

/// A command running in the guest, with its streams.
pub struct Session {
    /// Its standard input (dropping it closes the command's stdin).
    pub stdin: Option<ExecStdin>,
    /// Its standard output (with a terminal: everything it writes).
    pub stdout: Option<OutputReader>,
    /// Its standard error.
    pub stderr: Option<OutputReader>,
    inner: agent_client::ExecSession,
    live: Liveness,
}

impl Session {
    /// The command's process ID in the guest.
    pub fn pid(&self) -> u32 {
        self.inner.pid()
    }

    /// A handle that signals and resizes the command from another thread.
    pub fn control(&self) -> SessionControl {
        self.inner.control()
    }

    /// Sends the command signal `signal`.
    pub fn kill(&self, signal: i32) -> Result<(), SandboxError> {
        self.inner.kill(signal).map_err(|e| self.live.map(e))
    }

    /// Sets the size of the command's terminal.
    pub fn resize(&self, rows: u16, cols: u16) -> Result<(), SandboxError> {
        self.inner.resize(rows, cols).map_err(|e| self.live.map(e))
    }

    /// Waits for the command's end.
    pub fn wait(&mut self) -> Result<Exited, SandboxError> {
        self.inner.wait().map_err(|e| self.live.map(e))
    }
}
