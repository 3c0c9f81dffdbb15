//! [`CancelToken`]: a shared flag that is set once, checked cheaply, and waited on
//! (alone, or as one arm of [`select!`](crate::select)).
//!
//! The flag is set under the token's internal lock, and a waiter checks it under that
//! lock before it queues (the wait-node protocol of `sync`), so a wait never misses
//! the cancel. [`is_cancelled`](CancelToken::is_cancelled) is one acquire load.

use std::fmt;
use std::time::{Duration, Instant};

use super::waiter::{WaitList, deadline_after, lock, wait_or_remove, wake_all};
use crate::loom::{Arc, AtomicBool, Mutex as Internal, Ordering};
use crate::task::dump::WaitReason;

/// Notification value: "cancelled".
const CANCELLED: u32 = 1;

struct Inner {
    /// Set once, under `waiters`' lock; read without it by `is_cancelled`.
    cancelled: AtomicBool,
    waiters: Internal<WaitList>,
}

/// A cancellation signal shared by clones: [`cancel`](Self::cancel) sets it for
/// good, [`is_cancelled`](Self::is_cancelled) checks it, and [`wait`](Self::wait)
/// or a `recv(token) -> _` arm of [`select!`](crate::select) waits for it.
///
/// It asks code to stop; it stops nothing by itself. To unwind a thread from
/// wherever it blocks, use [`JoinHandle::cancel`](crate::JoinHandle::cancel).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use spindle::{CancelToken, sync::mpsc};
///
/// spindle::run(|| {
///     let token = CancelToken::new();
///     let (tx, rx) = mpsc::channel::<u32>();
///     let worker = {
///         let token = token.clone();
///         spindle::spawn(move || {
///             let mut sum = 0;
///             loop {
///                 spindle::select! {
///                     recv(rx) -> msg => sum += msg.unwrap(),
///                     recv(token) -> _ => return sum,
///                 }
///             }
///         })
///     };
///     tx.send(40).unwrap();
///     tx.send(2).unwrap();
///     spindle::sleep(Duration::from_millis(10));
///     token.cancel();
///     assert_eq!(worker.join().unwrap(), 42);
/// });
/// ```
#[derive(Clone)]
pub struct CancelToken {
    inner: Arc<Inner>,
}

impl CancelToken {
    /// A token not cancelled yet.
    pub fn new() -> CancelToken {
        CancelToken {
            inner: Arc::new(Inner {
                cancelled: AtomicBool::new(false),
                waiters: Internal::new(WaitList::new()),
            }),
        }
    }

    /// Cancels the token and wakes everything waiting on it; later calls do nothing.
    pub fn cancel(&self) {
        let mut w = lock(&self.inner.waiters);
        // Release: pairs with the acquire load of `is_cancelled`.
        self.inner.cancelled.store(true, Ordering::Release);
        let all = w.notify_all(CANCELLED);
        drop(w);
        wake_all(all);
    }

    /// Whether the token was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::Acquire)
    }

    /// Waits until the token is cancelled (returns at once if it is).
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Waits at most `timeout` for the token to be cancelled; returns whether it is.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Some(deadline_after(timeout)))
    }

    /// `deadline`: `None` waits forever; `Some(None)` is a deadline beyond the clock.
    fn wait_until(&self, deadline: Option<Option<Instant>>) -> bool {
        loop {
            let mut w = lock(&self.inner.waiters);
            if self.is_cancelled() {
                return true;
            }
            let d = deadline.flatten();
            if d.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            let node = w.push(0, false);
            drop(w);
            if wait_or_remove(
                &self.inner.waiters,
                &node,
                d,
                WaitReason::Signal,
                |w| w,
                |_| {},
                |_| {},
            ) != 0
            {
                return true;
            }
        }
    }
}

impl Default for CancelToken {
    fn default() -> CancelToken {
        CancelToken::new()
    }
}

impl fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelToken")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl super::select::sealed::Sealed for CancelToken {}

impl super::select::SelectRecv for CancelToken {
    /// A cancelled token is the whole message.
    type Output = ();
    fn select_try(&self) -> Option<()> {
        self.is_cancelled().then_some(())
    }
    fn select_try_or_register(&self, reg: &mut super::select::Registrar) -> Option<()> {
        let mut w = lock(&self.inner.waiters);
        if self.is_cancelled() {
            return Some(());
        }
        reg.enqueue(&mut w);
        None
    }
    fn select_pass_on(&self) {
        // A cancel wakes every waiter: nobody else needed this one's wakeup.
    }
}
