//! What other threads ask a core to do at its next schedule point: rebalance (the
//! balancer) and reschedule (a more urgent thread arrived, or the slice is over).
//!
//! Each request is a word on the core with two writers — the asker sets it, the core
//! clears it when it polls — so a request may be overwritten or cleared unseen: both
//! kinds are made again by their askers (the balancer's next pass, the next tick), and
//! the core never needs a read-modify-write to take one.

use std::sync::atomic::{AtomicBool, AtomicUsize};

use crate::loom::Ordering;

/// A core's reschedule request: its running thread yields at its next runtime call
/// (`guard::maybe_yield`), and its next schedule point takes the request.
#[derive(Default)]
pub(crate) struct Resched(AtomicBool);

impl Resched {
    /// Asks the core to reschedule, from another OS thread: the tick (a slice is
    /// over), the balancer (with a rebalance request), a sender of a more urgent
    /// thread. Release: what the asker wrote before (the balance word, the list in the
    /// exchange slot) is visible to whoever sees the request; the tick's partner is
    /// the acquire of the schedule-point counter (`loom_tick_flag`).
    #[inline]
    pub(crate) fn ask(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Asks from the core's own OS thread (its signal handler, the preemption
    /// trampoline): the thread honours it at its next runtime call.
    #[inline]
    pub(crate) fn ask_here(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether a request is pending. Relaxed: see `guard::maybe_yield`.
    #[inline(always)]
    pub(crate) fn pending(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Takes the request (the core itself, at the start of a schedule point): a
    /// request made after the clear stays for the next one. Relaxed: what an asker
    /// hands over (a list or a work request in a slot, a balance word) is published by
    /// its own release/acquire pair; the flag only says when to look, and the look
    /// follows in the same schedule point.
    #[inline(always)]
    pub(crate) fn take(&self) {
        if self.0.load(Ordering::Relaxed) {
            self.0.store(false, Ordering::Relaxed);
        }
    }

    /// Drops any request (a core that starts).
    pub(crate) fn clear(&self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// A request to send up to `count` runnable threads to core `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rebalance {
    pub(crate) to: usize,
    pub(crate) count: u16,
}

/// The rebalance request word of a core: `(to + 1) << 16 | count`, 0 when there is
/// none.
#[derive(Default)]
pub(crate) struct RebalanceWord(AtomicUsize);

impl RebalanceWord {
    /// Asks for `r` (the balancer). Relaxed: the reschedule flag raised after it, with
    /// release, publishes it to a core that sees the flag.
    pub(crate) fn ask(&self, r: Rebalance) {
        self.0
            .store((r.to + 1) << 16 | usize::from(r.count), Ordering::Relaxed);
    }

    /// Takes the pending request, if any (the core itself, at a schedule point).
    #[inline]
    pub(crate) fn take(&self) -> Option<Rebalance> {
        let w = self.0.load(Ordering::Relaxed);
        if w == 0 {
            return None;
        }
        self.0.store(0, Ordering::Relaxed);
        Some(Rebalance {
            to: (w >> 16) - 1,
            count: (w & 0xffff) as u16,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_round_trips_and_is_taken_once() {
        let w = RebalanceWord::default();
        assert_eq!(w.take(), None);
        w.ask(Rebalance { to: 0, count: 3 });
        assert_eq!(w.take(), Some(Rebalance { to: 0, count: 3 }));
        assert_eq!(w.take(), None);
        w.ask(Rebalance {
            to: 63,
            count: u16::MAX,
        });
        assert_eq!(
            w.take(),
            Some(Rebalance {
                to: 63,
                count: u16::MAX
            })
        );
    }
}
