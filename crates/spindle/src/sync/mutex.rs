//! [`Mutex`]: a mutual-exclusion lock whose waiters sleep without blocking their core.

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::{LockResult, PoisonError, TryLockError, TryLockResult};

use super::waiter::{LeaveOnUnwind, WaitList, lock};
use crate::loom::{AtomicBool, AtomicU32, Mutex as Internal, Ordering};

/// The lock is held.
const LOCKED: u32 = 1;
/// The wait list may be non-empty: unlock must take the slow path. Changed only under
/// the internal lock.
const PARKED: u32 = 2;

/// Notification: the lock was released; try again.
const RETRY: u32 = 1;
/// Notification: the lock was handed to you; you hold it.
const HANDOFF: u32 = 2;

/// Node tag: this waiter lost the race after a wake before; hand the lock over.
const WANTS_HANDOFF: u32 = 1;
/// A waiter that was woken this many times without getting the lock asks for a direct
/// handoff (bounds how long barging can starve it).
const HANDOFF_AFTER: u32 = 2;

/// A mutual-exclusion lock protecting a `T`, like `std::sync::Mutex`, for spindle
/// threads and OS threads alike.
///
/// A spindle thread that has to wait sleeps and its core runs other threads; an OS
/// thread blocks in the kernel. Locking and unlocking without contention is one atomic
/// instruction each. Waiters queue in FIFO order; a releasing thread wakes the first,
/// which then competes with newcomers (so a lock released and re-taken in a loop does
/// not stall on wake-ups); a waiter that loses that race twice gets the lock handed
/// over directly, so no waiter starves.
///
/// Poisoning works as in std: a guard dropped during a panic marks the mutex poisoned,
/// and later `lock`s return `Err(PoisonError)` that still carries the guard.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use spindle::sync::Mutex;
///
/// let n = spindle::run(|| {
///     let m = Arc::new(Mutex::new(0));
///     let hs: Vec<_> = (0..10)
///         .map(|_| {
///             let m = m.clone();
///             spindle::spawn(move || *m.lock().unwrap() += 1)
///         })
///         .collect();
///     hs.into_iter().for_each(|h| h.join().unwrap());
///     let n = *m.lock().unwrap();
///     n
/// });
/// assert_eq!(n, 10);
/// ```
pub struct Mutex<T: ?Sized> {
    state: AtomicU32,
    poison: AtomicBool,
    waiters: Internal<WaitList>,
    data: UnsafeCell<T>,
}

// SAFETY: the mutex hands out access to `T` to one thread at a time, so it may be sent and shared whenever `T` may be sent.
unsafe impl<T: ?Sized + Send> Send for Mutex<T> {}
// SAFETY: as above: `&Mutex` only gives exclusive access to `T`, one holder at a time.
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}

/// Proof of holding a [`Mutex`]; derefs to the data and unlocks when dropped.
#[must_use = "the mutex unlocks as soon as the guard is dropped"]
pub struct MutexGuard<'a, T: ?Sized> {
    pub(super) mutex: &'a Mutex<T>,
    /// Whether the thread was already panicking when it locked (then a drop during
    /// that panic does not poison).
    panicking: bool,
    /// Not `Send`, like std's guard.
    _not_send: PhantomData<*const ()>,
}

// SAFETY: `&MutexGuard` only gives `&T`.
unsafe impl<T: ?Sized + Sync> Sync for MutexGuard<'_, T> {}

impl<T> Mutex<T> {
    /// A new, unlocked mutex.
    pub fn new(value: T) -> Mutex<T> {
        Mutex {
            state: AtomicU32::new(0),
            poison: AtomicBool::new(false),
            waiters: Internal::new(WaitList::new()),
            data: UnsafeCell::new(value),
        }
    }

