//! [`RwLock`]: many readers or one writer, writer-preferring.

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::AtomicBool;
use std::sync::{LockResult, PoisonError, TryLockError, TryLockResult};

use super::waiter::{LeaveOnUnwind, Node, Notify, WaitList, lock, wake_all};
use crate::loom::{AtomicU32, Mutex as Internal, Ordering};

/// A writer holds the lock.
const WRITER: u32 = 1;
/// Some thread may be queued: new readers take the slow path, and the last release
/// wakes. Changed only under the internal lock.
const PARKED: u32 = 2;
/// One reader (the reader count is `state / READER`).
const READER: u32 = 4;
const READERS: u32 = !(WRITER | PARKED);

/// Notification: the lock was taken on your behalf (a read lock for a reader, the
/// write lock for a writer); you hold it.
const HANDOFF: u32 = 1;

#[derive(Debug, Default)]
struct Queues {
    readers: WaitList,
    writers: WaitList,
}

/// A reader-writer lock, like `std::sync::RwLock`, for spindle threads and OS threads.
///
/// Any number of readers or one writer hold it at a time. It prefers writers: once a
/// writer waits, new readers queue behind it, so a stream of readers cannot starve
/// writers. When the lock is released, a waiting writer is woken first (one); when no
/// writer waits, all waiting readers are woken together. The lock is handed to the
/// woken threads (taken on their behalf), so they cannot be overtaken. Waiting spindle threads sleep
/// (their core runs others); OS threads block in the kernel. Uncontended `read`,
/// `write` and their releases are one atomic instruction each (plus a load for `read`).
///
/// Poisoning follows std: a panic while holding the *write* lock poisons it.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use spindle::sync::RwLock;
///
/// spindle::run(|| {
///     let l = Arc::new(RwLock::new(vec![1, 2]));
///     let r1 = l.read().unwrap();
///     let r2 = l.read().unwrap(); // readers share
///     assert_eq!(r1.len() + r2.len(), 4);
///     assert!(l.try_write().is_err()); // a writer must wait
///     drop((r1, r2));
///     l.write().unwrap().push(3);
///     assert_eq!(*l.read().unwrap(), [1, 2, 3]);
/// });
/// ```
pub struct RwLock<T: ?Sized> {
    state: AtomicU32,
    poison: AtomicBool,
    queues: Internal<Queues>,
    data: UnsafeCell<T>,
}

// SAFETY: the lock hands `T` out to one writer (needs `Send`) or to several readers at once (needs `Sync`), like std's RwLock.
unsafe impl<T: ?Sized + Send> Send for RwLock<T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized + Send + Sync> Sync for RwLock<T> {}

/// Shared access to the data of a [`RwLock`]; releases it when dropped.
#[must_use = "the read lock is released as soon as the guard is dropped"]
pub struct RwLockReadGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: gives only `&T`.
unsafe impl<T: ?Sized + Sync> Sync for RwLockReadGuard<'_, T> {}

/// Exclusive access to the data of a [`RwLock`]; releases it when dropped.
#[must_use = "the write lock is released as soon as the guard is dropped"]
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    panicking: bool,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: `&RwLockWriteGuard` gives only `&T`.
unsafe impl<T: ?Sized + Sync> Sync for RwLockWriteGuard<'_, T> {}

impl<T> RwLock<T> {
    /// A new, unlocked lock.
    pub fn new(value: T) -> RwLock<T> {
        RwLock {
            state: AtomicU32::new(0),
            poison: AtomicBool::new(false),
            queues: Internal::new(Queues::default()),
            data: UnsafeCell::new(value),
        }
    }

    /// Consumes the lock and returns the data.
    ///
    /// # Errors
    ///
    /// `Err` (carrying the data) if the lock is poisoned.
    pub fn into_inner(self) -> LockResult<T> {
        let poisoned = self.is_poisoned();
        let v = self.data.into_inner();
        if poisoned {
            Err(PoisonError::new(v))
        } else {
            Ok(v)
        }
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Takes a shared lock, waiting while a writer holds or waits for the lock.
    ///
    /// # Errors
    ///
    /// `Err` (carrying the guard) if the lock is poisoned.
    #[inline]
    pub fn read(&self) -> LockResult<RwLockReadGuard<'_, T>> {
        // A pending reschedule request is honoured at every runtime call.
        crate::sched::guard::check();
        if !self.try_read_fast() {
            self.read_slow();
        }
        self.read_guard()
    }

