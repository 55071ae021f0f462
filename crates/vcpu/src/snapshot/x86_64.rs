//! x86_64: the vCPU state KVM keeps, in the order Firecracker and Cloud Hypervisor
//! restore it (CPUID first, since it decides which MSRs and XSAVE features exist;
//! MP state before the registers; the LAPIC before MSRs, as the TSC deadline MSR
//! needs the LAPIC in its mode; pending events last).

use super::VcpuStateError;
use kvm_bindings::{
    kvm_cpuid_entry2, kvm_debugregs, kvm_lapic_state, kvm_mp_state, kvm_msr_entry, kvm_regs,
    kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave, CpuId, Msrs, KVM_MAX_CPUID_ENTRIES,
};
use kvm_ioctls::{Cap, Kvm, VcpuFd};
use serde::{Deserialize, Serialize};

/// MSRs read per KVM_GET_MSRS call.
const MSR_CHUNK: usize = 64;
/// The legacy XSAVE area KVM_GET_XSAVE fills.
const XSAVE_AREA: usize = 4096;

/// Everything KVM holds for one x86_64 vCPU.
#[derive(Serialize, Deserialize)]
pub struct VcpuState {
    /// The CPUID the guest sees.
    pub cpuid: Vec<kvm_cpuid_entry2>,
    /// Model-specific registers (TSC, kvmclock, syscall entry points...).
    pub msrs: Vec<kvm_msr_entry>,
    /// General registers.
    pub regs: kvm_regs,
    /// Segment, control and descriptor-table registers.
    pub sregs: kvm_sregs,
    /// FPU, SSE and AVX state.
    pub xsave: kvm_xsave,
    /// Extended control registers (XCR0).
    pub xcrs: kvm_xcrs,
    /// The local APIC's registers.
    pub lapic: kvm_lapic_state,
    /// Running, halted, waiting for SIPI.
    pub mp_state: kvm_mp_state,
    /// Pending exceptions, interrupts, NMIs and SMIs.
    pub events: kvm_vcpu_events,
    /// Debug registers.
    pub debugregs: kvm_debugregs,
    /// The guest's TSC frequency, when KVM reports it.
    pub tsc_khz: Option<u32>,
}

impl VcpuState {
    /// The saved instruction pointer.
    pub fn regs_rip(&self) -> u64 {
        self.regs.rip
    }
}

impl std::fmt::Debug for VcpuState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VcpuState")
            .field("rip", &self.regs.rip)
            .field("cpuid_entries", &self.cpuid.len())
            .field("msrs", &self.msrs.len())
            .field("mp_state", &self.mp_state.mp_state)
            .field("tsc_khz", &self.tsc_khz)
            .finish_non_exhaustive()
    }
}

/// What this host allows a snapshot to save: refuses vCPUs whose XSAVE state does not
/// fit the 4 KiB area (AMX); the MSRs to save.
pub fn snapshot_support(kvm: &Kvm) -> Result<Vec<u32>, VcpuStateError> {
    check_xsave_size(kvm.check_extension_int(XSAVE2_CAP))?;
    msrs_to_save(kvm)
}

/// The CPUID feature words a guest's software acts on (leaf, subleaf, register) and
/// the bits in them that are not host features: set by the VMM (hypervisor, HTT) or
/// by the guest's own state (OSXSAVE follows CR4).
const FEATURE_WORDS: [(u32, u32, usize, u32); 8] = [
    (0x1, 0, 2, (1 << 31) | (1 << 27)),
    (0x1, 0, 3, 1 << 28),
    (0x7, 0, 1, 0),
    (0x7, 0, 2, 0),
    (0x7, 0, 3, 0),
    (0xd, 1, 0, 0),
    (0x8000_0001, 0, 2, 0),
    (0x8000_0001, 0, 3, 0),
];

fn register(e: &kvm_cpuid_entry2, reg: usize) -> u32 {
    [e.eax, e.ebx, e.ecx, e.edx][reg]
}

