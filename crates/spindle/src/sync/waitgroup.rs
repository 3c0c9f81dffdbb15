//! [`WaitGroup`]: wait until a counter of outstanding tasks drops to zero.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::waiter::{WaitList, lock, wake_all};
use crate::loom::Mutex as Internal;

/// Notification: the counter reached zero.
const ZERO: u32 = 1;

/// A Go-style wait group: a counter of outstanding tasks with [`add`](WaitGroup::add),
/// [`done`](WaitGroup::done) and [`wait`](WaitGroup::wait).
///
/// `add(n)` before starting `n` tasks, `done()` as each finishes, and `wait()` blocks
/// until the counter is zero. Share it with an `Arc`. Any number of threads (spindle or
/// OS) may wait; all are woken when the counter reaches zero. A `WaitGroup` may be
/// reused after it reached zero.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use spindle::sync::WaitGroup;
///
/// spindle::run(|| {
///     let wg = Arc::new(WaitGroup::new());
///     let hits = Arc::new(AtomicUsize::new(0));
///     for _ in 0..5 {
///         wg.add(1);
///         let (wg, hits) = (wg.clone(), hits.clone());
///         spindle::spawn(move || {
///             hits.fetch_add(1, Ordering::Relaxed);
///             wg.done();
///         });
///     }
///     wg.wait();
///     assert_eq!(hits.load(Ordering::Relaxed), 5);
/// });
/// ```
pub struct WaitGroup {
    count: AtomicUsize,
    waiters: Internal<WaitList>,
}

impl WaitGroup {
    /// A wait group with counter 0.
    pub fn new() -> WaitGroup {
        WaitGroup {
            count: AtomicUsize::new(0),
            waiters: Internal::new(WaitList::new()),
        }
    }

    /// Adds `n` outstanding tasks.
    pub fn add(&self, n: usize) {
        self.count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| c.checked_add(n))
            .expect("WaitGroup::add: counter overflow");
    }

    /// Marks one task done; wakes the waiters when the counter reaches zero.
    ///
    /// # Panics
    ///
    /// If the counter is already zero (more `done`s than `add`s).
    pub fn done(&self) {
        // AcqRel: publishes this task's work to the waiters (they acquire the
        // counter), and orders the decrements among themselves.
        let prev = self
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |c| c.checked_sub(1))
            .expect("WaitGroup::done called more times than add");
        if prev == 1 {
            // Waiters check the counter under this lock, so each either saw zero or
            // is in the list now.
            let all = lock(&self.waiters).notify_all(ZERO);
            wake_all(all);
        }
    }

    /// The counter now.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Waits until the counter is zero.
    pub fn wait(&self) {
        // Acquire: pairs with the last `done`.
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut list = lock(&self.waiters);
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let node = list.push(0, false);
        drop(list);
        // The notification is stored (release) after the last `done`, so its acquire
        // load in `wait` makes every task's work visible.
        node.wait(None, crate::task::dump::WaitReason::WaitGroup);
    }
}

impl Default for WaitGroup {
    fn default() -> WaitGroup {
        WaitGroup::new()
    }
}

impl fmt::Debug for WaitGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitGroup")
            .field("count", &self.count())
            .finish_non_exhaustive()
    }
}