    /// Takes a shared lock if that needs no wait.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] if a writer holds or waits for the lock;
    /// [`TryLockError::Poisoned`] if it is poisoned (the lock was taken).
    pub fn try_read(&self) -> TryLockResult<RwLockReadGuard<'_, T>> {
        if self.try_read_fast() {
            Ok(self.read_guard()?)
        } else {
            Err(TryLockError::WouldBlock)
        }
    }

    /// Takes the exclusive lock, waiting while anyone else holds it.
    ///
    /// # Errors
    ///
    /// `Err` (carrying the guard) if the lock is poisoned.
    #[inline]
    pub fn write(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        // A pending reschedule request is honoured at every runtime call.
        crate::sched::guard::check();
        // Acquire: pairs with the release of the previous holders.
        if self
            .state
            .compare_exchange(0, WRITER, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.write_slow();
        }
        self.write_guard()
    }

    /// Takes the exclusive lock if it is free.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] if it is held; [`TryLockError::Poisoned`] if it is
    /// poisoned (the lock was taken).
    pub fn try_write(&self) -> TryLockResult<RwLockWriteGuard<'_, T>> {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & (WRITER | READERS) != 0 {
                return Err(TryLockError::WouldBlock);
            }
            // Acquire: pairs with the release of the previous holders.
            match self.state.compare_exchange_weak(
                s,
                s | WRITER,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(self.write_guard()?),
                Err(cur) => s = cur,
            }
        }
    }

    /// Whether a thread panicked while holding the write lock.
    pub fn is_poisoned(&self) -> bool {
        self.poison.load(Ordering::Relaxed)
    }

    /// Clears the poison flag.
    pub fn clear_poison(&self) {
        self.poison.store(false, Ordering::Relaxed);
    }

    /// Mutable access without locking (the borrow proves exclusivity).
    ///
    /// # Errors
    ///
    /// `Err` (carrying the reference) if the lock is poisoned.
    pub fn get_mut(&mut self) -> LockResult<&mut T> {
        let poisoned = self.is_poisoned();
        let v = self.data.get_mut();
        if poisoned {
            Err(PoisonError::new(v))
        } else {
            Ok(v)
        }
    }

    fn read_guard(&self) -> LockResult<RwLockReadGuard<'_, T>> {
        let g = RwLockReadGuard {
            lock: self,
            _not_send: PhantomData,
        };
        if self.is_poisoned() {
            Err(PoisonError::new(g))
        } else {
            Ok(g)
        }
    }

    fn write_guard(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        let g = RwLockWriteGuard {
            lock: self,
            panicking: crate::task::panic_count::panicking(),
            _not_send: PhantomData,
        };
        if self.is_poisoned() {
            Err(PoisonError::new(g))
        } else {
            Ok(g)
        }
    }

    /// One reader more, if no writer holds or waits (PARKED) for the lock.
    #[inline]
    fn try_read_fast(&self) -> bool {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & (WRITER | PARKED) != 0 {
                return false;
            }
            assert!(s < READERS - READER, "RwLock: too many readers");
            // Acquire: pairs with the release of the last writer.
            match self.state.compare_exchange_weak(
                s,
                s + READER,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(cur) => s = cur,
            }
        }
    }

    #[cold]
    fn read_slow(&self) {
        loop {
            let mut q = lock(&self.queues);
            let s = self.state.load(Ordering::Relaxed);
            if s & WRITER == 0 && q.writers.is_empty() {
                assert!(s < READERS - READER, "RwLock: too many readers");
                // Acquire: pairs with the release of the last writer.
                if self
                    .state
                    .compare_exchange(s, s + READER, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return;
                }
                continue;
            }
            // A writer holds the lock (its release will see PARKED) or one waits (it
            // will be woken by the holders' release, and wake us after its own).
            if s & PARKED == 0
                && self
                    .state
                    .compare_exchange(s, s | PARKED, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            let node = q.readers.push(0, false);
            drop(q);
            // Woken only by a handoff: the read lock is ours.
            self.wait_handed_over(&node, |q| &mut q.readers, || self.read_unlock());
            return;
        }
    }

    #[cold]
    fn write_slow(&self) {
        loop {
            let mut q = lock(&self.queues);
            let s = self.state.load(Ordering::Relaxed);
            if s & (WRITER | READERS) == 0 {
                // Acquire: pairs with the release of the previous holders.
                if self
                    .state
                    .compare_exchange(s, s | WRITER, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return;
                }
                continue;
            }
            // Announce: the release that makes the lock free sees PARKED and wakes.
            if s & PARKED == 0
                && self
                    .state
                    .compare_exchange(s, s | PARKED, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            let node = q.writers.push(0, false);
            drop(q);
            // Woken only by a handoff: the write lock is ours.
            self.wait_handed_over(&node, |q| &mut q.writers, || self.write_unlock());
            return;
        }
    }

    /// Waits on `node` (queued in the queue `list` selects) until the lock is handed
    /// over. A thread that unwinds out of the wait leaves its queue, or, if the lock
    /// was handed over already, gives it back with `release`.
    fn wait_handed_over(
        &self,
        node: &crate::loom::Arc<Node>,
        list: fn(&mut Queues) -> &mut WaitList,
        release: impl FnOnce(),
    ) {
        let leave = LeaveOnUnwind::new(
            &self.queues,
            node,
            list,
            |q: &mut Queues| self.unpark_if_idle(q),
            |_| release(),
        );
        let v = node.wait(None, crate::task::dump::WaitReason::RwLock);
        leave.done();
        debug_assert_eq!(v, HANDOFF);
    }

    /// A waiter left its queue (unwinding): with both queues empty, nobody is parked.
    fn unpark_if_idle(&self, q: &Queues) {
        if q.readers.is_empty() && q.writers.is_empty() {
            self.state.fetch_and(!PARKED, Ordering::Relaxed);
        }
    }

    fn read_unlock(&self) {
        // Release: publishes the reader's accesses to a later writer.
        let s = self.state.fetch_sub(READER, Ordering::Release);
        if s & READERS == READER && s & PARKED != 0 {
            self.wake_slow();
        }
    }

    fn write_unlock(&self) {
        // Release: publishes the critical section.
        if self
            .state
            .compare_exchange(WRITER, 0, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            self.state.fetch_and(!WRITER, Ordering::Release);
            self.wake_slow();
        }
    }

    /// The lock became free with PARKED set: hand it to the first waiting writer, or
    /// else to every waiting reader at once. Handing over (taking the lock on the
    /// waiters' behalf before waking them) means a woken writer cannot be overtaken
    /// by readers, and FIFO order among writers holds.
    #[cold]
    fn wake_slow(&self) {
        let mut q = lock(&self.queues);
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & (WRITER | READERS) != 0 {
                // Someone took the lock meanwhile (`try_write`, or a reader while no
                // writer waits); PARKED is still set, so their release wakes the queue.
                return;
            }
            let (take, wakes_writer) = if !q.writers.is_empty() {
                (WRITER, true)
            } else {
                let n = u32::try_from(q.readers.len())
                    .ok()
                    .filter(|&n| n < READERS / READER)
                    .expect("RwLock: too many readers");
                (n * READER, false)
            };
            let rest_empty = if wakes_writer {
                q.writers.len() == 1 && q.readers.is_empty()
            } else {
                true
            };
            let new = (s + take) & if rest_empty { !PARKED } else { !0 };
            // AcqRel: acquires the previous holders' releases and publishes them, with
            // the lock itself, to the waiters (through the notification's release).
            match self
                .state
                .compare_exchange_weak(s, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(cur) => s = cur,
            }
        }
        let wake: Vec<Notify> = if let Some(n) = q.writers.notify_one(HANDOFF) {
            vec![n]
        } else {
            q.readers.notify_all(HANDOFF)
        };
        drop(q);
        wake_all(wake);
    }
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.read_unlock();
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        if !self.panicking && crate::task::panic_count::panicking() {
            self.lock.poison.store(true, Ordering::Relaxed);
        }
        self.lock.write_unlock();
    }
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a read lock is held: only shared references to the data exist.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the write lock is held: no other reference to the data exists.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the write lock is held and `&mut self` is unique.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: Default> Default for RwLock<T> {
    fn default() -> RwLock<T> {
        RwLock::new(T::default())
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RwLock");
        match self.try_read() {
            Ok(g) => d.field("data", &&*g),
            Err(TryLockError::Poisoned(e)) => d.field("data", &&**e.get_ref()),
            Err(TryLockError::WouldBlock) => d.field("data", &format_args!("<locked>")),
        };
        d.field("poisoned", &self.is_poisoned())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, loom))]
