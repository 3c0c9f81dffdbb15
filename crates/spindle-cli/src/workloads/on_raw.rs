//! The raw floors of the cross-core benches: two OS threads pinned to two CPUs
//! ([`crate::affinity::cross_cpus`]) that talk through one cache line and nothing
//! else — no queue, no runtime, no system call. What spindle's cross-core handoffs are
//! compared to (the target is within 2× of these).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{cross_pair, spin_until};

/// An `AtomicU64` alone on its cache line (and the adjacent one, which Zen and Intel
/// prefetchers pull in pairs), so nothing else shares its transfers.
#[repr(align(128))]
struct Line(AtomicU64);

/// `n` round trips of a turn counter on one cache line between two OS threads pinned
/// to two CPUs: A writes an odd turn and spins until it sees the next even one, B
/// spins until it sees the odd turn and writes the next even one.
pub fn cross_core_pingpong(n: u64) -> Duration {
    let turn = Line(AtomicU64::new(0));
    let turn = &turn.0;
    cross_pair(
        |_| {
            let t0 = Instant::now();
            for i in 0..n {
                turn.store(2 * i + 1, Ordering::Release);
                spin_until(|| turn.load(Ordering::Acquire) == 2 * i + 2);
            }
            t0.elapsed()
        },
        |_| {
            for i in 0..n {
                spin_until(|| turn.load(Ordering::Acquire) == 2 * i + 1);
                turn.store(2 * i + 2, Ordering::Release);
            }
        },
    )
    .0
}

/// `n` times, one after the other: the thread on the first CPU hands a "spawn" (a
/// timestamp) to an OS thread already spinning on the second CPU, through one cache
/// line; that thread reads the clock as its first action. Returns the sum of the
/// handoff-to-first-instruction times. The next handoff waits for the line to be
/// cleared (outside the measured interval). This is the exchange-slot protocol at its
/// barest: the sender alone writes non-zero, the receiver alone writes zero. Each
/// figure includes one clock reading (about 20 ns here), as every runtime's does.
pub fn remote_spawn(n: u64) -> Duration {
    // 0: empty; otherwise the spawner's clock reading in ns since `base`, plus one.
    let slot = Line(AtomicU64::new(0));
    let slot = &slot.0;
    let base = Instant::now();
    let since_base = move || base.elapsed().as_nanos() as u64 + 1;
    cross_pair(
        |_| {
            for _ in 0..n {
                slot.store(since_base(), Ordering::Release);
                spin_until(|| slot.load(Ordering::Acquire) == 0);
            }
            Duration::ZERO
        },
        |_| {
            let mut total = 0u64;
            for _ in 0..n {
                let mut sent = 0;
                spin_until(|| {
                    sent = slot.load(Ordering::Acquire);
                    sent != 0
                });
                let arrived = since_base();
                total += arrived.saturating_sub(sent);
                slot.store(0, Ordering::Release);
            }
            Duration::from_nanos(total)
        },
    )
    .1
}
