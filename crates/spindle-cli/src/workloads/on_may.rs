//! The may workloads, on one worker thread — or, for the cross-core benches, on two
//! (they run in a child process configured by [`init_with`]). Each runs inside a
//! driver coroutine, so joins and parks suspend a coroutine rather than block an OS
//! thread.

use std::hint::black_box;
use std::panic::resume_unwind;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Once, OnceLock};
use std::time::{Duration, Instant};

use may::coroutine::{self, Coroutine, JoinHandle};
use may::sync::mpsc;

use super::{half, pingpong, scale};
use crate::affinity::HopSampler;

/// Sets may's process-global configuration: one worker. May reads it when its
/// scheduler starts (at the first spawn), so this must run before any may workload;
/// later calls do nothing.
pub fn init() {
    init_with(1);
}

/// Sets may's worker count (0: may's default, one per CPU) unless an earlier call
/// (of this or [`init`]) set it already. May pins worker `i` to the `i`th CPU.
pub fn init_with(workers: usize) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        may::config().set_workers(workers);
    });
}

/// Spawns a coroutine.
fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // may marks spawning unsafe for two reasons: a coroutine may move between worker
    // threads, so thread-locals must not be held across a yield, and a stack overflow
    // is not caught.
    // SAFETY: our closures hold no thread-local across a yield and need far less stack than may's default.
    unsafe { coroutine::spawn(f) }
}

/// Runs `f` in a new coroutine, blocks the calling OS thread until it is done and
/// returns its value (resuming its panic, if it panicked).
fn in_coroutine<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    init();
    spawn(f).join().unwrap_or_else(|e| resume_unwind(e))
}

/// Joins a coroutine started by these workloads, resuming its panic.
fn join<T>(h: JoinHandle<T>) -> T {
    h.join().unwrap_or_else(|e| resume_unwind(e))
}

/// `n` switches: two coroutines call `yield_now` `n / 2` times each (rounded up).
///
/// A driver coroutine spawns both and then waits in `join`, so the worker picks both
/// up at once and alternates between them (may runs a spawned coroutine only when the
/// worker's local queue is empty). Time runs from the first start to the last end.
pub fn switch(n: u64) -> Duration {
    let k = half(n);
    let d = in_coroutine(move || {
        let yielder = move || {
            let t0 = Instant::now();
            for _ in 0..k {
                coroutine::yield_now();
            }
            (t0, Instant::now())
        };
        let a = spawn(yielder);
        let b = spawn(yielder);
        let (a, b) = (join(a), join(b));
        a.1.max(b.1) - a.0.min(b.0)
    });
    scale(d, 2 * k, n)
}

/// `n` times: spawns an empty coroutine and joins it, from a coroutine.
pub fn spawn_join(n: u64) -> Duration {
    in_coroutine(move || {
        let t0 = Instant::now();
        for _ in 0..n {
            join(spawn(|| ()));
        }
        t0.elapsed()
    })
}

/// `n` park/unpark round trips between two coroutines.
pub fn park_unpark(n: u64) -> Duration {
    in_coroutine(move || {
        let turn = Arc::new(AtomicU64::new(0));
        let peers: Arc<[OnceLock<Coroutine>; 2]> = Arc::new([OnceLock::new(), OnceLock::new()]);
        // With one worker neither runs before the driver blocks in join, by which time
        // both handles are published; with more (the `_default` bench) they may start
        // at once and wait for them.
        let a = {
            let (turn, peers) = (Arc::clone(&turn), Arc::clone(&peers));
            spawn(move || {
                let b = published(&peers[1]);
                let t0 = Instant::now();
                pingpong::side_a(&turn, n, || b.unpark(), coroutine::park);
                t0.elapsed()
            })
        };
        let b = {
            let (turn, peers) = (Arc::clone(&turn), Arc::clone(&peers));
            spawn(move || {
                let a = published(&peers[0]);
                pingpong::side_b(&turn, n, || a.unpark(), coroutine::park);
            })
        };
        peers[0]
            .set(a.coroutine().clone())
            .expect("A's handle is set once");
        peers[1]
            .set(b.coroutine().clone())
            .expect("B's handle is set once");
        let d = join(a);
        join(b);
        d
    })
}

/// The handle in `cell`, once the driver has set it (yielding until then).
fn published(cell: &OnceLock<Coroutine>) -> &Coroutine {
    loop {
        if let Some(c) = cell.get() {
            return c;
        }
        coroutine::yield_now();
    }
}

/// Calls `may::coroutine::current()` `n` times inside a coroutine.
pub fn current(n: u64) -> Duration {
    in_coroutine(move || {
        let t0 = Instant::now();
        for _ in 0..n {
            black_box(coroutine::current());
        }
        t0.elapsed()
    })
}

/// `n` round trips of a message between two coroutines through two
/// `may::sync::mpsc` channels. With two workers may decides where each coroutine
/// runs; every [`HopSampler::EVERY`]th message is sampled for whether it crossed
/// CPUs.
pub fn cross_core_pingpong(n: u64) -> Duration {
    in_coroutine(move || {
        let (to_b, from_a) = mpsc::channel::<u32>();
        let (to_a, from_b) = mpsc::channel::<u32>();
        let b = spawn(move || {
            let mut sampler = HopSampler::new();
            let mut i = 0;
            while let Ok(stamp) = from_a.recv() {
                sampler.check(stamp);
                to_a.send(HopSampler::stamp(i)).expect("A hung up");
                i += 1;
            }
        });
        let a = spawn(move || {
            let mut sampler = HopSampler::new();
            let t0 = Instant::now();
            for i in 0..n {
                to_b.send(HopSampler::stamp(i)).expect("B hung up");
                let stamp = from_b.recv().expect("B hung up");
                sampler.check(stamp);
            }
            t0.elapsed()
        });
        let d = join(a);
        join(b);
        d
    })
}

/// `n` times, one after the other, from a coroutine: spawn a coroutine whose first
/// action is to read the clock, and join it. Returns the sum of the times from just
/// before the spawn to that reading; every spawn is sampled for whether the new
/// coroutine first ran on another CPU than the spawner.
pub fn remote_spawn(n: u64) -> Duration {
    in_coroutine(move || {
        let mut sampler = HopSampler::new();
        let mut total = Duration::ZERO;
        for _ in 0..n {
            let from = HopSampler::cpu_stamp();
            let t0 = Instant::now();
            let (t1, crossed) = join(spawn(move || {
                let t1 = Instant::now();
                (t1, HopSampler::cpu_stamp() != from)
            }));
            total += t1 - t0;
            sampler.count(crossed);
        }
        total
    })
}

/// The skynet tree under one node: the sum of the leaves `num..num + size`, each
/// inner node spawning its ten children as coroutines and joining them.
fn skynet_node(num: u64, size: u64) -> u64 {
    if size == 1 {
        return num;
    }
    let sub = size / 10;
    let children: Vec<_> = (0..10)
        .map(|i| spawn(move || skynet_node(num + i * sub, sub)))
        .collect();
    children.into_iter().map(join).sum()
}

/// The skynet tree of `depth` levels below the root, from a root coroutine: returns
/// the root's sum and the time from spawning the root to its result. Uses whatever
/// worker count was configured (the skynet child keeps may's default, one per CPU).
pub fn skynet(depth: u32) -> (u64, Duration) {
    let t0 = Instant::now();
    let sum = join(spawn(move || skynet_node(0, 10u64.pow(depth))));
    (sum, t0.elapsed())
}
