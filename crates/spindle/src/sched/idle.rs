//! The idle loop of a core's scheduler context: ask for work, spin a bounded while
//! watching this core's own slots (and, for its type's searcher, asking again: `steal`),
//! then sleep in the kernel until woken (doorbell) or the next timer is due.

use std::cmp::Reverse;
use std::time::{Duration, Instant};

use std::sync::atomic::Ordering as StdOrdering;

use super::Core;
use super::core::CoreLocal;
use crate::loom::Ordering;

/// Free stack blocks per size class a core keeps resident when it goes idle; the
/// memory of the rest is released (the blocks stay pooled).
const POOL_KEEP: usize = 256;

/// How long an idle worker spins before it asks another core for work: longer than a
/// cross-core reply (~0.2–0.7 µs), far shorter than the spin window (50 µs default).
const ASK_DELAY: Duration = Duration::from_micros(2);

/// Where an idle worker stands in its search for work (`Core::look_for_work`).
struct Search {
    /// The core is a worker (the service core never asks).
    worker: bool,
    /// The core asked once in this idle spell.
    asked: bool,
    /// The core holds its type's spinning token.
    token: bool,
    /// Time spun so far, as of the last clock reading (one per round of 64 pauses: a
    /// spell that ends within its first round counts as none).
    spun: Duration,
}

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
    /// The idle wait of the scheduler context: ask a busy core of this type for work,
    /// spin a bounded while watching this core's slots and doorbell — asking again
    /// whenever the last request was answered if this core holds its type's spinning
    /// token (`steal`) — then sleep in the kernel until woken or the next timer is due.
    ///
    /// Every idle core watches its own slots for the spin window: a thread woken or
    /// spawned for it then arrives in one cache-line transfer, not a futex wake
    /// (~25 µs). Each idle worker asks once per spell; only the token holder keeps
    /// asking, so repeated search traffic comes from one core per type.
    pub(crate) fn idle(&self) {
        let l = self.local();
        // SAFETY: called from this core's scheduler context, which owns its local state.
        let (next_deadline, sending) = unsafe {
            (
                (*l).timers.peek().map(|Reverse(t)| t.deadline),
                (*l).out_mask != 0,
            )
        };
        // SAFETY: as above: the scheduler context owns the local state.
        unsafe { (*l).spell_asked = 0 };
        let worker = !self.set().is_service(self.id);
        // A token a waker handed this core is taken at once (it was woken to search);
        // otherwise the token is tried only when the core starts to search.
        let mut search = Search {
            worker,
            asked: !worker,
            token: self.spin_token.load(StdOrdering::Relaxed) && self.start_spinning(),
            spun: Duration::ZERO,
        };
        let start = Instant::now();
        let found = self.look_for_work(l, &mut search, next_deadline, sending, start);
        if search.token {
            self.stop_spinning();
        }
        let spun = u64::try_from(search.spun.as_nanos()).unwrap_or(u64::MAX);
        // SAFETY: as above.
        unsafe { (*l).stats.spin_ns += spun };
        if found {
            return;
        }
        // SAFETY: as above.
        unsafe {
            if !search.asked {
                // A spin window shorter than the ask delay: ask before sleeping.
                self.ask_for_work(&mut *l);
            }
            self.publish_stats(&*l);
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
    ///
    /// A worker starts to search once it has spun `ASK_DELAY`: it asks for work once,
    /// tries to take its type's spinning token, and while it holds the token asks
    /// again whenever its last request was taken. Most idle spells of a busy core are
    /// shorter than the delay (a partner's reply, a wake): they end without touching
    /// another core's line or the type's token.
    fn look_for_work(
        &self,
        l: *mut CoreLocal,
        search: &mut Search,
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
            search.spun = now.duration_since(start);
            if next_deadline.is_some_and(|d| d <= now) {
                return true;
            }
            if search.spun >= self.spin {
                return false;
            }
            self.bump_epoch();
            if search.worker && (search.token || !search.asked) && search.spun >= ASK_DELAY {
                if !search.asked {
                    search.asked = true;
                    search.token = search.token || self.start_spinning();
                }
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
