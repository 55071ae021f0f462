//! The one reaper of the agent's children: a thread in a `waitid(P_ALL)` loop that
//! hands each exit status to the connection waiting for that pid, and reaps the
//! orphans the kernel reparents to the agent when it is PID 1.
//!
//! Forks happen under the reaper's lock ([`Reaper::spawn`]), so a child is known
//! before anyone can reap it. The reaper first waits with `WNOWAIT`, takes the lock,
//! marks the child gone and only then reaps it: while the lock is held a pid the
//! table calls running is a live process or a zombie, never a recycled pid, so
//! [`Reaper::signal_group`] cannot hit a stranger.

use agent_proto::ExitStatus;
use std::collections::BTreeMap;
use std::io;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// Starting the reaper thread failed.
#[derive(Debug, thiserror::Error)]
#[error("starting the reaper thread")]
pub struct ReaperStartError(#[source] io::Error);

struct Table {
    /// Children started through [`Reaper::spawn`] and not reaped yet.
    running: BTreeMap<libc::pid_t, Sender<ExitStatus>>,
    /// Set by a spawn, cleared by the reaper before it sleeps on ECHILD.
    new_child: bool,
}

/// The agent's single reaper. Get it with [`Reaper::global`].
pub struct Reaper {
    table: Mutex<Table>,
    wake: Condvar,
}

static REAPER: Reaper = Reaper {
    table: Mutex::new(Table {
        running: BTreeMap::new(),
        new_child: false,
    }),
    wake: Condvar::new(),
};

static STARTED: OnceLock<Result<(), String>> = OnceLock::new();

impl Reaper {
    /// The process's reaper; the first call starts its thread.
    pub fn global() -> Result<&'static Reaper, ReaperStartError> {
        let started = STARTED.get_or_init(|| {
            std::thread::Builder::new()
                .name("reaper".into())
                .stack_size(64 * 1024)
                .spawn(|| REAPER.run())
                .map(drop)
                .map_err(|e| e.to_string())
        });
        match started {
            Ok(()) => Ok(&REAPER),
            Err(e) => Err(ReaperStartError(io::Error::other(e.clone()))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A poisoned table only means a panic elsewhere; its data stays consistent.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `fork` (which must fork and return the child's pid in the parent) under
    /// the reaper's lock and registers the child; its exit status arrives on the
    /// returned receiver.
    pub fn spawn<F>(&self, fork: F) -> io::Result<(libc::pid_t, Receiver<ExitStatus>)>
    where
        F: FnOnce() -> io::Result<libc::pid_t>,
    {
        let mut table = self.lock();
        let pid = fork()?;
        let (tx, rx) = channel();
        table.running.insert(pid, tx);
        table.new_child = true;
        drop(table);
        self.wake.notify_all();
        Ok((pid, rx))
    }

    /// Sends `signal` to the process group `pid` leads, if `pid` has not been
    /// reaped. Returns whether it was sent.
    pub fn signal_group(&self, pid: libc::pid_t, signal: i32) -> bool {
        let table = self.lock();
        if !table.running.contains_key(&pid) {
            return false;
        }
        // SAFETY: kill has no memory effects; pid is our unreaped child (held by the
        // lock), so its process group id is not recycled.
        let r = unsafe { libc::kill(-pid, signal) };
        if r != 0 {
            // The group may be gone while the leader is a zombie; signal the leader.
            // SAFETY: as above.
            unsafe { libc::kill(pid, signal) };
        }
        drop(table);
        true
    }

    fn run(&self) -> ! {
        loop {
            // SAFETY: siginfo_t is plain data; zeroed is a valid value.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: waitid writes only into `info`.
            let r =
                unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOWAIT) };
            if r != 0 {
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINTR) => {}
                    Some(libc::ECHILD) => self.sleep_until_spawn(),
                    _ => {
                        log::error!("waitid: {}", io::Error::last_os_error());
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
                continue;
            }
            // SAFETY: waitid succeeded with WEXITED, so info is a SIGCHLD siginfo.
            let pid = unsafe { info.si_pid() };
            self.reap(pid);
        }
    }

    fn sleep_until_spawn(&self) {
        let mut table = self.lock();
        while !table.new_child {
            table = self.wake.wait(table).unwrap_or_else(|p| p.into_inner());
        }
        table.new_child = false;
    }

    fn reap(&self, pid: libc::pid_t) {
        let mut table = self.lock();
        let mut status = 0;
        // SAFETY: waitpid writes only into `status`; pid is a zombie (WNOWAIT above).
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r != pid {
            return;
        }
        let exit = if libc::WIFSIGNALED(status) {
            ExitStatus::Signal(libc::WTERMSIG(status))
        } else {
            ExitStatus::Code(libc::WEXITSTATUS(status))
        };
        match table.running.remove(&pid) {
            Some(tx) => {
                // The waiter may have gone (its connection failed); nothing to do.
                let _ = tx.send(exit);
            }
            None => log::debug!("reaped orphan {pid}: {exit}"),
        }
    }
}
