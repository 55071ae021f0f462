//! A vCPU's state saved mid-run and restored into a vCPU of another VM: the guest
//! continues where it was. The guest is a three-instruction real-mode loop that
//! counts in AX and reports each count on port 0x80.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test
#![cfg(target_arch = "x86_64")]

use kvm_bindings::{kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use vcpu::snapshot::{
    check_host_features, complete_pending_io, missing_features, msrs_to_save, restore_vcpu,
    save_vcpu, VcpuState,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

const CODE: u64 = 0x1000;
/// inc ax; out 0x80, al; jmp back to inc.
const LOOP: [u8; 5] = [0x40, 0xe6, 0x80, 0xeb, 0xfb];

fn vm_with(kvm: &Kvm, mem: &GuestMemoryMmap) -> (VmFd, VcpuFd) {
    let vm = kvm.create_vm().unwrap();
    vm.set_tss_address(0xfffb_d000).unwrap();
    vm.create_irq_chip().unwrap();
    let host = mem.get_host_address(GuestAddress(0)).unwrap();
    let region = kvm_userspace_memory_region {
        slot: 0,
        guest_phys_addr: 0,
        memory_size: 0x10000,
        userspace_addr: host as u64,
        flags: 0,
    };
    // SAFETY: the region is the mapping of `mem`, which outlives the VM in this test.
    unsafe { vm.set_user_memory_region(region) }.unwrap();
    let vcpu = vm.create_vcpu(0).unwrap();
    (vm, vcpu)
}

/// Runs until the next `out 0x80`; the value written.
fn next_count(vcpu: &mut VcpuFd) -> u8 {
    loop {
        match vcpu.run().unwrap() {
            VcpuExit::IoOut(0x80, data) => return data[0],
            VcpuExit::IoOut(..) | VcpuExit::IoIn(..) => {}
            other => panic!("unexpected exit {other:?}"),
        }
    }
}

fn skip_without_kvm() -> Option<Kvm> {
    match Kvm::new() {
        Ok(kvm) => Some(kvm),
        Err(e) => {
            test_skips::skip("vcpu snapshot_state", format!("no usable /dev/kvm: {e}"));
            None
        }
    }
}

#[test]
fn a_restored_vcpu_continues_its_count() {
    let Some(kvm) = skip_without_kvm() else {
        return;
    };
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
    mem.write_slice(&LOOP, GuestAddress(CODE)).unwrap();
    let (_vm, mut vcpu) = vm_with(&kvm, &mem);
    let cpuid = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).unwrap();
    vcpu.set_cpuid2(&cpuid).unwrap();
    let mut sregs = vcpu.get_sregs().unwrap();
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs).unwrap();
    let mut regs = vcpu.get_regs().unwrap();
    regs.rip = CODE;
    regs.rax = 0;
    regs.rflags = 2;
    vcpu.set_regs(&regs).unwrap();
    for expected in 1..=3 {
        assert_eq!(next_count(&mut vcpu), expected);
    }
    // KVM may finish the `out` (move RIP past it) only on the next KVM_RUN; this
    // does that without entering the guest, so the saved RIP is past it either way.
    complete_pending_io(&mut vcpu).unwrap();
    let msrs = msrs_to_save(&kvm).unwrap();
    let state = save_vcpu(&vcpu, &msrs).unwrap();
    assert_eq!(state.regs.rax & 0xffff, 3);
    assert!(!state.msrs.is_empty());
    // Through the snapshot's serde form.
    let json = serde_json::to_vec(&state).unwrap();
    let state: VcpuState = serde_json::from_slice(&json).unwrap();

    // The original keeps counting; a copy in another VM continues from the same point.
    assert_eq!(next_count(&mut vcpu), 4);
    let copy = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
    copy.write_slice(&LOOP, GuestAddress(CODE)).unwrap();
    let (_vm2, mut restored) = vm_with(&kvm, &copy);
    restore_vcpu(&restored, &state).unwrap();
    let again = save_vcpu(&restored, &msrs).unwrap();
    assert_eq!(again.regs.rip, state.regs.rip);
    assert_eq!(again.regs.rax, state.regs.rax);
    assert_eq!(again.sregs.cs.base, state.sregs.cs.base);
    assert_eq!(again.lapic.regs[..], state.lapic.regs[..]);
    assert_eq!(again.cpuid.len(), state.cpuid.len());
    for expected in 4..=6 {
        assert_eq!(next_count(&mut restored), expected);
    }

    // This host offers what the guest was given; a feature it lacks is named.
    let (_vm3, probe) = vm_with(&kvm, &copy);
    check_host_features(&kvm, &probe, std::slice::from_ref(&state)).unwrap();
    probe.set_cpuid2(&cpuid).unwrap();
    let offered = probe.get_cpuid2(KVM_MAX_CPUID_ENTRIES).unwrap();
    let supported = offered.as_slice();
    assert!(missing_features(&state.cpuid, supported).is_empty());
    let mut richer = state.cpuid.clone();
    let leaf7 = richer
        .iter_mut()
        .find(|e| e.function == 7 && e.index == 0)
        .expect("leaf 7");
    let host7 = supported
        .iter()
        .find(|e| e.function == 7 && e.index == 0)
        .unwrap();
    let absent = (0..32)
        .map(|b| 1u32 << b)
        .find(|b| host7.ebx & b == 0)
        .unwrap();
    leaf7.ebx |= absent;
    let missing = missing_features(&richer, supported);
    assert_eq!(missing, vec![format!("CPUID 0x7.0 EBX bits {absent:#x}")]);
}