/// The CPUID features a snapshot's vCPU was given that `supported` (this host's
/// KVM_GET_SUPPORTED_CPUID) lacks, as "leaf.subleaf REG bits" lines; empty when the
/// host can run the guest.
pub fn missing_features(saved: &[kvm_cpuid_entry2], supported: &[kvm_cpuid_entry2]) -> Vec<String> {
    let find = |set: &[kvm_cpuid_entry2], leaf: u32, sub: u32| {
        set.iter()
            .find(|e| e.function == leaf && (e.index == sub || e.flags & 1 == 0))
            .copied()
    };
    let mut missing = Vec::new();
    for (leaf, sub, reg, ignored) in FEATURE_WORDS {
        let Some(guest) = find(saved, leaf, sub) else {
            continue;
        };
        let host = find(supported, leaf, sub).map_or(0, |e| register(&e, reg));
        let lacking = register(&guest, reg) & !host & !ignored;
        if lacking != 0 {
            let name = ["EAX", "EBX", "ECX", "EDX"][reg];
            missing.push(format!("CPUID {leaf:#x}.{sub} {name} bits {lacking:#x}"));
        }
    }
    missing
}

/// Refuses a snapshot whose vCPUs were given CPU features this host's KVM does not
/// offer (the guest would fault on them, or worse). The reference is what KVM gives
/// `probe`, a vCPU of the new VM that has not run, for the CPUID it reports as
/// supported: on most hosts that list itself, on some nested ones a fuller one (KVM
/// there adds the host CPU's features to what it reports). `probe`'s own CPUID is
/// set again when its state is restored.
pub fn check_host_features(
    kvm: &Kvm,
    probe: &VcpuFd,
    vcpus: &[VcpuState],
) -> Result<(), VcpuStateError> {
    let supported = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(|e| VcpuStateError::Get("supported CPUID", e))?;
    probe
        .set_cpuid2(&supported)
        .map_err(|e| VcpuStateError::Set("CPUID", e))?;
    let offered = probe
        .get_cpuid2(KVM_MAX_CPUID_ENTRIES)
        .map_err(|e| VcpuStateError::Get("CPUID", e))?;
    for state in vcpus {
        let missing = missing_features(&state.cpuid, offered.as_slice());
        if !missing.is_empty() {
            return Err(VcpuStateError::HostLacksFeatures(missing.join(", ")));
        }
    }
    Ok(())
}

/// The MSRs a snapshot saves: every one KVM lists as saved and restored.
pub fn msrs_to_save(kvm: &Kvm) -> Result<Vec<u32>, VcpuStateError> {
    let list = kvm
        .get_msr_index_list()
        .map_err(|e| VcpuStateError::Get("MSR index list", e))?;
    Ok(list.as_slice().to_vec())
}

/// Reads the state of a vCPU that is not running (parked, with any port or MMIO read
/// it exited for already completed by a KVM_RUN with immediate_exit set).
pub fn save_vcpu(fd: &VcpuFd, msr_indices: &[u32]) -> Result<VcpuState, VcpuStateError> {
    let get = |what| move |e| VcpuStateError::Get(what, e);
    // Only MP state first: reading it makes KVM settle a pending INIT/SIPI.
    let mp_state = fd.get_mp_state().map_err(get("MP state"))?;
    let regs = fd.get_regs().map_err(get("registers"))?;
    let sregs = fd.get_sregs().map_err(get("special registers"))?;
    let xsave = fd.get_xsave().map_err(get("XSAVE state"))?;
    let xcrs = fd.get_xcrs().map_err(get("XCRs"))?;
    let debugregs = fd.get_debug_regs().map_err(get("debug registers"))?;
    let lapic = fd.get_lapic().map_err(get("LAPIC"))?;
    let msrs = read_msrs(fd, msr_indices)?;
    let events = fd.get_vcpu_events().map_err(get("pending events"))?;
    let cpuid = fd
        .get_cpuid2(KVM_MAX_CPUID_ENTRIES)
        .map_err(get("CPUID"))?
        .as_slice()
        .to_vec();
    let tsc_khz = fd.get_tsc_khz().ok();
    Ok(VcpuState {
        cpuid,
        msrs,
        regs,
        sregs,
        xsave,
        xcrs,
        lapic,
        mp_state,
        events,
        debugregs,
        tsc_khz,
    })
}

