//! [`Semaphore`]: a counter of permits.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::waiter::{Notify, WaitList, deadline_after, lock, wait_or_remove, wake_all};
use crate::loom::Mutex as Internal;

/// `state` bit: waiters may be queued (releases hand permits over under the lock).
const WAITERS: usize = 1;
/// One permit in `state`.
const PERMIT: usize = 2;

/// Notification: a permit was handed to you.
const GRANTED: u32 = 1;

/// A counting semaphore, for spindle threads and OS threads alike.
///
/// Holds a number of permits; [`acquire`](Semaphore::acquire) takes one (waiting
/// while there are none) and returns a [`SemaphorePermit`] that gives it back when
/// dropped. Waiters are served in FIFO order: a released permit goes straight to the
/// longest waiter, and newcomers cannot take permits while anyone waits. Acquiring
/// and releasing without waiters is one atomic instruction (plus a load).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use spindle::sync::Semaphore;
///
/// spindle::run(|| {
///     let sem = Arc::new(Semaphore::new(2));
///     let a = sem.acquire();
///     let b = sem.acquire();
///     assert!(sem.try_acquire().is_none()); // both permits are out
///     drop(a);
///     assert!(sem.try_acquire().is_some());
///     drop(b);
///     assert_eq!(sem.available_permits(), 2);
/// });
/// ```
pub struct Semaphore {
    /// Free permits × `PERMIT`, plus the `WAITERS` bit.
    state: AtomicUsize,
    waiters: Internal<WaitList>,
}

/// One permit of a [`Semaphore`]; released when dropped.
#[must_use = "the permit is released as soon as it is dropped"]
pub struct SemaphorePermit<'a> {
    sem: &'a Semaphore,
}

impl Semaphore {
    /// A semaphore with `permits` permits.
    ///
    /// # Panics
    ///
    /// If `permits` exceeds `usize::MAX / 2`.
    pub fn new(permits: usize) -> Semaphore {
        assert!(
            permits <= usize::MAX / PERMIT,
            "Semaphore: too many permits"
        );
        Semaphore {
            state: AtomicUsize::new(permits * PERMIT),
            waiters: Internal::new(WaitList::new()),
        }
    }

    /// Free permits now.
    pub fn available_permits(&self) -> usize {
        self.state.load(Ordering::Relaxed) / PERMIT
    }

    /// Takes a permit, waiting until one is free.
    pub fn acquire(&self) -> SemaphorePermit<'_> {
        // A pending reschedule request is honoured at every runtime call.
        crate::sched::guard::check();
        if !self.try_take() {
            self.acquire_slow(None);
        }
        SemaphorePermit { sem: self }
    }

    /// Takes a permit if one is free and nobody waits for one.
    pub fn try_acquire(&self) -> Option<SemaphorePermit<'_>> {
        self.try_take().then(|| SemaphorePermit { sem: self })
    }

    /// Takes a permit, waiting at most `timeout`; `None` if the time ran out first.
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<SemaphorePermit<'_>> {
        if self.try_take() || self.acquire_slow(deadline_after(timeout)) {
            Some(SemaphorePermit { sem: self })
        } else {
            None
        }
    }

    /// Adds `n` permits, handing them to waiters first.
    pub fn release(&self, n: usize) {
        let mut left = n;
        // Fast path: nobody waits, add them all at once.
        let mut s = self.state.load(Ordering::Relaxed);
        while s & WAITERS == 0 {
            let new = s
                .checked_add(left * PERMIT)
                .expect("Semaphore: too many permits");
            // Release: pairs with the acquire of whoever takes the permits.
            match self
                .state
                .compare_exchange_weak(s, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(cur) => s = cur,
            }
        }
        let mut wake: Vec<Notify> = Vec::new();
        let mut list = lock(&self.waiters);
        while left > 0 {
            match list.notify_one(GRANTED) {
                Some(n) => wake.push(n),
                None => break,
            }
            left -= 1;
        }
        if list.is_empty() {
            // Release: as above.
            self.state.fetch_and(!WAITERS, Ordering::Release);
        }
        if left > 0 {
            self.state.fetch_add(left * PERMIT, Ordering::Release);
        }
        drop(list);
        wake_all(wake);
    }

    /// Takes a permit if one is free and no one waits.
    #[inline]
    fn try_take(&self) -> bool {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & WAITERS != 0 || s < PERMIT {
                return false;
            }
            // Acquire: pairs with the release that made the permit available.
            match self.state.compare_exchange_weak(
                s,
                s - PERMIT,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(cur) => s = cur,
            }
        }
    }

    /// Queues for a permit; true once one was taken or handed over, false on timeout.
    #[cold]
    fn acquire_slow(&self, deadline: Option<std::time::Instant>) -> bool {
        let mut list = lock(&self.waiters);
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            // Under the lock, a free permit means no one waits for it (releases hand
            // permits to waiters): take it.
            let new = if s >= PERMIT { s - PERMIT } else { s | WAITERS };
            // Acquire: pairs with the release that made the permit available.
            match self
                .state
                .compare_exchange_weak(s, new, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) if s >= PERMIT => return true,
                Ok(_) => break,
                Err(cur) => s = cur,
            }
        }
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            if list.is_empty() {
                self.state.fetch_and(!WAITERS, Ordering::Relaxed);
            }
            return false;
        }
        let node = list.push(0, false);
        drop(list);
        // A permit handed over (even one racing the timeout) is ours.
        wait_or_remove(
            &self.waiters,
            &node,
            deadline,
            crate::task::dump::WaitReason::Semaphore,
            |l| l,
            |l| {
                if l.is_empty() {
                    self.state.fetch_and(!WAITERS, Ordering::Relaxed);
                }
            },
            // Unwinding with a permit handed over: give it back.
            |_| self.release(1),
        ) == GRANTED
    }
}

impl SemaphorePermit<'_> {
    /// Keeps the permit taken for good (it is not released on drop).
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for SemaphorePermit<'_> {
    fn drop(&mut self) {
        self.sem.release(1);
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("available_permits", &self.available_permits())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for SemaphorePermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphorePermit").finish_non_exhaustive()
    }
}
