//! The system-call benches: `getpid` offloaded to spindle's hypercore, run directly,
//! and handed between two pinned OS threads through one cache line (the delegation
//! floor).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{cross_pair, spin_until};

/// Threads issuing calls at once in `syscall_throughput`.
pub const THROUGHPUT_THREADS: u64 = 64;

/// One worker core pinned to the first CPU and the hypercore on the last.
fn offload_runtime() -> spindle::Runtime {
    spindle::Runtime::builder()
        .cores(1)
        .pin(true)
        .build()
        .expect("cannot build a one-worker runtime")
}

/// One worker core pinned to the first CPU, no hypercore: calls run directly.
fn direct_runtime() -> spindle::Runtime {
    spindle::Runtime::builder()
        .cores(1)
        .pin(true)
        .hypercore(false)
        .build()
        .expect("cannot build a one-worker runtime")
}

/// `n` round trips of `spindle::sys::getpid` from one thread on a worker core.
fn round_trips(rt: &spindle::Runtime, n: u64) -> Duration {
    rt.block_on(move || {
        // Warm the path (and the hypercore out of its sleep).
        for _ in 0..16 {
            std::hint::black_box(spindle::sys::getpid());
        }
        let t0 = Instant::now();
        for _ in 0..n {
            std::hint::black_box(spindle::sys::getpid());
        }
        t0.elapsed()
    })
}

/// `n` offloaded `getpid` round trips, one at a time, from a thread on a worker core.
pub fn offload(n: u64) -> Duration {
    round_trips(&offload_runtime(), n)
}

/// `n` direct `getpid` calls from a thread on a worker core (no hypercore).
pub fn direct(n: u64) -> Duration {
    round_trips(&direct_runtime(), n)
}

/// The request line of the delegation floor: a turn counter and the result, alone on
/// their cache lines.
#[repr(align(128))]
struct Line {
    turn: AtomicU64,
    result: AtomicU64,
}

/// `n` `getpid` calls handed from one OS thread to another on a second CPU through
/// one cache line: the client writes an odd turn and spins; the server spins, makes
/// the call, writes the result and the next even turn. No runtime, no sleeping: the
/// floor of any delegation protocol.
pub fn raw_delegation(n: u64) -> Duration {
    let line = Line {
        turn: AtomicU64::new(0),
        result: AtomicU64::new(0),
    };
    let line = &line;
    cross_pair(
        |_| {
            let t0 = Instant::now();
            for i in 0..n {
                line.turn.store(2 * i + 1, Ordering::Release);
                spin_until(|| line.turn.load(Ordering::Acquire) == 2 * i + 2);
                std::hint::black_box(line.result.load(Ordering::Relaxed));
            }
            t0.elapsed()
        },
        |_| {
            for i in 0..n {
                spin_until(|| line.turn.load(Ordering::Acquire) == 2 * i + 1);
                // SAFETY: getpid takes no arguments.
                let pid = unsafe { libc::syscall(libc::SYS_getpid) };
                line.result.store(pid as u64, Ordering::Relaxed);
                line.turn.store(2 * i + 2, Ordering::Release);
            }
        },
    )
    .0
}

/// `n` calls in all from [`THROUGHPUT_THREADS`] threads on one worker core.
fn throughput(rt: &spindle::Runtime, n: u64) -> Duration {
    let per = n.div_ceil(THROUGHPUT_THREADS).max(1);
    let took = rt.block_on(move || {
        let t0 = Instant::now();
        let hs: Vec<_> = (0..THROUGHPUT_THREADS)
            .map(|_| {
                spindle::spawn(move || {
                    for _ in 0..per {
                        std::hint::black_box(spindle::sys::getpid());
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        t0.elapsed()
    });
    super::scale(took, per * THROUGHPUT_THREADS, n)
}

/// [`THROUGHPUT_THREADS`] threads on one worker core issue `n` offloaded calls in all.
pub fn throughput_offload(n: u64) -> Duration {
    throughput(&offload_runtime(), n)
}

/// The same with direct calls (no hypercore).
pub fn throughput_direct(n: u64) -> Duration {
    throughput(&direct_runtime(), n)
}