mod loom_rwlock {
    use super::*;
    use crate::loom::Arc;
    use loom::thread;

    /// A writer racing a reader while the main thread reads: the handoff in
    /// `wake_slow` never loses a waiter, and the lock ends free.
    #[test]
    fn loom_rwlock_writer_vs_readers() {
        loom::model(|| {
            let l = Arc::new(RwLock::new(0u32));
            let w = {
                let l = l.clone();
                thread::spawn(move || *l.write().unwrap() += 1)
            };
            let r = {
                let l = l.clone();
                thread::spawn(move || {
                    let v = *l.read().unwrap();
                    assert!(v <= 1);
                })
            };
            let g = l.read().unwrap();
            assert!(*g <= 1);
            drop(g);
            w.join().unwrap();
            r.join().unwrap();
            assert_eq!(*l.read().unwrap(), 1);
            assert_eq!(l.state.load(Ordering::Relaxed), 0);
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn waiting_writer_blocks_new_readers() {
        let l = std::sync::Arc::new(RwLock::new(0));
        let r = l.read().unwrap();
        let l2 = l.clone();
        let w = std::thread::spawn(move || *l2.write().unwrap() += 1);
        // Wait until the writer has queued (PARKED set).
        while l.state.load(Ordering::Relaxed) & PARKED == 0 {
            std::thread::yield_now();
        }
        assert!(matches!(l.try_read(), Err(TryLockError::WouldBlock)));
        drop(r);
        w.join().unwrap();
        assert_eq!(*l.read().unwrap(), 1);
        assert_eq!(l.state.load(Ordering::Relaxed), 0);
    }
}
