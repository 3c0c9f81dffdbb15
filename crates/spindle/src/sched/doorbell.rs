//! The doorbell: how another OS thread hands work to a core that may be asleep.
//!
//! 1. The sender makes the work visible (pushes to the core's injection queue), then
//!    [`Doorbell::ring`]: `pending = true` (SeqCst), then `sleeping.swap(0)` (SeqCst);
//!    if that returned 1 the core was asleep or about to sleep, and the sender wakes
//!    it with a futex wake.
//! 2. The core, before sleeping, [`Doorbell::prepare_sleep`]: `sleeping = 1` (SeqCst),
//!    then re-reads `pending` (SeqCst); only if it is still false does it sleep in
//!    `futex_wait(sleeping, 1)`, which returns at once if a sender already set
//!    `sleeping` back to 0.
//!
//! Both sides store, then load the other's flag: the SeqCst total order forbids both
//! loads missing both stores (the StoreLoad hazard), so either the core sees `pending`
//! or the sender sees `sleeping == 1` and wakes it — no wakeup is lost. The loom model
//! below checks this.

use crate::loom::{AtomicBool, AtomicU32, Ordering};

pub(crate) struct Doorbell {
    pending: AtomicBool,
    sleeping: AtomicU32,
}

impl Doorbell {
    pub(crate) fn new() -> Doorbell {
        Doorbell {
            pending: AtomicBool::new(false),
            sleeping: AtomicU32::new(0),
        }
    }

    /// Whether work may be waiting. Relaxed: a hint checked at every schedule point;
    /// the queue's lock orders the work itself.
    #[inline(always)]
    pub(crate) fn pending(&self) -> bool {
        self.pending.load(Ordering::Relaxed)
    }

    /// Clears the pending flag; call before taking the queued work.
    pub(crate) fn clear(&self) {
        self.pending.store(false, Ordering::Relaxed);
    }

    /// Announces work. Returns true if the core must be woken with a futex wake.
    pub(crate) fn ring(&self) -> bool {
        // SeqCst store, then SeqCst RMW: pairs with `prepare_sleep` (StoreLoad).
        self.pending.store(true, Ordering::SeqCst);
        self.sleeping.swap(0, Ordering::SeqCst) == 1
    }

    /// Announces that the core is about to sleep. Returns false if work arrived and
    /// the core must not sleep.
    pub(crate) fn prepare_sleep(&self) -> bool {
        // SeqCst store, then SeqCst load: pairs with `ring` (StoreLoad).
        self.sleeping.store(1, Ordering::SeqCst);
        if self.pending.load(Ordering::SeqCst) {
            self.sleeping.store(0, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Marks the core awake again. Relaxed: only the core reads its own flag back.
    pub(crate) fn end_sleep(&self) {
        self.sleeping.store(0, Ordering::Relaxed);
    }

    /// The futex word a sleeping core waits on.
    #[cfg(not(loom))]
    pub(crate) fn word(&self) -> &std::sync::atomic::AtomicU32 {
        &self.sleeping
    }
}

#[cfg(all(test, loom))]
mod loom_doorbell {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// A ring racing a core going to sleep: the core either sees the work or is woken.
    #[test]
    fn loom_ring_vs_sleep_no_lost_wakeup() {
        loom::model(|| {
            let d = Arc::new(Doorbell::new());
            let sender = {
                let d = d.clone();
                thread::spawn(move || d.ring())
            };
            let sleeps = d.prepare_sleep();
            let woke = sender.join().unwrap();
            if sleeps {
                // The core sleeps only if a wake is owed to it.
                assert!(woke || d.pending(), "core sleeps with nobody to wake it");
                assert!(woke, "a sleeping core must be woken by the sender");
            }
        });
    }
}
