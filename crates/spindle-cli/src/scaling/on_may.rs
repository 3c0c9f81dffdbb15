//! The scaling workloads on may with `cores` workers (set once per process: these
//! runs are always in a child process of their own), in coroutines.

use std::panic::resume_unwind;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use may::coroutine::{self, Coroutine, JoinHandle};
use may::sync::mpsc;

use super::work::{Size, Work, fib_seq, ring_member, skynet_sum, warm_then_time};

fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // SAFETY: these closures hold no thread-local across a yield and need far less stack than may's default (the same contract as the single-core may workloads).
    unsafe { coroutine::spawn(f) }
}

fn join<T>(h: JoinHandle<T>) -> T {
    h.join().unwrap_or_else(|e| resume_unwind(e))
}

/// Runs `work` of `size` once to warm up, then once timed, on `cores` workers.
pub fn run(work: Work, size: Size, cores: usize) -> Duration {
    crate::workloads::on_may::init_with(cores);
    join(spawn(move || warm_then_time(|| one(work, size))))
}

fn one(work: Work, s: Size) {
    match work {
        Work::Skynet => assert_eq!(skynet(0, s.n, s.m), skynet_sum(s.n)),
        Work::Fib => assert_eq!(fib(s.n, 0, s.m), fib_seq(s.n)),
        Work::Fanin => fanin(s.m, s.n),
        Work::Pairs => pairs(s.m, s.n),
        Work::Ring => ring(s.m, s.n),
        Work::ChainedSpawn => chained_spawn(s.n),
        Work::YieldMany => yield_many(s.m, s.n),
        Work::SpawnJoinDefault => {
            for _ in 0..s.n {
                join(spawn(|| ()));
            }
        }
    }
}

fn skynet(num: u64, size: u64, fanout: u64) -> u64 {
    if size == 1 {
        return num;
    }
    let child = size / fanout;
    let hs: Vec<_> = (0..fanout)
        .map(|i| spawn(move || skynet(num + i * child, child, fanout)))
        .collect();
    hs.into_iter().map(join).sum()
}

fn fib(n: u64, depth: u64, spawn_above: u64) -> u64 {
    if n < 2 || depth >= spawn_above {
        return fib_seq(n);
    }
    let a = spawn(move || fib(n - 1, depth + 1, spawn_above));
    let b = fib(n - 2, depth + 1, spawn_above);
    join(a) + b
}

fn fanin(producers: u64, each: u64) {
    let (tx, rx) = mpsc::channel::<u64>();
    let hs: Vec<_> = (0..producers)
        .map(|p| {
            let tx = tx.clone();
            spawn(move || {
                for i in 0..each {
                    tx.send(p * each + i).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let mut total = 0;
    while rx.recv().is_ok() {
        total += 1;
    }
    assert_eq!(total, producers * each);
    hs.into_iter().for_each(join);
}

fn pairs(pairs: u64, rounds: u64) {
    let hs: Vec<_> = (0..pairs)
        .flat_map(|_| {
            let (a_tx, a_rx) = mpsc::channel::<u64>();
            let (b_tx, b_rx) = mpsc::channel::<u64>();
            let ping = spawn(move || {
                for i in 0..rounds {
                    a_tx.send(i).unwrap();
                    assert_eq!(b_rx.recv().unwrap(), i);
                }
            });
            let pong = spawn(move || {
                for _ in 0..rounds {
                    let v = a_rx.recv().unwrap();
                    b_tx.send(v).unwrap();
                }
            });
            [ping, pong]
        })
        .collect();
    hs.into_iter().for_each(join);
}

/// The ring of the spindle workload, with may's park/unpark.
fn ring(threads: u64, hops: u64) {
    let tokens: Arc<Vec<AtomicU64>> = Arc::new((0..threads).map(|_| AtomicU64::new(0)).collect());
    let ring: Arc<OnceLock<Vec<Coroutine>>> = Arc::new(OnceLock::new());
    let hs: Vec<_> = (0..threads as usize)
        .map(|i| {
            let (tokens, ring) = (tokens.clone(), ring.clone());
            spawn(move || {
                ring_member(&tokens, i, coroutine::park, |next| {
                    ring.get().expect("the ring is complete")[next].unpark();
                });
            })
        })
        .collect();
    let _ = ring.set(hs.iter().map(|h| h.coroutine().clone()).collect());
    tokens[0].store(hops + 1, Ordering::Release);
    ring.get().expect("just set")[0].unpark();
    hs.into_iter().for_each(join);
}

fn chained_spawn(n: u64) {
    fn link(left: u64, done: mpsc::Sender<()>) {
        if left == 0 {
            done.send(()).unwrap();
        } else {
            drop(spawn(move || link(left - 1, done)));
        }
    }
    let (tx, rx) = mpsc::channel();
    drop(spawn(move || link(n, tx)));
    rx.recv().unwrap();
}

fn yield_many(threads: u64, yields: u64) {
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            spawn(move || {
                for _ in 0..yields {
                    coroutine::yield_now();
                }
            })
        })
        .collect();
    hs.into_iter().for_each(join);
}