    /// Consumes the mutex and returns the data.
    ///
    /// # Errors
    ///
    /// `Err` (still carrying the data) if the mutex is poisoned.
    pub fn into_inner(self) -> LockResult<T> {
        let poisoned = self.poison.load(Ordering::Relaxed);
        let v = self.data.into_inner();
        if poisoned {
            Err(PoisonError::new(v))
        } else {
            Ok(v)
        }
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Locks the mutex, waiting while another thread holds it.
    ///
    /// Locking a mutex the caller already holds deadlocks.
    ///
    /// # Errors
    ///
    /// `Err` (carrying the guard) if the mutex is poisoned.
    #[inline]
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        // A pending reschedule request is honoured at every runtime call.
        crate::sched::guard::check();
        if self
            .state
            .compare_exchange(0, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow();
        }
        self.guard()
    }

    /// Locks the mutex if it is free, without waiting.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] if it is held, [`TryLockError::Poisoned`] if it is
    /// poisoned (the lock was taken).
    #[inline]
    pub fn try_lock(&self) -> TryLockResult<MutexGuard<'_, T>> {
        // Acquire: pairs with the release of the previous unlock.
        if self.state.fetch_or(LOCKED, Ordering::Acquire) & LOCKED != 0 {
            return Err(TryLockError::WouldBlock);
        }
        Ok(self.guard()?)
    }

    /// Whether a thread panicked while holding the lock.
    pub fn is_poisoned(&self) -> bool {
        self.poison.load(Ordering::Relaxed)
    }

    /// Clears the poison flag.
    pub fn clear_poison(&self) {
        self.poison.store(false, Ordering::Relaxed);
    }

    /// Mutable access to the data, without locking (the borrow proves exclusivity).
    ///
    /// # Errors
    ///
    /// `Err` (carrying the reference) if the mutex is poisoned.
    pub fn get_mut(&mut self) -> LockResult<&mut T> {
        let poisoned = self.poison.load(Ordering::Relaxed);
        let v = self.data.get_mut();
        if poisoned {
            Err(PoisonError::new(v))
        } else {
            Ok(v)
        }
    }

    /// The guard for a lock just taken.
    fn guard(&self) -> LockResult<MutexGuard<'_, T>> {
        let g = MutexGuard {
            mutex: self,
            panicking: crate::task::panic_count::panicking(),
            _not_send: PhantomData,
        };
        if self.poison.load(Ordering::Relaxed) {
            Err(PoisonError::new(g))
        } else {
            Ok(g)
        }
    }

    #[cold]
    fn lock_slow(&self) {
        let mut woken = 0u32;
        loop {
            let s = self.state.load(Ordering::Relaxed);
            if s & LOCKED == 0 {
                // Acquire: pairs with the release of the previous unlock.
                if self
                    .state
                    .compare_exchange_weak(s, s | LOCKED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return;
                }
                continue;
            }
            let mut list = lock(&self.waiters);
            let s = self.state.load(Ordering::Relaxed);
            if s & LOCKED == 0 {
                continue;
            }
            // Announce the waiter before queueing it: an unlock whose RMW comes after
            // this CAS sees PARKED and takes the internal lock, so it finds our node.
            if s & PARKED == 0
                && self
                    .state
                    .compare_exchange(s, s | PARKED, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            let tag = if woken >= HANDOFF_AFTER {
                WANTS_HANDOFF
            } else {
                0
            };
            let node = list.push(tag, woken > 0);
            drop(list);
            let on_removed = |l: &mut WaitList| {
                if l.is_empty() {
                    self.state.fetch_and(!PARKED, Ordering::Relaxed);
                }
            };
            // Unwinding out of the wait: a lock handed over is released, a wakeup
            // to retry passed on.
            let leave = LeaveOnUnwind::new(
                &self.waiters,
                &node,
                |l: &mut WaitList| l,
                on_removed,
                |v| {
                    if v == HANDOFF {
                        self.unlock();
                    } else {
                        self.pass_on_retry();
                    }
                },
            );
            let v = node.wait(None, crate::task::dump::WaitReason::Mutex);
            leave.done();
            if v == HANDOFF {
                // The releaser kept LOCKED set for us; the acquire load in `wait`
                // pairs with its release store of the notification.
                return;
            }
            woken += 1;
        }
    }

    /// Releases the lock.
    #[inline]
    fn unlock(&self) {
        // Release: publishes the critical section to the next holder.
        if self
            .state
            .compare_exchange(LOCKED, 0, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            self.unlock_slow();
        }
    }

    /// A waiter woken to retry unwinds instead: wake the next one if the lock is free
    /// (if it is held, its release wakes the queue).
    #[cold]
    fn pass_on_retry(&self) {
        let mut list = lock(&self.waiters);
        let n = if self.state.load(Ordering::Relaxed) & LOCKED == 0 {
            list.notify_one(RETRY)
        } else {
            None
        };
        drop(list);
        if let Some(n) = n {
            n.wake();
        }
    }

    #[cold]
    fn unlock_slow(&self) {
        let mut list = lock(&self.waiters);
        let handoff = list.front_tag() == Some(WANTS_HANDOFF);
        let n = list.notify_one(if handoff { HANDOFF } else { RETRY });
        let clear_parked = if list.is_empty() { PARKED } else { 0 };
        if handoff {
            // LOCKED stays set: the lock passes to the woken waiter.
            self.state.fetch_and(!clear_parked, Ordering::Relaxed);
        } else {
            // Release: publishes the critical section to the next holder.
            self.state
                .fetch_and(!(LOCKED | clear_parked), Ordering::Release);
        }
        drop(list);
        if let Some(n) = n {
            n.wake();
        }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        if !self.panicking && crate::task::panic_count::panicking() {
            self.mutex.poison.store(true, Ordering::Relaxed);
        }
        self.mutex.unlock();
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves we hold the lock: no other reference to the data.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves we hold the lock, and `&mut self` that it is unique.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Mutex<T> {
        Mutex::new(T::default())
    }
}

impl<T> From<T> for Mutex<T> {
    fn from(v: T) -> Mutex<T> {
        Mutex::new(v)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Mutex");
        match self.try_lock() {
            Ok(g) => d.field("data", &&*g),
            Err(TryLockError::Poisoned(e)) => d.field("data", &&**e.get_ref()),
            Err(TryLockError::WouldBlock) => d.field("data", &format_args!("<locked>")),
        };
        d.field("poisoned", &self.is_poisoned())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, loom))]
