//! The doorbell: how another OS thread hands work to a core that may be asleep.
//!
//! 1. The sender makes the work visible (pushes to the core's injection queue), then
//!    [`Doorbell::ring`]: `pending = true`, a SeqCst fence, then `sleeping.swap(0)`;
//!    if that returned 1 the core was asleep or about to sleep, and the sender wakes
//!    it with a futex wake.
//! 2. The core, before sleeping, [`Doorbell::prepare_sleep`]: `sleeping = 1`, a SeqCst
//!    fence, then re-reads `pending`; only if it is still false does it sleep in
//!    `futex_wait(sleeping, 1)`, which returns at once if a sender already set
//!    `sleeping` back to 0.
//!
//! Both sides store, then load the other's flag (Dekker's pattern). The two SeqCst
//! fences are ordered one before the other, and whichever comes second makes its
//! load see the other side's store: either the core sees `pending` or the sender sees
//! `sleeping == 1` and wakes it — no wakeup is lost. The fences (rather than SeqCst
//! accesses) are what the C++/Rust model guarantees this for, and what loom checks in
//! the model below.

use crate::loom::{AtomicBool, AtomicI32, AtomicU32, Ordering, fence};

pub(crate) struct Doorbell {
    pending: AtomicBool,
    sleeping: AtomicU32,
    /// An eventfd the core sleeps on instead of the futex (the service core, whose
    /// sleep also waits for its io_uring or epoll set); -1 for none. Written once,
    /// before the core starts.
    kick: AtomicI32,
}

impl Doorbell {
    pub(crate) fn new() -> Doorbell {
        Doorbell {
            pending: AtomicBool::new(false),
            sleeping: AtomicU32::new(0),
            kick: AtomicI32::new(-1),
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
        self.pending.store(true, Ordering::Relaxed);
        // StoreLoad: pairs with the fence in `prepare_sleep` (see the module docs).
        fence(Ordering::SeqCst);
        self.sleeping.swap(0, Ordering::Relaxed) == 1
    }

    /// Announces that the core is about to sleep. Returns false if work arrived and
    /// the core must not sleep: `pending` was set, or `has_work` (which looks at the
    /// exchange slots addressed to this core) found something.
    #[cfg_attr(not(all(test, loom)), allow(dead_code))]
    pub(crate) fn prepare_sleep(&self, has_work: impl FnOnce() -> bool) -> bool {
        self.prepare_sleep_as(1, has_work)
    }

    /// [`Doorbell::prepare_sleep`] with the value announced in `sleeping`: 1 for a
    /// futex sleep (wakers must issue a futex wake), 2 for a monitored wait (the
    /// waker's write to the word is the wakeup; no system call).
    pub(crate) fn prepare_sleep_as(&self, mark: u32, has_work: impl FnOnce() -> bool) -> bool {
        self.sleeping.store(mark, Ordering::Relaxed);
        // StoreLoad: pairs with the fence in `ring` / `wake_if_sleeping` (module docs).
        fence(Ordering::SeqCst);
        if self.pending.load(Ordering::Relaxed) || has_work() {
            self.sleeping.store(0, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// The sender's half for work published elsewhere (an exchange slot): after the
    /// publishing store, a full fence, then wake the core if it sleeps or is about to.
    /// Returns true if it issued a futex wake.
    pub(crate) fn wake_if_sleeping(&self) -> bool {
        // StoreLoad: orders the caller's publication before reading `sleeping`; pairs
        // with the fence in `prepare_sleep`.
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) != 0 {
            // 1: a futex sleeper, wake it; 2: a monitored wait, which the swap's
            // write to the monitored line ends by itself.
            match self.sleeping.swap(0, Ordering::Relaxed) {
                1 => self.wake(),
                2 => {}
                _ => return false,
            }
            return true;
        }
        false
    }

    /// The word a sleeper waits on (for the monitored waits of the service loop).
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn word(&self) -> &AtomicU32 {
        &self.sleeping
    }

    /// Marks the core awake again. Relaxed: only the core reads its own flag back.
    pub(crate) fn end_sleep(&self) {
        self.sleeping.store(0, Ordering::Relaxed);
    }

    /// Sleeps in the kernel while `sleeping == 1`, at most `timeout`. Call only after
    /// `prepare_sleep` returned true.
    pub(crate) fn sleep(&self, timeout: Option<std::time::Duration>) {
        #[cfg(not(loom))]
        crate::os::futex_wait(&self.sleeping, 1, timeout);
        #[cfg(loom)]
        {
            let _ = timeout;
            loom::thread::yield_now();
        }
    }

    /// Makes the core sleep on eventfd `fd` (its own sleep waits on it): wakes then
    /// write to it instead of a futex wake. Called before the core starts.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn set_kick(&self, fd: i32) {
        self.kick.store(fd, Ordering::Relaxed);
    }

    /// Wakes the core after `ring` returned true: a futex wake, or a write to its
    /// eventfd.
    pub(crate) fn wake(&self) {
        #[cfg(not(loom))]
        match self.kick.load(Ordering::Relaxed) {
            -1 => crate::os::futex_wake(&self.sleeping, 1),
            fd => crate::os::eventfd_kick(fd),
        }
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
            let sleeps = d.prepare_sleep(|| false);
            let woke = sender.join().unwrap();
            if sleeps {
                // The core sleeps only if a wake is owed to it.
                assert!(woke || d.pending(), "core sleeps with nobody to wake it");
                assert!(woke, "a sleeping core must be woken by the sender");
            }
        });
    }
}
