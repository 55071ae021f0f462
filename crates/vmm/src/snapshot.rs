//! Snapshots of a paused VM (x86_64): every vCPU's state (saved by its own thread
//! while parked), the in-kernel interrupt controllers, PIT and clock, the platform
//! devices, the virtio-mmio transports' registers, and guest memory.
//!
//! A snapshot is a directory: `state` (the `snapshot` crate's checksummed container
//! around [`SnapshotState`] as JSON) and `memory` (guest RAM, the regions one after
//! the other, as [`SnapshotState::memory`] lists them). A snapshot is trusted input:
//! it names the disk images and taps a restored VM opens unless it is given its own.
//! Restoring: [`open`], then the builder with [`apply`] (docs/snapshot.md).

use crate::platform::{LegacyHandles, LegacyState};
use crate::spec::VmSpec;
use devices::virtio::mmio::{MmioTransport, TransportState};
use kvm_ioctls::VmFd;
use serde::{Deserialize, Serialize};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use vcpu::snapshot::{SaveJob, VcpuState};
use vcpu::RunState;
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// How long parked vCPUs get to save their state.
const SAVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Name of the state file in a snapshot directory.
pub const STATE_FILE: &str = "state";
/// Name of the guest memory file in a snapshot directory.
pub const MEMORY_FILE: &str = "memory";

/// One guest RAM region and where it lies in the memory file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryRegion {
    /// Guest-physical start.
    pub guest_addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// Offset in the memory file.
    pub file_offset: u64,
}

/// Everything a snapshot's state file holds.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotState {
    /// The VM's description, as it was built.
    pub spec: VmSpec,
    /// The in-kernel interrupt controllers, PIT and clock.
    pub vm: arch::vm_state::VmState,
    /// Each vCPU, in order.
    pub vcpus: Vec<VcpuState>,
    /// The platform devices.
    pub legacy: LegacyState,
    /// Each virtio-mmio transport, in slot order.
    pub transports: Vec<TransportState>,
    /// Guest RAM regions in the memory file.
    pub memory: Vec<MemoryRegion>,
}

/// What a handle and the event loop exchange for a snapshot: the memory file the
/// handle opened (the event loop writes guest memory into it, so that no device
/// touches memory in between), and the state the event loop saved.
#[derive(Default)]
pub(crate) struct Exchange {
    pub memory_file: Option<std::fs::File>,
    pub state: Option<SnapshotState>,
}

/// The exchange, shared.
pub(crate) type SnapshotSlot = Arc<Mutex<Exchange>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the event loop needs to take a snapshot.
pub(crate) struct SnapshotSource {
    pub spec: VmSpec,
    pub legacy: LegacyHandles,
    pub transports: Vec<Arc<Mutex<MmioTransport>>>,
    pub msrs: Result<Vec<u32>, String>,
    pub out: SnapshotSlot,
}

/// The guest RAM regions, laid out one after the other in the memory file.
pub(crate) fn memory_layout(memory: &GuestMemoryMmap) -> Vec<MemoryRegion> {
    let mut offset = 0;
    memory
        .iter()
        .map(|r| {
            let region = MemoryRegion {
                guest_addr: r.start_addr().0,
                size: r.len(),
                file_offset: offset,
            };
            offset += r.len();
            region
        })
        .collect()
}

impl SnapshotSource {
    /// Saves the state of a VM whose `vcpus` live vCPU threads are parked into the
    /// slot, and its memory into the slot's file. Runs on the event loop, which owns
    /// `vm` and serves the devices: none of them can touch guest memory meanwhile (a
    /// block device's thread serves what was queued first, and gets no more).
    pub(crate) fn collect(
        &self,
        vm: &VmFd,
        state: &RunState,
        vcpus: usize,
        memory: &GuestMemoryMmap,
    ) -> Result<(), String> {
        let msrs = self.msrs.clone()?;
        // Devices first: a refusal (an active virtio device) costs nothing then.
        let transports = self
            .transports
            .iter()
            .map(|t| lock(t).save())
            .collect::<Result<Vec<_>, _>>()?;
        let legacy = self.legacy.save()?;
        let job = Arc::new(SaveJob::new(msrs));
        state.post_job(job.clone());
        let saved = job.wait(vcpus, SAVE_TIMEOUT);
        state.clear_job();
        let vcpus = saved?;
        let vm_state = arch::vm_state::save_vm(vm).map_err(|e| e.to_string())?;
        let layout = memory_layout(memory);
        let mut file = lock(&self.out)
            .memory_file
            .take()
            .ok_or("no memory file was given")?;
        crate::memory_file::write_sparse(memory, &layout, &mut file)?;
        lock(&self.out).state = Some(SnapshotState {
            spec: self.spec.clone(),
            vm: vm_state,
            vcpus,
            legacy,
            transports,
            memory: layout,
        });
        Ok(())
    }
}

