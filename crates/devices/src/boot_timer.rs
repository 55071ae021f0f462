//! The boot-timer device: one MMIO byte a guest writes a magic value to when it has
//! reached user space, so the VMM can timestamp it. A guest's /init does it with
//! `devmem 0xd0000000 8 123` (busybox).

use crate::bus::BusDevice;

/// The boot timer; `on_signal` runs on every magic write.
pub struct BootTimer {
    magic: u8,
    on_signal: Box<dyn FnMut() + Send>,
}

impl BootTimer {
    /// A boot timer that calls `on_signal` when `magic` is written at offset 0.
    pub fn new(magic: u8, on_signal: Box<dyn FnMut() + Send>) -> Self {
        Self { magic, on_signal }
    }
}

impl BusDevice for BootTimer {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == 0 && data.first() == Some(&self.magic) {
            (self.on_signal)();
        } else {
            log::debug!("boot timer: ignored write of {data:?} at offset {offset}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn only_the_magic_value_at_offset_zero_counts() {
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let mut t = BootTimer::new(
            123,
            Box::new(move || {
                h.fetch_add(1, Ordering::SeqCst);
            }),
        );
        t.write(0, &[122]);
        t.write(1, &[123]);
        assert_eq!(hits.load(Ordering::SeqCst), 0);
        t.write(0, &[123]);
        t.write(0, &[123, 0, 0, 0]);
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }
}
