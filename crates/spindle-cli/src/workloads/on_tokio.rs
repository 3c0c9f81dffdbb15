//! The tokio workloads: tasks on a `current_thread` runtime (one OS thread, like a
//! spindle core). The runtime is built outside the timed part.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::{half, scale};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("cannot build a tokio current_thread runtime")
}

/// `n` switches: two tasks call `tokio::task::yield_now` `n / 2` times each (rounded
/// up).
pub fn switch(n: u64) -> Duration {
    let k = half(n);
    let d = runtime().block_on(async move {
        let yielder = move || async move {
            for _ in 0..k {
                tokio::task::yield_now().await;
            }
        };
        let t0 = Instant::now();
        let a = tokio::spawn(yielder());
        let b = tokio::spawn(yielder());
        a.await.expect("yielding task panicked");
        b.await.expect("yielding task panicked");
        t0.elapsed()
    });
    scale(d, 2 * k, n)
}

/// `n` times: spawns an empty task and awaits its `JoinHandle`, inside `block_on`.
pub fn spawn_join(n: u64) -> Duration {
    runtime().block_on(async move {
        let t0 = Instant::now();
        for _ in 0..n {
            tokio::spawn(async {}).await.expect("empty task panicked");
        }
        t0.elapsed()
    })
}

/// `n` round trips between two tasks through two `Notify`s: A notifies B and waits,
/// B notifies A and waits.
pub fn park_unpark(n: u64) -> Duration {
    runtime().block_on(async move {
        let (to_a, to_b) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let t0 = Instant::now();
        let b = {
            let (to_a, to_b) = (Arc::clone(&to_a), Arc::clone(&to_b));
            tokio::spawn(async move {
                for _ in 0..n {
                    to_b.notified().await;
                    to_a.notify_one();
                }
            })
        };
        let a = tokio::spawn(async move {
            for _ in 0..n {
                to_b.notify_one();
                to_a.notified().await;
            }
        });
        a.await.expect("notify task panicked");
        b.await.expect("notify task panicked");
        t0.elapsed()
    })
}

/// Calls `tokio::task::try_id()` `n` times inside a task.
pub fn current(n: u64) -> Duration {
    runtime().block_on(async move {
        tokio::spawn(async move {
            let t0 = Instant::now();
            for _ in 0..n {
                black_box(tokio::task::try_id());
            }
            t0.elapsed()
        })
        .await
        .expect("task panicked")
    })
}
