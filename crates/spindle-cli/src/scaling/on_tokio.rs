//! The scaling workloads on tokio's `multi_thread` runtime with `cores` workers:
//! `tokio::spawn`, `tokio::sync::mpsc`, `Notify` for the ring, `yield_now`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};

use super::work::{Size, Work, fib_seq, skynet_sum};

/// Runs `work` of `size` once to warm up, then once timed, on `cores` workers.
pub fn run(work: Work, size: Size, cores: usize) -> Duration {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .build()
        .expect("cannot build a tokio multi_thread runtime");
    rt.block_on(async move {
        // The work runs in a task, as user code does (block_on's future is not one).
        tokio::spawn(async move {
            one(work, size).await;
            let t0 = Instant::now();
            one(work, size).await;
            t0.elapsed()
        })
        .await
        .expect("the driver task panicked")
    })
}

async fn one(work: Work, s: Size) {
    match work {
        Work::Skynet => assert_eq!(skynet(0, s.n, s.m).await, skynet_sum(s.n)),
        Work::Fib => assert_eq!(fib(s.n, 0, s.m).await, fib_seq(s.n)),
        Work::Fanin => fanin(s.m, s.n).await,
        Work::Pairs => pairs(s.m, s.n).await,
        Work::Ring => ring(s.m, s.n).await,
        Work::ChainedSpawn => chained_spawn(s.n).await,
        Work::YieldMany => yield_many(s.m, s.n).await,
        Work::SpawnJoinDefault => {
            for _ in 0..s.n {
                tokio::spawn(async {}).await.unwrap();
            }
        }
    }
}

fn skynet(num: u64, size: u64, fanout: u64) -> Pin<Box<dyn Future<Output = u64> + Send>> {
    Box::pin(async move {
        if size == 1 {
            return num;
        }
        let child = size / fanout;
        let hs: Vec<_> = (0..fanout)
            .map(|i| tokio::spawn(skynet(num + i * child, child, fanout)))
            .collect();
        let mut sum = 0;
        for h in hs {
            sum += h.await.unwrap();
        }
        sum
    })
}

fn fib(n: u64, depth: u64, spawn_above: u64) -> Pin<Box<dyn Future<Output = u64> + Send>> {
    Box::pin(async move {
        if n < 2 || depth >= spawn_above {
            return fib_seq(n);
        }
        let a = tokio::spawn(fib(n - 1, depth + 1, spawn_above));
        let b = fib(n - 2, depth + 1, spawn_above).await;
        a.await.unwrap() + b
    })
}

async fn fanin(producers: u64, each: u64) {
    let (tx, mut rx) = mpsc::unbounded_channel::<u64>();
    for p in 0..producers {
        let tx = tx.clone();
        tokio::spawn(async move {
            for i in 0..each {
                tx.send(p * each + i).unwrap();
            }
        });
    }
    drop(tx);
    let mut total = 0;
    while rx.recv().await.is_some() {
        total += 1;
    }
    assert_eq!(total, producers * each);
}

async fn pairs(pairs: u64, rounds: u64) {
    let mut hs = Vec::new();
    for _ in 0..pairs {
        let (a_tx, mut a_rx) = mpsc::unbounded_channel::<u64>();
        let (b_tx, mut b_rx) = mpsc::unbounded_channel::<u64>();
        hs.push(tokio::spawn(async move {
            for i in 0..rounds {
                a_tx.send(i).unwrap();
                assert_eq!(b_rx.recv().await.unwrap(), i);
            }
        }));
        hs.push(tokio::spawn(async move {
            for _ in 0..rounds {
                let v = a_rx.recv().await.unwrap();
                b_tx.send(v).unwrap();
            }
        }));
    }
    for h in hs {
        h.await.unwrap();
    }
}

async fn ring(threads: u64, hops: u64) {
    let tokens: Arc<Vec<AtomicU64>> = Arc::new((0..threads).map(|_| AtomicU64::new(0)).collect());
    let bells: Arc<Vec<Notify>> = Arc::new((0..threads).map(|_| Notify::new()).collect());
    let hs: Vec<_> = (0..threads as usize)
        .map(|i| {
            let (tokens, bells) = (tokens.clone(), bells.clone());
            tokio::spawn(async move {
                let next = (i + 1) % tokens.len();
                loop {
                    let t = tokens[i].swap(0, Ordering::Acquire);
                    if t == 0 {
                        bells[i].notified().await;
                        continue;
                    }
                    tokens[next].store(t.saturating_sub(1).max(1), Ordering::Release);
                    bells[next].notify_one();
                    if t == 1 {
                        return;
                    }
                }
            })
        })
        .collect();
    tokens[0].store(hops + 1, Ordering::Release);
    bells[0].notify_one();
    for h in hs {
        h.await.unwrap();
    }
}

async fn chained_spawn(n: u64) {
    fn link(left: u64, done: mpsc::UnboundedSender<()>) {
        if left == 0 {
            done.send(()).unwrap();
        } else {
            tokio::spawn(async move { link(left - 1, done) });
        }
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move { link(n, tx) });
    rx.recv().await.unwrap();
}

async fn yield_many(threads: u64, yields: u64) {
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            tokio::spawn(async move {
                for _ in 0..yields {
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for h in hs {
        h.await.unwrap();
    }
}
