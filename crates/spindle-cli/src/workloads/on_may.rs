//! The may workloads, on one worker thread. Each runs inside a driver coroutine, so
//! joins and parks suspend a coroutine rather than block an OS thread.

use std::hint::black_box;
use std::panic::resume_unwind;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Once, OnceLock};
use std::time::{Duration, Instant};

use may::coroutine::{self, Coroutine, JoinHandle};

use super::{half, pingpong, scale};

/// Sets may's process-global configuration: one worker. May reads it when its
/// scheduler starts (at the first spawn), so this must run before any may workload;
/// later calls do nothing.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        may::config().set_workers(1);
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
        // Neither runs before the driver blocks in join, by which time both handles
        // are published.
        let a = {
            let (turn, peers) = (Arc::clone(&turn), Arc::clone(&peers));
            spawn(move || {
                let b = peers[1].get().expect("B's handle is published");
                let t0 = Instant::now();
                pingpong::side_a(&turn, n, || b.unpark(), coroutine::park);
                t0.elapsed()
            })
        };
        let b = {
            let (turn, peers) = (Arc::clone(&turn), Arc::clone(&peers));
            spawn(move || {
                let a = peers[0].get().expect("A's handle is published");
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
