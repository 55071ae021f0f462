//! Errors of building and running a VM, each naming what failed.

use std::path::PathBuf;

/// Errors building or starting a VM.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// The KVM device could not be opened.
    #[error("cannot open {p}: {1}{hint}", p = .0.display(), hint = kvm_hint(.1))]
    KvmOpen(PathBuf, std::io::Error),
    /// KVM_CREATE_VM failed.
    #[error("KVM_CREATE_VM failed")]
    CreateVm(#[source] kvm_ioctls::Error),
    /// KVM_GET_SUPPORTED_CPUID failed.
    #[error("KVM_GET_SUPPORTED_CPUID failed")]
    SupportedCpuid(#[source] kvm_ioctls::Error),
    /// Guest memory below the minimum.
    #[error("guest memory of {0} bytes is too small: minivmm needs at least {min} MiB", min = crate::config::MIN_MEM_SIZE >> 20)]
    MemTooSmall(u64),
    /// Guest memory above what the host has.
    #[error("guest memory of {a} MiB is more than this host's {b} MiB of RAM", a = .0 >> 20, b = .1 >> 20)]
    MemTooLarge(u64, u64),
    /// Guest memory not a multiple of the page size.
    #[error("guest memory of {0} bytes is not a multiple of 4 KiB")]
    MemUnaligned(u64),
    /// Huge-page guest memory whose size is not a whole number of huge pages.
    #[error("guest memory of {mib} MiB with huge pages is not a multiple of the {huge} KiB huge page size", mib = .0 >> 20, huge = .1 >> 10)]
    MemNotHugeAligned(u64, u64),
    /// Too few huge pages reserved on the host.
    #[error("guest memory of {mib} MiB needs {needed} huge pages of {huge} KiB, but the host has {free} free (reserve them: echo {needed} > /proc/sys/vm/nr_hugepages)", mib = .0 >> 20, needed = .0 / .1, huge = .1 >> 10, free = .2)]
    HugePagesUnavailable(u64, u64, u64),
    /// The deferred-teardown helper process could not be started.
    #[error("cannot start the teardown helper process")]
    TeardownHelper(#[source] std::io::Error),
    /// Zero vCPUs asked for.
    #[error("a VM needs at least one vCPU")]
    NoVcpus,
    /// More vCPUs than KVM or the MP table allow.
    #[error("{0} vCPUs requested, but at most {1} are supported on this host")]
    TooManyVcpus(usize, usize),
    /// The guest memory mapping could not be created.
    #[error("cannot allocate {mib} MiB of guest memory: {1}", mib = .0 >> 20)]
    GuestMemory(u64, String),
    /// KVM_SET_USER_MEMORY_REGION failed.
    #[error("KVM_SET_USER_MEMORY_REGION failed")]
    SetMemoryRegion(#[source] kvm_ioctls::Error),
    /// Architecture set-up failed.
    #[error("architecture set-up")]
    Arch(#[from] arch::ArchError),
    /// Loading the kernel, initrd or command line failed.
    #[error(transparent)]
    Boot(#[from] boot::BootError),
    /// A device could not be placed on a bus.
    #[error("device bus")]
    Bus(#[from] devices::BusError),
    /// An eventfd could not be created.
    #[error("cannot create an eventfd")]
    EventFd(#[source] std::io::Error),
    /// KVM_IRQFD failed.
    #[error("KVM_IRQFD for GSI {0} failed")]
    Irqfd(u32, #[source] kvm_ioctls::Error),
    /// KVM_CREATE_VCPU failed.
    #[error("KVM_CREATE_VCPU {0} failed")]
    CreateVcpu(u8, #[source] kvm_ioctls::Error),
    /// The vCPU kick signal handler could not be installed.
    #[error("cannot install the vCPU kick signal handler")]
    KickHandler(#[source] vmm_sys_util::errno::Error),
    /// The console log file could not be created.
    #[error("cannot create console log {p}", p = .0.display())]
    ConsoleFile(PathBuf, #[source] std::io::Error),
    /// The seccomp filters could not be built or installed.
    #[error("seccomp")]
    Seccomp(#[from] seccomp::SeccompError),
    /// A thread could not be started.
    #[error("cannot start thread {0}")]
    SpawnThread(&'static str, #[source] std::io::Error),
    /// The initrd is at least as big as all of guest memory (the exact fit, above the
    /// kernel, is checked when it is loaded).
    #[error("initrd {p} ({1} bytes) does not fit in guest memory ({mib} MiB)", p = .0.display(), mib = .2 >> 20)]
    InitrdBiggerThanMemory(PathBuf, u64, u64),
    /// More virtio devices than IRQs for them.
    #[error("too many virtio devices: at most {0}")]
    TooManyDevices(usize),
    /// KVM_IOEVENTFD failed.
    #[error("KVM_IOEVENTFD at {0:#x} failed")]
    Ioeventfd(u64, #[source] kvm_ioctls::Error),
    /// A disk image could not be used.
    #[error(transparent)]
    Disk(#[from] devices::virtio::block::disk::DiskError),
    /// A tap could not be used.
    #[error(transparent)]
    Tap(#[from] devices::virtio::net::tap::TapError),
    /// The vsock device could not be set up (its socket, its CID).
    #[error(transparent)]
    Vsock(#[from] devices::virtio::vsock::VsockError),
    /// The VM has ended (or its event loop is gone).
    #[error("the VM is not running")]
    NotRunning,
    /// A running VM did not do what its handle asked.
    #[error("the VM refused {0}: {1}")]
    Refused(&'static str, String),
    /// A request that must wait for another to end (a snapshot being taken).
    #[error("the VM cannot {0} now: {1}")]
    Busy(&'static str, &'static str),
    /// A device description breaks a rule (`VmSpec::check_devices`).
    #[error("{0}")]
    InvalidDevice(String),
    /// A shared directory (virtio-fs) could not be set up.
    #[error("share: {0}")]
    Share(#[source] virtiofs::FsError),
    /// A snapshot could not be taken.
    #[error("snapshot: {0}")]
    Snapshot(String),
    /// The VM generation ID could not be written or announced.
    #[error("{0}")]
    VmGenId(String),
    /// A snapshot file could not be written or read.
    #[error("snapshot: {0} {p}: {2}", p = .1.display())]
    SnapshotIo(&'static str, PathBuf, std::io::Error),
    /// A snapshot's state file is not one this minivmm reads.
    #[error("snapshot: {0}")]
    SnapshotFormat(snapshot::SnapshotError),
    /// The event manager could not be created.
    #[error("cannot create the event loop: {0:?}")]
    EventManager(event_manager::Error),
}

fn kvm_hint(err: &std::io::Error) -> &'static str {
    match err.kind() {
        std::io::ErrorKind::NotFound => " (is KVM enabled? on x86 load kvm_intel or kvm_amd)",
        std::io::ErrorKind::PermissionDenied => {
            " (add your user to the 'kvm' group, or run as root)"
        }
        _ => "",
    }
}

/// `err` and each of its sources, on one line separated by ": " (how minivmm's
/// programs print an error).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl From<snapshot::SnapshotError> for VmmError {
    fn from(e: snapshot::SnapshotError) -> Self {
        VmmError::SnapshotFormat(e)
    }
}
