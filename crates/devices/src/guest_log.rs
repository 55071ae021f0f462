//! Warnings a guest can cause at will (a malformed request, a bad register write)
//! are rate limited: at most [`BURST`] per [`WINDOW`] in the whole process, then one
//! line saying how many were left out. A hostile guest cannot flood the host's log.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Warnings let through per window.
pub const BURST: u32 = 20;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(1);

struct State {
    window_start: Option<Instant>,
    in_window: u32,
    suppressed: u64,
}

static STATE: Mutex<State> = Mutex::new(State {
    window_start: None,
    in_window: 0,
    suppressed: 0,
});

/// Counts one warning at `now`; `Some(n)` if it may be logged, `n` being how many
/// were suppressed before it.
fn admit_at(state: &mut State, now: Instant) -> Option<u64> {
    let fresh = state
        .window_start
        .is_none_or(|start| now.duration_since(start) >= WINDOW);
    if fresh {
        state.window_start = Some(now);
        state.in_window = 0;
    }
    if state.in_window >= BURST {
        state.suppressed += 1;
        return None;
    }
    state.in_window += 1;
    Some(std::mem::take(&mut state.suppressed))
}

#[doc(hidden)]
pub fn admit() -> Option<u64> {
    let mut state = STATE.lock().unwrap_or_else(|p| p.into_inner());
    admit_at(&mut state, Instant::now())
}

/// `log::warn!` for conditions the guest controls, rate limited (see the module).
#[macro_export]
macro_rules! guest_warn {
    ($($arg:tt)+) => {
        if let Some(suppressed) = $crate::guest_log::admit() {
            if suppressed > 0 {
                log::warn!("{suppressed} more guest-caused warnings were left out");
            }
            log::warn!($($arg)+);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_per_window_then_a_count_of_the_rest() {
        let mut s = State {
            window_start: None,
            in_window: 0,
            suppressed: 0,
        };
        let t0 = Instant::now();
        for _ in 0..BURST {
            assert_eq!(admit_at(&mut s, t0), Some(0));
        }
        for _ in 0..1000 {
            assert_eq!(admit_at(&mut s, t0 + WINDOW / 2), None);
        }
        assert_eq!(admit_at(&mut s, t0 + WINDOW), Some(1000));
        assert_eq!(admit_at(&mut s, t0 + WINDOW), Some(0));
    }
}
