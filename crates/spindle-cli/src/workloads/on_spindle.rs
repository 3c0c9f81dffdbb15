//! The spindle workloads. Each starts a runtime with [`spindle::run`] and times the
//! work inside it; the functions of [`inside`] do the work on an already running
//! spindle thread (the tour uses those).

use std::time::Duration;

/// `n` switches: two threads yield to each other. See [`inside::switch`].
pub fn switch(n: u64) -> Duration {
    spindle::run(|| inside::switch(n))
}

/// `n` times: spawn an empty thread and join it. See [`inside::spawn_join`].
pub fn spawn_join(n: u64) -> Duration {
    spindle::run(|| inside::spawn_join(n))
}

/// `n` park/unpark round trips. See [`inside::park_unpark`].
pub fn park_unpark(n: u64) -> Duration {
    spindle::run(|| inside::park_unpark(n))
}

/// `n` calls of [`spindle::current`]. See [`inside::current`].
pub fn current(n: u64) -> Duration {
    spindle::run(|| inside::current(n))
}

/// The workloads proper, to be called on a spindle thread (they panic elsewhere).
pub mod inside {
    use std::hint::black_box;
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;
    use std::time::{Duration, Instant};

    use crate::workloads::{half, pingpong, scale};

    /// The caller and a new thread of the same priority each call
    /// [`spindle::yield_now`] `n / 2` times (rounded up), so each yield switches to the
    /// other; returns the time per `n` switches.
    pub fn switch(n: u64) -> Duration {
        let k = half(n);
        let t0 = Instant::now();
        let peer = spindle::spawn(move || {
            for _ in 0..k {
                spindle::yield_now();
            }
        });
        for _ in 0..k {
            spindle::yield_now();
        }
        peer.join().expect("yielding thread panicked");
        scale(t0.elapsed(), 2 * k, n)
    }

    /// Spawns an empty thread and joins it, `n` times.
    pub fn spawn_join(n: u64) -> Duration {
        let t0 = Instant::now();
        for _ in 0..n {
            spindle::spawn(|| ()).join().expect("empty thread panicked");
        }
        t0.elapsed()
    }

    /// `n` round trips between the caller (A) and a new thread (B): A unparks B and
    /// parks, B unparks A and parks.
    pub fn park_unpark(n: u64) -> Duration {
        let turn = Arc::new(AtomicU64::new(0));
        let a = spindle::current();
        let t0 = Instant::now();
        let b = {
            let turn = Arc::clone(&turn);
            spindle::spawn(move || pingpong::side_b(&turn, n, || a.unpark(), spindle::park))
        };
        let b_thread = b.thread().clone();
        pingpong::side_a(&turn, n, || b_thread.unpark(), spindle::park);
        b.join().expect("park/unpark partner panicked");
        t0.elapsed()
    }

    /// Calls [`spindle::current`] `n` times (each handle is dropped at once).
    pub fn current(n: u64) -> Duration {
        let t0 = Instant::now();
        for _ in 0..n {
            black_box(spindle::current());
        }
        t0.elapsed()
    }
}
