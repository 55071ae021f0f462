//! [`VmHandle`]: what the embedding program holds while a VM runs.

use crate::console_stream::ConsoleStream;
use crate::controller::VmController;
use crate::error::VmmError;
use crate::exit::{ExitReason, VmExit};
use crate::sandbox::{ExecOutput, ExecRequest, Sandbox, SandboxError, Session, Version};
use crate::timeline::Timeline;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running VM. Dropping it stops the VM and waits until its threads, descriptors,
/// memory and the taps it created are gone.
pub struct VmHandle {
    controller: VmController,
    thread: Option<JoinHandle<VmExit>>,
    timeline: Timeline,
    console: Option<ConsoleStream>,
    vsock_socket: Option<PathBuf>,
}

impl VmHandle {
    pub(crate) fn new(
        controller: VmController,
        thread: JoinHandle<VmExit>,
        timeline: Timeline,
        console: Option<ConsoleStream>,
        vsock_socket: Option<PathBuf>,
    ) -> Self {
        Self {
            controller,
            thread: Some(thread),
            timeline,
            console,
            vsock_socket,
        }
    }

    /// The VM's controls, for other threads (the control API serves one): clones
    /// pause, resume, snapshot, stop and read the status and metrics of this VM.
    pub fn controller(&self) -> VmController {
        self.controller.clone()
    }

    /// The host socket of the VM's vsock device, if it has one.
    pub fn vsock_socket(&self) -> Option<&Path> {
        self.vsock_socket.as_deref()
    }

    /// The guest agent, reached over the VM's vsock device.
    pub fn sandbox(&self) -> Result<Sandbox, SandboxError> {
        let socket = self.vsock_socket.as_deref().ok_or(SandboxError::NoVsock)?;
        Ok(Sandbox::new(socket, self.controller.live().clone()))
    }

    /// Waits until the guest agent answers.
    pub fn wait_for_agent(&self, timeout: Duration) -> Result<Version, SandboxError> {
        self.sandbox()?.wait_for_agent(timeout)
    }

    /// Runs a command in the guest to its end: its status, stdout and stderr.
    ///
    /// ```no_run
    /// # fn f(vm: &vmm::VmHandle) -> Result<(), vmm::SandboxError> {
    /// let out = vm.exec(&vmm::ExecRequest::new(["uname", "-a"]))?;
    /// assert!(out.status.success());
    /// # Ok(()) }
    /// ```
    pub fn exec(&self, req: &ExecRequest) -> Result<ExecOutput, SandboxError> {
        self.sandbox()?.exec(req)
    }

    /// Starts a command in the guest with streamed stdin, stdout and stderr.
    pub fn spawn(&self, req: &ExecRequest) -> Result<Session, SandboxError> {
        self.sandbox()?.spawn(req)
    }

    /// Writes a file in the guest (atomically).
    pub fn write_file(&self, path: &str, mode: u32, data: &[u8]) -> Result<(), SandboxError> {
        self.sandbox()?.write_file(path, mode, data)
    }

    /// Reads a file in the guest.
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>, SandboxError> {
        self.sandbox()?.read_file(path)
    }

    /// Stops the VM now (no questions asked of the guest); [`VmHandle::wait`] then
    /// returns [`ExitReason::StopRequested`].
    pub fn stop(&self) {
        self.controller.stop();
    }

    /// A descriptor that stops the VM when an 8-byte count is written to it; safe to
    /// use from a signal handler (write(2) is async-signal-safe).
    pub fn stop_fd(&self) -> RawFd {
        self.controller.stop_evt().as_raw_fd()
    }

    /// Asks the guest to shut down (the ACPI power button), waits up to `grace` for
    /// it to power off or reset, and stops the VM if it has not. Guests act on the
    /// button only if they listen for it (acpid, systemd, the test guest's `pwrbtn`).
    pub fn shutdown(mut self, grace: Duration) -> VmExit {
        self.controller.shutdown(grace);
        self.join()
    }

    /// Parks every vCPU (the guest stops executing; devices and console stay). Returns
    /// once all are parked.
    pub fn pause(&self) -> Result<(), VmmError> {
        self.controller.pause()
    }

    /// Writes a snapshot of the paused VM into `dir` (created if missing): its state
    /// file and guest memory (see [`crate::snapshot`]). The VM stays paused; resume
    /// it or stop it afterwards. Refused while the VM runs, while another snapshot is
    /// being taken, on hosts or guests a snapshot cannot cover (aarch64, AMX state).
    pub fn snapshot(&self, dir: &Path) -> Result<(), VmmError> {
        self.controller.snapshot(dir)
    }

    /// Releases the vCPUs parked by [`VmHandle::pause`].
    pub fn resume(&self) -> Result<(), VmmError> {
        self.controller.resume()
    }

    /// The console output stream, if the VM was built with
    /// [`crate::VmBuilder::console_stream`] (once; later calls return `None`).
    pub fn take_console(&mut self) -> Option<ConsoleStream> {
        self.console.take()
    }

    /// The boot timeline so far.
    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    /// True until the VM has ended.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Waits until the VM ends.
    pub fn wait(mut self) -> VmExit {
        self.join()
    }

    /// Waits up to `timeout` for the VM to end; `None` if it still runs.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<VmExit> {
        let deadline = Instant::now() + timeout;
        while self.is_running() {
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Some(self.join())
    }

    fn join(&mut self) -> VmExit {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(exit)) => exit,
            Some(Err(_)) => VmExit {
                reason: ExitReason::Internal("the event loop thread panicked".into()),
                timeline: self.timeline.clone(),
                guest_memory_touched: 0,
            },
            None => VmExit {
                reason: ExitReason::Internal("the VM was already waited for".into()),
                timeline: self.timeline.clone(),
                guest_memory_touched: 0,
            },
        }
    }
}

impl Drop for VmHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop();
            let _ = self.join();
        }
    }
}
