//! Shared by the agent's integration tests: a `minivmm-agent` child process serving a
//! Unix socket in a scratch directory, killed when dropped.
#![allow(dead_code)]

use agent_client::AgentClient;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A running agent on the host.
pub struct Agent {
    child: Child,
    /// A scratch directory, removed on drop.
    pub dir: PathBuf,
    /// The agent's socket.
    pub sock: PathBuf,
}

/// A fresh scratch directory.
pub fn scratch(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "minivmm-agent-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Agent {
    /// Starts the agent (power-off refused: it runs as root on the host) and waits
    /// until it answers.
    pub fn start() -> Agent {
        Self::start_with(&[])
    }

    /// Starts the agent through `unshare(1)` with `namespaces` (`--mount`, `--uts`...),
    /// so that what a set-up request mounts or names stays in them.
    pub fn start_unshared(namespaces: &[&str]) -> Agent {
        Self::start_with(namespaces)
    }

    fn start_with(namespaces: &[&str]) -> Agent {
        let dir = scratch("t");
        let sock = dir.join("agent.sock");
        // MINIVMM_AGENT_BIN runs the suite against another build (the static one).
        let bin = std::env::var_os("MINIVMM_AGENT_BIN").map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_minivmm-agent")),
            PathBuf::from,
        );
        let mut cmd = match namespaces.is_empty() {
            true => Command::new(bin),
            false => {
                let mut c = Command::new("unshare");
                c.args(namespaces)
                    .args(["--propagation", "private", "--"])
                    .arg(bin);
                c
            }
        };
        let child = cmd
            .arg("--unix")
            .arg(&sock)
            .args(["--no-power-off", "--log-level", "warn"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let agent = Agent { child, dir, sock };
        agent
            .client()
            .wait_for_agent(Duration::from_secs(20))
            .unwrap();
        agent
    }

    /// A client for it.
    pub fn client(&self) -> AgentClient {
        AgentClient::unix(&self.sock).with_io_timeout(Duration::from_secs(20))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether process `pid` (on this host) still exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The SHA-256 of `data` as `sha256sum` prints it (computed by the host's tool).
pub fn sha256_hex(data: &[u8]) -> String {
    use std::io::Write;
    let mut c = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(data).unwrap();
    let out = c.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}