mod loom_mutex {
    use super::*;
    use crate::loom::Arc;
    use loom::thread;

    /// Two OS threads increment under the lock while a third locks too: every
    /// increment is seen and nobody sleeps forever (loom reports a deadlock if a
    /// wakeup is lost).
    #[test]
    fn loom_mutex_no_lost_unlock() {
        loom::model(|| {
            let m = Arc::new(Mutex::new(0u32));
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    let m = m.clone();
                    thread::spawn(move || *m.lock().unwrap() += 1)
                })
                .collect();
            *m.lock().unwrap() += 1;
            hs.into_iter().for_each(|h| h.join().unwrap());
            assert_eq!(*m.lock().unwrap(), 3);
            assert_eq!(m.state.load(Ordering::Relaxed), 0);
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn try_lock_and_poison() {
        let m = std::sync::Arc::new(Mutex::new(1));
        {
            let g = m.lock().unwrap();
            assert!(matches!(m.try_lock(), Err(TryLockError::WouldBlock)));
            drop(g);
        }
        let m2 = m.clone();
        let r = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(r.is_err());
        assert!(m.is_poisoned());
        let g = m.lock().unwrap_err().into_inner();
        assert_eq!(*g, 1);
        drop(g);
        m.clear_poison();
        assert!(m.lock().is_ok());
        assert_eq!(m.state.load(Ordering::Relaxed), 0);
    }
}
