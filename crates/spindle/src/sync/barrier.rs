//! [`Barrier`]: wait until a number of threads have arrived.

use std::fmt;

use super::waiter::{WaitList, lock, wake_all};
use crate::loom::Mutex as Internal;

/// Notification: the round is complete.
const RELEASED: u32 = 1;

struct Round {
    arrived: usize,
    waiters: WaitList,
}

/// A barrier for `n` threads (spindle or OS), reusable round after round.
///
/// Each [`wait`](Barrier::wait) blocks until `n` threads have called it; then all
/// return, and exactly one of them — the last to arrive — is the leader. The barrier
/// is then ready for the next round.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use spindle::sync::Barrier;
///
/// spindle::run(|| {
///     let b = Arc::new(Barrier::new(3));
///     let hs: Vec<_> = (0..3)
///         .map(|_| {
///             let b = b.clone();
///             spindle::spawn(move || b.wait().is_leader())
///         })
///         .collect();
///     let leaders = hs.into_iter().map(|h| h.join().unwrap()).filter(|&l| l).count();
///     assert_eq!(leaders, 1);
/// });
/// ```
pub struct Barrier {
    n: usize,
    round: Internal<Round>,
}

/// What [`Barrier::wait`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarrierWaitResult(bool);

impl BarrierWaitResult {
    /// True for exactly one thread of each round: the last to arrive.
    pub fn is_leader(&self) -> bool {
        self.0
    }
}

impl Barrier {
    /// A barrier for `n` threads (`0` behaves as `1`: `wait` never blocks).
    pub fn new(n: usize) -> Barrier {
        Barrier {
            n,
            round: Internal::new(Round {
                arrived: 0,
                waiters: WaitList::new(),
            }),
        }
    }

    /// Waits until `n` threads have called `wait` in this round.
    pub fn wait(&self) -> BarrierWaitResult {
        let mut r = lock(&self.round);
        r.arrived += 1;
        if r.arrived >= self.n {
            r.arrived = 0;
            let all = r.waiters.notify_all(RELEASED);
            drop(r);
            wake_all(all);
            return BarrierWaitResult(true);
        }
        let node = r.waiters.push(0, false);
        drop(r);
        // Only the round's leader notifies; a notified node stays notified.
        node.wait(None, crate::task::dump::WaitReason::Barrier);
        BarrierWaitResult(false)
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("n", &self.n)
            .finish_non_exhaustive()
    }
}
