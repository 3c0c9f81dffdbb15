//! The tokio workloads: tasks on a `current_thread` runtime (one OS thread, like a
//! spindle core), for the cross-core benches on a `multi_thread` runtime with two
//! workers, and for the `_default` benches on tokio's default `multi_thread` runtime
//! (one worker per CPU). The runtime is built outside the timed part.

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};

use super::{half, scale};
use crate::affinity::HopSampler;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("cannot build a tokio current_thread runtime")
}

/// A `multi_thread` runtime with two workers: tokio's way to use two cores.
fn two_workers() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("cannot build a tokio multi_thread runtime")
}

/// Tokio's default `multi_thread` runtime: one worker per CPU.
fn default_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .build()
        .expect("cannot build a tokio multi_thread runtime")
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

/// [`spawn_join`] on the default `multi_thread` runtime, from inside a task (where
/// server code spawns: the child goes to the worker's LIFO slot).
pub fn spawn_join_default(n: u64) -> Duration {
    let rt = default_runtime();
    rt.block_on(async move {
        tokio::spawn(async move {
            let t0 = Instant::now();
            for _ in 0..n {
                tokio::spawn(async {}).await.expect("empty task panicked");
            }
            t0.elapsed()
        })
        .await
        .expect("driver task panicked")
    })
}

/// `n` round trips between two tasks through two `Notify`s: A notifies B and waits,
/// B notifies A and waits.
pub fn park_unpark(n: u64) -> Duration {
    runtime().block_on(notify_round_trips(n))
}

/// [`park_unpark`] on the default `multi_thread` runtime.
pub fn park_unpark_default(n: u64) -> Duration {
    default_runtime().block_on(notify_round_trips(n))
}

/// The body of [`park_unpark`]: spawns both tasks and times them to the end.
async fn notify_round_trips(n: u64) -> Duration {
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
}

/// `n` round trips: A sends on two unbounded channels in turn, B takes each in a
/// `tokio::select!` over both and answers on a third; `current_thread` runtime.
pub fn select_pingpong(n: u64) -> Duration {
    use tokio::sync::mpsc::unbounded_channel;
    runtime().block_on(async move {
        let (x_tx, mut x_rx) = unbounded_channel::<u64>();
        let (y_tx, mut y_rx) = unbounded_channel::<u64>();
        let (z_tx, mut z_rx) = unbounded_channel::<u64>();
        let b = tokio::spawn(async move {
            for _ in 0..n {
                let v = tokio::select! {
                    Some(v) = x_rx.recv() => v,
                    Some(v) = y_rx.recv() => v,
                };
                z_tx.send(v).expect("A left");
            }
        });
        let t0 = Instant::now();
        for i in 0..n {
            if i % 2 == 1 {
                y_tx.send(i).expect("B left");
            } else {
                x_tx.send(i).expect("B left");
            }
            z_rx.recv().await.expect("B left");
        }
        let d = t0.elapsed();
        b.await.expect("select task panicked");
        d
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

/// `n` round trips of a message between two tasks on a two-worker `multi_thread`
/// runtime, through two `tokio::sync::mpsc` channels of capacity 1. Tokio decides
/// where each task runs; every [`HopSampler::EVERY`]th message is sampled for whether
/// it crossed CPUs.
pub fn cross_core_pingpong(n: u64) -> Duration {
    two_workers().block_on(async move {
        let (to_b, mut from_a) = mpsc::channel::<u32>(1);
        let (to_a, mut from_b) = mpsc::channel::<u32>(1);
        let b = tokio::spawn(async move {
            let mut sampler = HopSampler::new();
            let mut i = 0;
            while let Some(stamp) = from_a.recv().await {
                sampler.check(stamp);
                to_a.send(HopSampler::stamp(i)).await.expect("A hung up");
                i += 1;
            }
        });
        let a = tokio::spawn(async move {
            let mut sampler = HopSampler::new();
            let t0 = Instant::now();
            for i in 0..n {
                to_b.send(HopSampler::stamp(i)).await.expect("B hung up");
                let stamp = from_b.recv().await.expect("B hung up");
                sampler.check(stamp);
            }
            t0.elapsed()
        });
        let d = a.await.expect("ping task panicked");
        b.await.expect("pong task panicked");
        d
    })
}

/// `n` times, one after the other, inside a task of a two-worker `multi_thread`
/// runtime: `tokio::spawn` a task whose first poll reads the clock, and await it.
/// Returns the sum of the times from just before `spawn` to that reading; every spawn
/// is sampled for whether the new task first ran on another CPU than the spawner.
pub fn remote_spawn(n: u64) -> Duration {
    two_workers().block_on(async move {
        tokio::spawn(async move {
            let mut sampler = HopSampler::new();
            let mut total = Duration::ZERO;
            for _ in 0..n {
                let from = HopSampler::cpu_stamp();
                let t0 = Instant::now();
                let (t1, crossed) = tokio::spawn(async move {
                    let t1 = Instant::now();
                    (t1, HopSampler::cpu_stamp() != from)
                })
                .await
                .expect("spawned task panicked");
                total += t1 - t0;
                sampler.count(crossed);
            }
            total
        })
        .await
        .expect("spawning task panicked")
    })
}

/// The skynet tree under one node: the sum of the leaves `num..num + size`, each
/// inner node spawning its ten children as tasks and awaiting their `JoinHandle`s.
fn skynet_node(num: u64, size: u64) -> Pin<Box<dyn Future<Output = u64> + Send>> {
    Box::pin(async move {
        if size == 1 {
            return num;
        }
        let sub = size / 10;
        let children: Vec<_> = (0..10)
            .map(|i| tokio::spawn(skynet_node(num + i * sub, sub)))
            .collect();
        let mut sum = 0;
        for child in children {
            sum += child.await.expect("skynet task panicked");
        }
        sum
    })
}

/// The skynet tree of `depth` levels below the root, on a default `multi_thread`
/// runtime (one worker per CPU): returns the root's sum and the time from spawning
/// the root task to its result.
pub fn skynet(depth: u32) -> (u64, Duration) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .build()
        .expect("cannot build a tokio multi_thread runtime");
    rt.block_on(async move {
        let t0 = Instant::now();
        let sum = tokio::spawn(skynet_node(0, 10u64.pow(depth)))
            .await
            .expect("skynet root panicked");
        (sum, t0.elapsed())
    })
}