/// The origin a snapshot records and checks: this minivmm on this architecture.
pub fn origin() -> snapshot::Origin {
    snapshot::Origin::new(env!("CARGO_PKG_VERSION"), std::env::consts::ARCH)
}

/// Takes a snapshot into `dir` (created if missing) through `ask` (which has the
/// event loop fill `slot`): the memory file is created here and written by the event
/// loop, then synced here; the state file is written last, so a directory with a
/// state file is complete.
pub(crate) fn take(
    dir: &Path,
    slot: &SnapshotSlot,
    ask: impl FnOnce() -> Result<(), crate::error::VmmError>,
) -> Result<(), crate::error::VmmError> {
    use crate::error::VmmError;
    let io = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |e| VmmError::SnapshotIo(what, path, e)
    };
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    // A new file under a name of its own, renamed over `memory` only once complete:
    // VMs restored from an earlier snapshot in `dir` map the old file, which must not
    // change under them, and a refused or failed snapshot leaves `dir` as it was.
    let mem_path = dir.join(MEMORY_FILE);
    let tmp_path = dir.join(format!(".{MEMORY_FILE}.{}.tmp", std::process::id()));
    // Guest memory holds the guest's secrets: readable by the owner only.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp_path)
        .map_err(io("creating", &tmp_path))?;
    let result = (|| {
        let given = file.try_clone().map_err(io("opening", &tmp_path))?;
        *lock(slot) = Exchange {
            memory_file: Some(given),
            state: None,
        };
        let asked = ask();
        let state = std::mem::take(&mut *lock(slot)).state;
        asked?;
        let state =
            state.ok_or_else(|| VmmError::Snapshot("the VM answered without a state".into()))?;
        // Pages of zeros were skipped: the file ends where the last region does.
        let size = state
            .memory
            .iter()
            .map(|r| r.file_offset + r.size)
            .max()
            .unwrap_or(0);
        file.set_len(size).map_err(io("sizing", &tmp_path))?;
        file.sync_all().map_err(io("syncing", &tmp_path))?;
        // The old state goes first: a directory with a state file is complete.
        let state_path = dir.join(STATE_FILE);
        match std::fs::remove_file(&state_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(VmmError::SnapshotIo("removing", state_path, e))
            }
            _ => {}
        }
        std::fs::rename(&tmp_path, &mem_path).map_err(io("renaming into", &mem_path))?;
        snapshot::write_file(&state_path, &origin(), &state)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp_path);
    }
    result
}

/// Reads and checks a snapshot's state file.
pub fn read_state(dir: &Path) -> Result<SnapshotState, snapshot::SnapshotError> {
    snapshot::read_file(&dir.join(STATE_FILE), &origin())
}

/// A snapshot opened for restoring: its checked state and its memory file.
pub(crate) struct Restore {
    pub state: SnapshotState,
    pub memory: std::fs::File,
}

/// Opens the snapshot in `dir`: the state file checked (format, version,
/// architecture, checksum) and parsed, the memory file the size its regions need.
pub(crate) fn open(dir: &Path) -> Result<Restore, crate::error::VmmError> {
    use crate::error::VmmError;
    let state = read_state(dir)?;
    let path = dir.join(MEMORY_FILE);
    let memory =
        std::fs::File::open(&path).map_err(|e| VmmError::SnapshotIo("opening", path.clone(), e))?;
    let size = memory
        .metadata()
        .map_err(|e| VmmError::SnapshotIo("reading", path.clone(), e))?
        .len();
    let needed = state
        .memory
        .iter()
        .map(|r| r.file_offset.saturating_add(r.size))
        .max()
        .unwrap_or(0);
    let total: u64 = state.memory.iter().map(|r| r.size).sum();
    if size != needed || total != state.spec.mem_size {
        return Err(VmmError::Snapshot(format!(
            "{} has {size} bytes; the state file describes {needed} bytes of a {}-byte guest",
            path.display(),
            state.spec.mem_size
        )));
    }
    if state.vcpus.len() != state.spec.vcpus {
        return Err(VmmError::Snapshot(format!(
            "the state file has {} vCPUs for a {}-vCPU guest",
            state.vcpus.len(),
            state.spec.vcpus
        )));
    }
    Ok(Restore { state, memory })
}

