//! The park/unpark round-trip protocol, shared by every runtime that has std-like
//! `park` and `unpark`.
//!
//! A turn counter says whose move it is, so a spurious return from `park` (allowed by
//! every one of these APIs) only costs another `park`, and a token left over from an
//! early `unpark` never breaks the count.

use std::sync::atomic::{AtomicU64, Ordering};

/// Side A: `n` times, hands the turn to B, unparks B, parks until B answers.
pub(crate) fn side_a(turn: &AtomicU64, n: u64, unpark_b: impl Fn(), park: impl Fn()) {
    for i in 0..n {
        turn.store(2 * i + 1, Ordering::Release);
        unpark_b();
        while turn.load(Ordering::Acquire) != 2 * i + 2 {
            park();
        }
    }
}

/// Side B: `n` times, parks until A hands over the turn, hands it back, unparks A.
pub(crate) fn side_b(turn: &AtomicU64, n: u64, unpark_a: impl Fn(), park: impl Fn()) {
    for i in 0..n {
        while turn.load(Ordering::Acquire) != 2 * i + 1 {
            park();
        }
        turn.store(2 * i + 2, Ordering::Release);
        unpark_a();
    }
}
