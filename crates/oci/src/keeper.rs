//! The VMM process of one container: started by `create`, it stays behind as the
//! process the shim waits on (`--pid-file`). It boots the container's microVM, has
//! the agent mount the root and the mounts, reports "created", waits for `start`,
//! runs the container's process with the streams it inherited, forwards the signals
//! `kill` sends it, and exits with the process's status (128+N for signal N).

use crate::bundle::{self, HostLimits, Network};
use crate::error::OciError;
use crate::guest::{guest_plan, GuestPlan};
use crate::log::Log;
use crate::relay::HostStreams;
use crate::runtime_config::{config_path, RuntimeConfig};
use crate::signals;
use crate::state::{StateDir, Status};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vmm::sandbox::{ExecRequest, ExitStatus, Sandbox, SessionControl};
use vmm::{ConsoleOutput, FsConfig, NetConfig, VmBuilder, VmHandle, VsockConfig};

/// The name of the FIFO `start` writes to.
pub const START_FIFO: &str = "start";
/// The VM's vsock socket in the container's state directory.
pub const VSOCK: &str = "vsock";
/// The guest console's log in the container's state directory.
pub const CONSOLE_LOG: &str = "console.log";
/// Why a started process could not run (read by `start`).
pub const START_ERROR: &str = "start-error";
/// The tap's name inside the container's network namespace.
pub const TAP: &str = "tap0";
/// Exit status of the VMM process when the VM fails under the container.
const VM_FAILED: i32 = 255;

/// What `create` passes to the VMM process.
pub struct KeeperArgs {
    /// The state directory (`--root`).
    pub root: PathBuf,
    /// The container's ID.
    pub id: String,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The write end of `create`'s readiness pipe.
    pub ready_fd: RawFd,
    /// Where to send a terminal's master.
    pub console_socket: Option<PathBuf>,
    /// The runtime's log.
    pub log: Log,
}

/// A booted VM with the container's mounts made, waiting for `start`.
struct Created {
    vm: VmHandle,
    /// What [`Created::adopt_network`] took from the namespace's CNI interface.
    adopted: Option<crate::netns::Adopted>,
    /// The VM has a tap in the container's network namespace.
    networked: bool,
    /// The namespace's path when it outlives this process (joined, not made).
    netns_path: Option<PathBuf>,
    /// The container's state directory.
    dir: PathBuf,
    sandbox: Sandbox,
    guest: GuestPlan,
    streams: HostStreams,
    fifo: File,
    state: StateDir,
}

/// Runs the VMM process; returns its exit status.
pub fn run(args: KeeperArgs) -> i32 {
    let log = args.log.file_only();
    let set = match signals::block(&signals::forwarded()) {
        Ok(set) => set,
        Err(e) => {
            report(args.ready_fd, &format!("blocking signals: {e}"));
            return 1;
        }
    };
    // SAFETY: create passed us this fd for us alone; it is written once and closed.
    let mut ready = unsafe { File::from_raw_fd(args.ready_fd) };
    let created = match prepare(&args) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.write_all(e.to_string().as_bytes());
            return 1;
        }
    };
    if ready.write_all(b"ok").is_err() {
        // create is gone: nobody will start this container.
        return 1;
    }
    drop(ready);
    created.run(&args.id, set, &log)
}

fn report(fd: RawFd, msg: &str) {
    // SAFETY: the fd is ours (see run); the File closes it.
    let mut f = unsafe { File::from_raw_fd(fd) };
    let _ = f.write_all(msg.as_bytes());
}

