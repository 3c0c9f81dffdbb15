//! The idle loop of a core's scheduler context: spin a bounded while, then sleep in the
//! kernel until woken (doorbell) or the next timer is due.

use std::cmp::Reverse;
use std::time::{Duration, Instant};

use super::Core;
use crate::loom::Ordering;

/// Free stack blocks per size class a core keeps resident when it goes idle; the
/// memory of the rest is released (the blocks stay pooled).
const POOL_KEEP: usize = 256;

impl Core {
    /// Bumps the epoch from the scheduler context (idle rounds, removal waits).
    pub(crate) fn bump_epoch(&self) {
        let l = self.local();
        // SAFETY: called on this core's OS thread, in its scheduler context.
        unsafe {
            (*l).epoch += 1;
            self.epoch.store((*l).epoch, Ordering::Release);
        }
    }
    /// The idle wait of the scheduler context: spin a bounded while, then sleep in the
    /// kernel until woken or the next timer is due.
    pub(crate) fn idle(&self) {
        let l = self.local();
        // SAFETY: called from this core's scheduler context.
        let next_deadline = unsafe { (*l).timers.peek().map(|Reverse(t)| t.deadline) };
        // SAFETY: as above.
        let sending = unsafe { (*l).out_mask != 0 };
        let start = Instant::now();
        loop {
            if self.doorbell.pending() || self.slots_pending() || self.role().idle_work(self) {
                return;
            }
            if sending {
                // SAFETY: as above.
                let done = unsafe {
                    self.flush(&mut *l);
                    (*l).out_mask == 0
                };
                if done {
                    return;
                }
            }
            let now = Instant::now();
            if next_deadline.is_some_and(|d| d <= now) {
                return;
            }
            if now.duration_since(start) >= self.spin {
                break;
            }
            self.bump_epoch();
            // Look for work after every pause (a sender's offer is seen within one
            // pause, ~40 ns on this kind of CPU), and at the clock only every 64.
            for _ in 0..64 {
                std::hint::spin_loop();
                if self.doorbell.pending() || self.slots_pending() || self.role().idle_work(self) {
                    return;
                }
            }
        }
        // About to sleep in the kernel, so not on a hot path: give back the memory of
        // stack blocks this core has not needed recently.
        // SAFETY: as above.
        unsafe {
            if (*l).pool.len() > POOL_KEEP {
                // The reaper (a maintenance thread) releases their memory.
                (*l).pool.hand_surplus(POOL_KEEP);
            }
        }
        let mark = self.role().sleep_mark(self);
        if self
            .doorbell
            .prepare_sleep_as(mark, || self.slots_pending() || self.role().idle_work(self))
        {
            let mut timeout = next_deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if sending {
                // A destination's slot is still full: look again soon.
                let retry = Duration::from_micros(200);
                timeout = Some(timeout.map_or(retry, |t| t.min(retry)));
            }
            if timeout != Some(Duration::ZERO) {
                // A futex sleep, or the hypercore's monitored wait (`offload::wait`).
                self.role().idle_sleep(self, timeout);
            }
            self.doorbell.end_sleep();
            // SAFETY: as above.
            unsafe { (*l).stats.idle_sleeps += 1 };
        }
        self.bump_epoch();
    }
}