/// Refuses vCPUs whose XSAVE state does not fit the legacy area (checked once per
/// VM, with the VM's KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2) answer).
pub fn check_xsave_size(xsave2_size: i32) -> Result<(), VcpuStateError> {
    match usize::try_from(xsave2_size) {
        Ok(n) if n > XSAVE_AREA => Err(VcpuStateError::XsaveTooLarge(n)),
        _ => Ok(()),
    }
}

/// The capability to ask for with [`check_xsave_size`].
pub const XSAVE2_CAP: Cap = Cap::Xsave2;

/// Reads `indices`, skipping any MSR KVM lists but cannot read on this vCPU.
fn read_msrs(fd: &VcpuFd, indices: &[u32]) -> Result<Vec<kvm_msr_entry>, VcpuStateError> {
    let mut out = Vec::with_capacity(indices.len());
    let mut rest = indices;
    while !rest.is_empty() {
        let chunk = &rest[..rest.len().min(MSR_CHUNK)];
        let entries: Vec<kvm_msr_entry> = chunk
            .iter()
            .map(|&index| kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut msrs = Msrs::from_entries(&entries).map_err(|_| VcpuStateError::TooMany("MSR"))?;
        let read = fd
            .get_msrs(&mut msrs)
            .map_err(|e| VcpuStateError::Get("MSRs", e))?;
        out.extend_from_slice(&msrs.as_slice()[..read.min(chunk.len())]);
        if read < chunk.len() {
            // KVM stops at the first MSR it cannot read: skip that one.
            log::debug!("snapshot: MSR {:#x} cannot be read; not saved", chunk[read]);
            rest = &rest[read + 1..];
        } else {
            rest = &rest[chunk.len()..];
        }
    }
    Ok(out)
}

/// Writes `state` into a vCPU that has not run yet.
pub fn restore_vcpu(fd: &VcpuFd, state: &VcpuState) -> Result<(), VcpuStateError> {
    let set = |what| move |e| VcpuStateError::Set(what, e);
    let cpuid = CpuId::from_entries(&state.cpuid).map_err(|_| VcpuStateError::TooMany("CPUID"))?;
    fd.set_cpuid2(&cpuid).map_err(set("CPUID"))?;
    if let Some(khz) = state.tsc_khz {
        if fd.get_tsc_khz().ok() != Some(khz) {
            fd.set_tsc_khz(khz)
                .map_err(|e| VcpuStateError::TscFrequency(khz, e))?;
        }
    }
    fd.set_mp_state(state.mp_state).map_err(set("MP state"))?;
    fd.set_regs(&state.regs).map_err(set("registers"))?;
    fd.set_sregs(&state.sregs)
        .map_err(set("special registers"))?;
    // SAFETY: the area was read by KVM_GET_XSAVE (4096 bytes, no extra components:
    // save refuses larger states), so KVM reads nothing past the struct.
    unsafe { fd.set_xsave(&state.xsave) }.map_err(set("XSAVE state"))?;
    fd.set_xcrs(&state.xcrs).map_err(set("XCRs"))?;
    fd.set_debug_regs(&state.debugregs)
        .map_err(set("debug registers"))?;
    fd.set_lapic(&state.lapic).map_err(set("LAPIC"))?;
    write_msrs(fd, &state.msrs)?;
    fd.set_vcpu_events(&state.events)
        .map_err(set("pending events"))?;
    Ok(())
}

fn write_msrs(fd: &VcpuFd, entries: &[kvm_msr_entry]) -> Result<(), VcpuStateError> {
    for (n, chunk) in entries.chunks(MSR_CHUNK).enumerate() {
        let msrs = Msrs::from_entries(chunk).map_err(|_| VcpuStateError::TooMany("MSR"))?;
        let written = fd
            .set_msrs(&msrs)
            .map_err(|e| VcpuStateError::Set("MSRs", e))?;
        if written < chunk.len() {
            return Err(VcpuStateError::MsrRefused {
                index: chunk[written].index,
                set: n * MSR_CHUNK + written,
                total: entries.len(),
            });
        }
    }
    Ok(())
}
