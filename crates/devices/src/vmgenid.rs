//! The VM generation ID: 16 random bytes in guest memory that change whenever the VM
//! is started from a snapshot, and the interrupt that tells the guest they did. The
//! ACPI description (`VM_GEN_COUNTER` and the generic event device whose `_EVT`
//! notifies it) is the architecture's; Linux's vmgenid driver then reseeds the
//! kernel's random number generator, so clones of one snapshot do not share it.

use crate::trigger::EventFdTrigger;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vm_superio::Trigger;

/// Bytes of the ID.
pub const ID_SIZE: usize = 16;

/// Why a new generation could not be announced.
#[derive(Debug, thiserror::Error)]
pub enum VmGenIdError {
    /// The host's random source failed.
    #[error("vmgenid: no random bytes from the host: {0}")]
    Random(#[source] std::io::Error),
    /// The ID's address is not in guest memory.
    #[error("vmgenid: cannot write the ID at {0:#x}")]
    Write(u64),
    /// The interrupt could not be raised.
    #[error("vmgenid: cannot raise its interrupt: {0}")]
    Interrupt(#[source] std::io::Error),
}

/// The generation ID at a fixed guest address, and its notification interrupt.
pub struct VmGenId {
    addr: GuestAddress,
    irq: EventFdTrigger,
}

/// Fresh random bytes from the host kernel (getrandom, no descriptor needed).
fn random_id() -> Result<[u8; ID_SIZE], VmGenIdError> {
    let mut id = [0u8; ID_SIZE];
    let mut filled = 0;
    while filled < ID_SIZE {
        // SAFETY: the pointer and length describe the unfilled tail of `id`.
        let n = unsafe { libc::getrandom(id[filled..].as_mut_ptr().cast(), ID_SIZE - filled, 0) };
        match n {
            n if n > 0 => filled += n as usize,
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(VmGenIdError::Random(e));
                }
            }
        }
    }
    Ok(id)
}

impl VmGenId {
    /// An ID kept at `addr`, announced through `irq`.
    pub fn new(addr: GuestAddress, irq: EventFdTrigger) -> Self {
        Self { addr, irq }
    }

    /// Writes a fresh ID into `mem` (the guest's first, at boot); returns it.
    pub fn write_new_id(&self, mem: &GuestMemoryMmap) -> Result<[u8; ID_SIZE], VmGenIdError> {
        let id = random_id()?;
        mem.write_slice(&id, self.addr)
            .map_err(|_| VmGenIdError::Write(self.addr.0))?;
        Ok(id)
    }

    /// A new generation (a VM started from a snapshot): a fresh ID, and the interrupt
    /// that makes the guest read it. Call before the guest runs again.
    pub fn new_generation(&self, mem: &GuestMemoryMmap) -> Result<[u8; ID_SIZE], VmGenIdError> {
        let id = self.write_new_id(mem)?;
        self.irq.trigger().map_err(VmGenIdError::Interrupt)?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap fails the test
    use super::*;
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    #[test]
    fn each_generation_has_a_new_id_and_an_interrupt() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        let irq = EventFd::new(EFD_NONBLOCK).unwrap();
        let g = VmGenId::new(
            GuestAddress(0xf_f000),
            EventFdTrigger::new(irq.try_clone().unwrap()),
        );
        let first = g.write_new_id(&mem).unwrap();
        assert!(irq.read().is_err(), "no interrupt at boot");
        let second = g.new_generation(&mem).unwrap();
        assert_ne!(first, second);
        let mut back = [0u8; ID_SIZE];
        mem.read_slice(&mut back, GuestAddress(0xf_f000)).unwrap();
        assert_eq!(back, second);
        assert_eq!(irq.read().unwrap(), 1);
        let outside = VmGenId::new(
            GuestAddress(0x20_0000),
            EventFdTrigger::new(irq.try_clone().unwrap()),
        );
        assert!(matches!(
            outside.write_new_id(&mem),
            Err(VmGenIdError::Write(0x20_0000))
        ));
    }
}
