//! [`Condvar`]: wait for a condition under a [`Mutex`].

use std::fmt;
use std::sync::{LockResult, PoisonError};
use std::time::{Duration, Instant};

use super::mutex::{Mutex, MutexGuard};
use super::waiter::{WaitList, deadline_after, lock, wait_or_remove, wake_all};
use crate::loom::Mutex as Internal;

/// Notification value of a condvar wake.
const NOTIFIED: u32 = 1;

/// Whether a timed condvar wait returned because its time ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// True if the wait ended because the timeout elapsed (no notification came).
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

/// A condition variable, like `std::sync::Condvar`, used with a spindle
/// [`Mutex`](super::Mutex).
///
/// `wait` atomically releases the mutex and queues the caller: a `notify_*` that comes
/// after the waiter released the mutex always finds it. Notifications wake waiters in
/// FIFO order. Waits may return without a notification only in one case: a
/// notification that races a timeout is taken by the timed-out waiter rather than lost
/// (it then reports `timed_out() == false`). As with std, always wait in a loop on the
/// real condition, or use [`wait_while`](Condvar::wait_while).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use spindle::sync::{Condvar, Mutex};
///
/// spindle::run(|| {
///     let pair = Arc::new((Mutex::new(false), Condvar::new()));
///     let p = pair.clone();
///     let h = spindle::spawn(move || {
///         *p.0.lock().unwrap() = true;
///         p.1.notify_one();
///     });
///     let (m, cv) = &*pair;
///     let ready = cv.wait_while(m.lock().unwrap(), |r| !*r).unwrap();
///     assert!(*ready);
///     drop(ready);
///     h.join().unwrap();
/// });
/// ```
pub struct Condvar {
    waiters: Internal<WaitList>,
}

impl Condvar {
    /// A condition variable with no waiters.
    pub fn new() -> Condvar {
        Condvar {
            waiters: Internal::new(WaitList::new()),
        }
    }

    /// Releases the guard's mutex, waits for a notification, and locks the mutex again.
    ///
    /// # Errors
    ///
    /// `Err` (carrying the re-acquired guard) if the mutex is poisoned.
    pub fn wait<'a, T: ?Sized>(&self, guard: MutexGuard<'a, T>) -> LockResult<MutexGuard<'a, T>> {
        let (g, _) = self.wait_until(guard, None);
        g
    }

    /// Waits while `condition` holds (checked under the lock before every wait).
    ///
    /// # Errors
    ///
    /// `Err` (carrying the guard) if the mutex is poisoned.
    pub fn wait_while<'a, T: ?Sized, F>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut condition: F,
    ) -> LockResult<MutexGuard<'a, T>>
    where
        F: FnMut(&mut T) -> bool,
    {
        while condition(&mut *guard) {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// Like [`wait`](Condvar::wait), but returns after `timeout` at the latest
    /// (then with `timed_out() == true`).
    ///
    /// # Errors
    ///
    /// `Err` (carrying the guard and the result) if the mutex is poisoned.
    pub fn wait_timeout<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        let (g, timed_out) = self.wait_until(guard, deadline_after(timeout));
        let r = WaitTimeoutResult(timed_out);
        match g {
            Ok(g) => Ok((g, r)),
            Err(e) => Err(PoisonError::new((e.into_inner(), r))),
        }
    }

    /// Waits while `condition` holds, at most `timeout` in total. The result says
    /// whether the time ran out with the condition still true.
    ///
    /// # Errors
    ///
    /// `Err` (carrying the guard and the result) if the mutex is poisoned.
    pub fn wait_timeout_while<'a, T: ?Sized, F>(
        &self,
        mut guard: MutexGuard<'a, T>,
        timeout: Duration,
        mut condition: F,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)>
    where
        F: FnMut(&mut T) -> bool,
    {
        let deadline = deadline_after(timeout);
        loop {
            if !condition(&mut *guard) {
                return Ok((guard, WaitTimeoutResult(false)));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok((guard, WaitTimeoutResult(true)));
            }
            match self.wait_until(guard, deadline) {
                (Ok(g), _) => guard = g,
                (Err(e), _) => {
                    return Err(PoisonError::new((e.into_inner(), WaitTimeoutResult(false))));
                }
            }
        }
    }

    /// Wakes one waiter, if any.
    pub fn notify_one(&self) {
        let n = lock(&self.waiters).notify_one(NOTIFIED);
        if let Some(n) = n {
            n.wake();
        }
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        let all = lock(&self.waiters).notify_all(NOTIFIED);
        wake_all(all);
    }

    /// The wait itself. Returns the re-locked guard and whether it timed out.
    fn wait_until<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Option<Instant>,
    ) -> (LockResult<MutexGuard<'a, T>>, bool) {
        let mutex: &'a Mutex<T> = guard.mutex;
        // Queue first, then unlock: a notifier that locked the mutex after us finds the
        // node (it takes `waiters` after we put the node there).
        let node = lock(&self.waiters).push(0, false);
        drop(guard);
        // Unwinding with a notification: it is passed to another waiter (a condvar
        // wakeup may be spurious, never lost).
        let v = wait_or_remove(
            &self.waiters,
            &node,
            deadline,
            crate::task::dump::WaitReason::Condvar,
            |l| l,
            |_| {},
            |_| self.notify_one(),
        );
        (mutex.lock(), v == 0)
    }
}

impl Default for Condvar {
    fn default() -> Condvar {
        Condvar::new()
    }
}

impl fmt::Debug for Condvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condvar").finish_non_exhaustive()
    }
}
