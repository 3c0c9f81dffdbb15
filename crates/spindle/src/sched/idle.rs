//! The idle loop of a core's scheduler context: ask for work, spin a bounded while if
//! this core is its type's spinner (`steal`), then sleep in the kernel until woken
//! (doorbell) or the next timer is due.

use std::cmp::Reverse;
use std::time::{Duration, Instant};

use std::sync::atomic::Ordering as StdOrdering;

use super::Core;
use super::core::CoreLocal;
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
    /// The idle wait of the scheduler context: ask a busy core of this type for work;
    /// if this core holds its type's spinning token (`steal`), spin a bounded while,
    /// asking again whenever the last request was answered; then sleep in the kernel
    /// until woken or the next timer is due.
    pub(crate) fn idle(&self) {
        let l = self.local();
        // SAFETY: called from this core's scheduler context.
        let (next_deadline, sending) = unsafe {
            (
                (*l).timers.peek().map(|Reverse(t)| t.deadline),
                (*l).out_mask != 0,
            )
        };
        // SAFETY: as above.
        unsafe { self.publish_stats(&*l) };
        let worker = !self.set().is_service(self.id);
        if worker {
            // SAFETY: as above.
            unsafe { self.ask_for_work(&mut *l) };
        }
        let spinning = self.start_spinning();
        let start = Instant::now();
        let found = self.look_for_work(l, spinning, worker, next_deadline, sending, start);
        if spinning {
            self.stop_spinning();
            let spun = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
            // SAFETY: as above.
            unsafe { (*l).stats.spin_ns += spun };
        }
        if found {
            return;
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
        let ty = self.ty.load(Ordering::Relaxed);
        let sleepers = &self.set().sleeping[ty];
        sleepers.fetch_add(1, StdOrdering::Relaxed);
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
        sleepers.fetch_sub(1, StdOrdering::Relaxed);
        self.bump_epoch();
    }

    /// The spinning part of `idle`: true when work arrived (or a timer is due, or the
    /// outgoing lists went out) and the core must go back to its scheduler loop.
    fn look_for_work(
        &self,
        l: *mut CoreLocal,
        spinning: bool,
        worker: bool,
        next_deadline: Option<Instant>,
        sending: bool,
        start: Instant,
    ) -> bool {
        loop {
            if self.doorbell.pending() || self.slots_pending() || self.role().idle_work(self) {
                return true;
            }
            if sending {
                // SAFETY: called from this core's scheduler context.
                let done = unsafe {
                    self.flush(&mut *l);
                    (*l).out_mask == 0
                };
                if done {
                    return true;
                }
            }
            let now = Instant::now();
            if next_deadline.is_some_and(|d| d <= now) {
                return true;
            }
            if !spinning || now.duration_since(start) >= self.spin {
                return false;
            }
            self.bump_epoch();
            if worker {
                // SAFETY: as above.
                unsafe { self.ask_for_work(&mut *l) };
            }
            // Look for work after every pause (a sender's offer is seen within one
            // pause, ~40 ns on this kind of CPU), and at the clock only every 64.
            for _ in 0..64 {
                std::hint::spin_loop();
                if self.doorbell.pending() || self.slots_pending() || self.role().idle_work(self) {
                    return true;
                }
            }
        }
    }
}