fn prepare(args: &KeeperArgs) -> Result<Created, OciError> {
    let config = RuntimeConfig::load(&config_path())?;
    let plan = bundle::load(&args.bundle, HostLimits::of_this_host())?;
    let guest = guest_plan(&plan);
    let state = StateDir::open(&args.root)?;
    let dir = state.dir(&args.id);
    enter_network(&plan.network)?;
    let streams = match (plan.process.terminal, &args.console_socket) {
        (false, _) => HostStreams::Inherited,
        (true, Some(socket)) => HostStreams::console(socket)?,
        (true, None) => {
            return Err(OciError::Field(
                "process.terminal",
                "is set but no --console-socket was given".into(),
            ))
        }
    };
    let mut builder = VmBuilder::new(&config.kernel)
        .initrd(&config.initrd)
        .cmdline(&config.cmdline)
        .memory_mib(plan.mem_mib)
        .vcpus(plan.vcpus as usize)
        .console(ConsoleOutput::File(dir.join(CONSOLE_LOG)))
        .vsock(VsockConfig::new(dir.join(VSOCK)));
    for s in &guest.shares {
        let mut fs = FsConfig::new(&s.tag, &s.path);
        fs.read_only = s.read_only;
        builder = builder.share(fs);
    }
    if plan.network != Network::None {
        let mut net = NetConfig::new(TAP);
        net.create = true;
        builder = builder.net(net);
    }
    let vm = builder
        .start()
        .map_err(|e| OciError::Vm(vmm::error_chain(&e)))?;
    let sandbox = vm.sandbox().map_err(|e| OciError::Vm(e.to_string()))?;
    let vm_err = |what: &str, e: &dyn std::error::Error| {
        OciError::Vm(format!("{what}: {}", vmm::error_chain(e)))
    };
    if let Err(e) = sandbox.wait_for_agent(Duration::from_secs(config.boot_timeout_s)) {
        let mut msg = format!("waiting for the guest agent: {}", vmm::error_chain(&e));
        if !vm.is_running() {
            msg.push_str(&format!("; the VM stopped: {}", vm.wait().reason));
        }
        if let Some(last) = last_console_line(&dir.join(CONSOLE_LOG)) {
            msg.push_str(&format!("; its console's last line: {last}"));
        }
        return Err(OciError::Vm(msg));
    }
    sandbox
        .setup(&guest.setup)
        .map_err(|e| vm_err("setting up the container's mounts", &e))?;
    let fifo = open_fifo(&dir.join(START_FIFO))?;
    let mut record = state.load(&args.id)?;
    record.status = Status::Created;
    record.pid = Some(std::process::id() as i32);
    record.vsock_socket = Some(dir.join(VSOCK));
    state.save(&record)?;
    Ok(Created {
        vm,
        adopted: None,
        networked: plan.network != Network::None,
        netns_path: match &plan.network {
            Network::Join(p) => Some(p.clone()),
            _ => None,
        },
        dir: dir.clone(),
        sandbox,
        guest,
        streams,
        fifo,
        state,
    })
}

/// The last non-empty line of the guest's console log.
fn last_console_line(path: &Path) -> Option<String> {
    let text = std::fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&text);
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().chars().take(200).collect())
}

/// Moves this (still single-threaded) process into the container's network
/// namespace, so the tap is created there.
fn enter_network(network: &Network) -> Result<(), OciError> {
    let err =
        |e: std::io::Error| OciError::Process("entering the network namespace", e.to_string());
    match network {
        Network::None => Ok(()),
        // SAFETY: unshare has no memory effects.
        Network::New => match unsafe { libc::unshare(libc::CLONE_NEWNET) } {
            0 => Ok(()),
            _ => Err(err(std::io::Error::last_os_error())),
        },
        Network::Join(path) => {
            let ns = File::open(path).map_err(err)?;
            // SAFETY: the fd is open for the call; setns has no memory effects.
            match unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } {
                0 => Ok(()),
                _ => Err(err(std::io::Error::last_os_error())),
            }
        }
    }
}

fn open_fifo(path: &Path) -> Result<File, OciError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| OciError::State(path.to_path_buf(), e.to_string()))
}