/// Puts a snapshot's state into a machine built from its description: the in-kernel
/// devices, each vCPU, the platform devices and the virtio transports. Runs before
/// any vCPU thread exists.
pub(crate) fn apply(
    state: &SnapshotState,
    vm: &VmFd,
    vcpus: &[kvm_ioctls::VcpuFd],
    legacy: &LegacyHandles,
    virtio: &[crate::virtio_devices::VirtioSlot],
    memory: &GuestMemoryMmap,
) -> Result<(), crate::error::VmmError> {
    use crate::error::VmmError;
    if vcpus.len() != state.vcpus.len() || virtio.len() != state.transports.len() {
        return Err(VmmError::Snapshot(format!(
            "the snapshot has {} vCPUs and {} virtio devices; this VM {} and {}",
            state.vcpus.len(),
            state.transports.len(),
            vcpus.len(),
            virtio.len()
        )));
    }
    arch::vm_state::restore_vm(vm, &state.vm).map_err(|e| VmmError::Snapshot(e.to_string()))?;
    for (i, (fd, saved)) in vcpus.iter().zip(&state.vcpus).enumerate() {
        vcpu::snapshot::restore_vcpu(fd, saved)
            .map_err(|e| VmmError::Snapshot(format!("vCPU {i}: {e}")))?;
    }
    legacy.restore(&state.legacy).map_err(VmmError::Snapshot)?;
    for (slot, saved) in virtio.iter().zip(&state.transports) {
        lock(&slot.transport)
            .restore(saved)
            .map_err(VmmError::Snapshot)?;
    }
    // Last, after the interrupt controllers took their saved state: the guest sees
    // the new generation when it runs.
    legacy.new_generation(memory).map_err(VmmError::VmGenId)?;
    Ok(())
}

/// Checks the backends a restored VM is given against the snapshot's devices, which
/// the guest knows: as many disks (read-only where they were, the same serials), as
/// many network interfaces (each keeps its MAC: an interface given without one gets
/// the snapshot's), the same vsock CID, the rng as it was.
pub(crate) fn check_backends(
    saved: &VmSpec,
    given: &mut VmSpec,
) -> Result<(), crate::error::VmmError> {
    let refuse = |what: String| Err(crate::error::VmmError::Snapshot(what));
    if given.disks.len() != saved.disks.len() {
        return refuse(format!(
            "the snapshot's guest has {} disks; {} were given",
            saved.disks.len(),
            given.disks.len()
        ));
    }
    for (i, (g, s)) in given.disks.iter().zip(&saved.disks).enumerate() {
        if g.read_only != s.read_only || g.id != s.id {
            return refuse(format!(
                "disk {i} must be {} with serial {:?}, as in the snapshot",
                if s.read_only {
                    "read-only"
                } else {
                    "read-write"
                },
                s.id
            ));
        }
    }
    if given.nets.len() != saved.nets.len() {
        return refuse(format!(
            "the snapshot's guest has {} network interfaces; {} were given",
            saved.nets.len(),
            given.nets.len()
        ));
    }
    for (i, (g, s)) in given.nets.iter_mut().zip(&saved.nets).enumerate() {
        let mac = s
            .mac
            .unwrap_or_else(|| devices::virtio::net::default_mac(&s.tap));
        match g.mac {
            None => g.mac = Some(mac),
            Some(m) if m == mac => {}
            Some(m) => {
                return refuse(format!(
                    "interface {i} keeps its MAC {} in a restored guest, not {}",
                    crate::format_mac(&mac),
                    crate::format_mac(&m)
                ))
            }
        }
    }
    let cid = |v: &Option<crate::VsockConfig>| v.as_ref().map(|v| v.cid);
    if cid(&given.vsock) != cid(&saved.vsock) {
        return refuse(format!(
            "a restored guest keeps its vsock device and CID ({:?}), not {:?}",
            cid(&saved.vsock),
            cid(&given.vsock)
        ));
    }
    if given.rng != saved.rng {
        return refuse("a restored guest keeps its rng device as it was".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap fails the test
    use super::*;

    #[test]
    fn a_restored_vm_keeps_the_devices_its_guest_knows() {
        let mut saved = VmSpec::new("k");
        saved.disks = vec![
            "path=a.img".parse().unwrap(),
            "path=b.img,readonly=on".parse().unwrap(),
        ];
        saved.nets = vec!["tap=tap0".parse().unwrap()];
        saved.vsock = Some("socket=/run/a.sock,cid=7".parse().unwrap());

        // Its own images, tap and socket: taken; the interface keeps the MAC its tap
        // name gave it.
        let mut given = saved.clone();
        given.disks = vec![
            "path=c.img".parse().unwrap(),
            "path=d.img,readonly=on".parse().unwrap(),
        ];
        given.nets = vec!["tap=clone0".parse().unwrap()];
        given.vsock = Some("socket=/run/b.sock,cid=7".parse().unwrap());
        check_backends(&saved, &mut given).unwrap();
        assert_eq!(
            given.nets[0].mac,
            Some(devices::virtio::net::default_mac("tap0"))
        );

        let bad = |f: &dyn Fn(&mut VmSpec)| {
            let mut g = saved.clone();
            f(&mut g);
            check_backends(&saved, &mut g).unwrap_err().to_string()
        };
        assert!(bad(&|g| {
            g.disks.pop();
        })
        .contains("2 disks; 1 were given"));
        assert!(bad(&|g| g.disks[1].read_only = false).contains("read-only"));
        assert!(bad(&|g| g.nets[0].mac = Some([2, 0, 0, 0, 0, 1])).contains("keeps its MAC"));
        assert!(bad(&|g| g.vsock.as_mut().unwrap().cid = 8).contains("CID"));
        assert!(bad(&|g| g.rng = false).contains("rng"));
    }
}