impl Created {
    fn run(mut self, id: &str, set: libc::sigset_t, log: &Log) -> i32 {
        let control: Arc<Mutex<Option<SessionControl>>> = Arc::default();
        spawn_signal_thread(
            set,
            control.clone(),
            self.state.dir(id),
            id.to_string(),
            log.clone(),
        );
        if !self.wait_for_start(log) {
            return VM_FAILED;
        }
        let dir = self.state.dir(id);
        let _ = std::fs::remove_file(dir.join(START_FIFO));
        if let Err(e) = self.adopt_network(log) {
            let msg = e.to_string();
            let _ = std::fs::write(dir.join(START_ERROR), &msg);
            log.error(&msg);
            return VM_FAILED;
        }
        let mut exec = self.guest.exec.clone();
        if let (Some(_), Some((rows, cols))) = (exec.tty, self.streams.size()) {
            exec = exec.tty(rows, cols);
        }
        let mut session = match self.sandbox.spawn(&exec) {
            Ok(s) => s,
            Err(e) => {
                let msg = format!("starting {:?}: {}", exec.argv, vmm::error_chain(&e));
                let _ = std::fs::write(dir.join(START_ERROR), &msg);
                log.error(&msg);
                return 127;
            }
        };
        if let Ok(mut c) = control.lock() {
            *c = Some(session.control());
        }
        if let Ok(mut record) = self.state.load(id) {
            record.status = Status::Running;
            let _ = self.state.save(&record);
        }
        let copies = self.streams.start(
            session.stdin.take(),
            session.stdout.take(),
            session.stderr.take(),
        );
        let code = match session.wait() {
            Ok(exited) => match exited.status {
                ExitStatus::Code(c) => c,
                other => other.shell_code(),
            },
            Err(e) => {
                log.error(&format!(
                    "the container's VM failed: {}",
                    vmm::error_chain(&e)
                ));
                VM_FAILED
            }
        };
        for c in copies.unwrap_or_default() {
            let _ = c.join();
        }
        let _ = self.vm.shutdown(Duration::from_millis(100));
        if let Some(a) = &self.adopted {
            match crate::netns::restore(a) {
                Ok(()) => {
                    let _ = std::fs::remove_file(self.dir.join(crate::netns::TAKEN_FILE));
                }
                Err(e) => log.warn(&format!("restoring {}: {e}", a.interface)),
            }
        }
        if let Ok(mut record) = self.state.load(id) {
            record.status = Status::Stopped;
            let _ = self.state.save(&record);
        }
        code
    }

    /// Moves the address CNI gave the namespace's interface to the guest's eth0
    /// (crate::netns); nothing to do without a network or a CNI interface.
    fn adopt_network(&mut self, log: &Log) -> Result<(), OciError> {
        if !self.networked {
            return Ok(());
        }
        let Some(adopted) = crate::netns::adopt(TAP)? else {
            return Ok(());
        };
        let script = adopted.guest_script();
        self.adopted = Some(adopted.clone());
        if let Some(netns) = &self.netns_path {
            // For delete, should this process be killed before it gives it back.
            let taken = crate::netns::Taken {
                netns: netns.clone(),
                adopted: adopted.clone(),
            };
            if let Ok(text) = serde_json::to_vec(&taken) {
                let _ = std::fs::write(self.dir.join(crate::netns::TAKEN_FILE), text);
            }
        }
        let out = self
            .sandbox
            .exec(&ExecRequest::new(["sh", "-c", script.as_str()]))
            .map_err(|e| {
                OciError::Vm(format!(
                    "configuring the guest's eth0: {}",
                    vmm::error_chain(&e)
                ))
            })?;
        if !out.status.success() {
            return Err(OciError::Vm(format!(
                "configuring the guest's eth0 ({script}): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        log.write(
            "info",
            &format!(
                "{} {}/{} moved to the guest's eth0",
                adopted.interface, adopted.address, adopted.prefix
            ),
        );
        Ok(())
    }

    /// Waits until `start` writes to the FIFO (true) or the VM ends (false).
    fn wait_for_start(&mut self, log: &Log) -> bool {
        loop {
            let mut pfd = libc::pollfd {
                fd: self.fifo.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the call.
            let r = unsafe { libc::poll(&mut pfd, 1, 500) };
            if r > 0 && pfd.revents & libc::POLLIN != 0 {
                let mut byte = [0u8; 1];
                if matches!(self.fifo.read(&mut byte), Ok(1)) {
                    return true;
                }
            }
            if !self.vm.is_running() {
                log.error("the container's VM ended before start");
                return false;
            }
        }
    }
}

/// Forwards the blocked signals to the container's process once it runs; before,
/// a terminating one ends the VMM process (as it would runc's waiting init).
fn spawn_signal_thread(
    set: libc::sigset_t,
    control: Arc<Mutex<Option<SessionControl>>>,
    dir: PathBuf,
    id: String,
    log: Log,
) {
    std::thread::spawn(move || loop {
        let sig = signals::wait(&set);
        if sig == 0 {
            continue;
        }
        let ctl = control.lock().ok().and_then(|c| c.clone());
        match ctl {
            Some(ctl) => {
                if let Err(e) = ctl.kill(sig) {
                    log.warn(&format!("forwarding signal {sig} to {id}: {e}"));
                }
            }
            None if signals::ends_unstarted(sig) => {
                let _ = std::fs::remove_file(dir.join(START_FIFO));
                std::process::exit(128 + sig);
            }
            None => {}
        }
    });
}
