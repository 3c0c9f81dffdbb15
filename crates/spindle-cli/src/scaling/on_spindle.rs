//! The scaling workloads on spindle: a runtime of `cores` worker cores (plus the
//! hypercore), plain `spawn`, `spindle::sync::mpsc`, park/unpark and `yield_now`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use spindle::sync::mpsc;

use super::work::{Size, Work, fib_seq, ring_member, skynet_sum};

/// Runs `work` of `size` once to warm up, then at once a second time, timed, on
/// `cores` worker cores. Returns the time and the locality counters of both runs
/// (read once the cores went idle after them: reading between the runs would let
/// the idle cores give back the stack memory the timed run then faults in again).
pub fn run(work: Work, size: Size, cores: usize) -> (Duration, Locality) {
    let rt = spindle::Runtime::builder()
        .cores(cores)
        .build()
        .expect("cannot build the runtime");
    let before = rt.stats();
    let d = rt.block_on(move || {
        one(work, size);
        let t0 = Instant::now();
        one(work, size);
        t0.elapsed()
    });
    (d, Locality::between(&before, &settled(&rt)))
}

/// The runtime's counters once its cores went idle: a core publishes them when it
/// goes to sleep, so a short wait after the work suffices.
fn settled(rt: &spindle::Runtime) -> spindle::RuntimeStats {
    std::thread::sleep(Duration::from_millis(20));
    rt.stats()
}

/// What spindle's counters say about locality during the warm-up and the timed run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Locality {
    /// Threads spawned.
    pub spawned: u64,
    /// Of those, the ones placed on the spawner's core.
    pub spawned_local: u64,
    /// Threads given to an idle core in answer to its request.
    pub stolen: u64,
    /// Work requests sent by idle cores.
    pub requests: u64,
    /// Requests refused (nothing to give).
    pub refused: u64,
    /// Sleeping cores woken to look for work.
    pub sibling_wakes: u64,
    /// Worker cores on which threads ended.
    pub cores_used: usize,
}

impl Locality {
    /// The counters of the work between two readings.
    fn between(a: &spindle::RuntimeStats, b: &spindle::RuntimeStats) -> Locality {
        let (ta, tb) = (a.total(), b.total());
        let used = b
            .cores
            .iter()
            .filter(|(id, s)| {
                let was = a
                    .cores
                    .iter()
                    .find(|(i, _)| i == id)
                    .map_or(0, |(_, s)| s.exited);
                s.exited > was
            })
            .count();
        Locality {
            spawned: tb.spawned - ta.spawned,
            spawned_local: tb.spawned_local - ta.spawned_local,
            stolen: tb.stolen_in - ta.stolen_in,
            requests: tb.requests_sent - ta.requests_sent,
            refused: tb.requests_refused - ta.requests_refused,
            sibling_wakes: tb.sibling_wakes - ta.sibling_wakes,
            cores_used: used,
        }
    }
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
                spindle::spawn(|| ()).join().unwrap();
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
        .map(|i| spindle::spawn(move || skynet(num + i * child, child, fanout)))
        .collect();
    hs.into_iter().map(|h| h.join().unwrap()).sum()
}

fn fib(n: u64, depth: u64, spawn_above: u64) -> u64 {
    if n < 2 || depth >= spawn_above {
        return fib_seq(n);
    }
    let a = spindle::spawn(move || fib(n - 1, depth + 1, spawn_above));
    let b = fib(n - 2, depth + 1, spawn_above);
    a.join().unwrap() + b
}

fn fanin(producers: u64, each: u64) {
    let (tx, rx) = mpsc::channel::<u64>();
    let hs: Vec<_> = (0..producers)
        .map(|p| {
            let tx = tx.clone();
            spindle::spawn(move || {
                for i in 0..each {
                    tx.send(p * each + i).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let total: u64 = rx.iter().count() as u64;
    assert_eq!(total, producers * each);
    hs.into_iter().for_each(|h| h.join().unwrap());
}

fn pairs(pairs: u64, rounds: u64) {
    let hs: Vec<_> = (0..pairs)
        .flat_map(|_| {
            let (a_tx, a_rx) = mpsc::channel::<u64>();
            let (b_tx, b_rx) = mpsc::channel::<u64>();
            let ping = spindle::spawn(move || {
                for i in 0..rounds {
                    a_tx.send(i).unwrap();
                    assert_eq!(b_rx.recv().unwrap(), i);
                }
            });
            let pong = spindle::spawn(move || {
                for _ in 0..rounds {
                    let v = a_rx.recv().unwrap();
                    b_tx.send(v).unwrap();
                }
            });
            [ping, pong]
        })
        .collect();
    hs.into_iter().for_each(|h| h.join().unwrap());
}

/// A token of `hops` hops passed around a ring of `threads` threads, each waiting in
/// `park` for its mailbox (0: empty, else the hops left + 1; a node that sees 1 passes
/// a 1 on and stops, so every node ends).
fn ring(threads: u64, hops: u64) {
    let tokens: Arc<Vec<AtomicU64>> = Arc::new((0..threads).map(|_| AtomicU64::new(0)).collect());
    let ring: Arc<OnceLock<Vec<spindle::Thread>>> = Arc::new(OnceLock::new());
    let hs: Vec<_> = (0..threads as usize)
        .map(|i| {
            let (tokens, ring) = (tokens.clone(), ring.clone());
            spindle::spawn(move || {
                // The ring is set before the first token leaves main.
                ring_member(&tokens, i, spindle::park, |next| {
                    ring.get().expect("the ring is complete")[next].unpark();
                });
            })
        })
        .collect();
    let _ = ring.set(hs.iter().map(|h| h.thread().clone()).collect());
    tokens[0].store(hops + 1, Ordering::Release);
    ring.get().expect("just set")[0].unpark();
    hs.into_iter().for_each(|h| h.join().unwrap());
}

fn chained_spawn(n: u64) {
    fn link(left: u64, done: mpsc::Sender<()>) {
        if left == 0 {
            done.send(()).unwrap();
        } else {
            drop(spindle::spawn(move || link(left - 1, done)));
        }
    }
    let (tx, rx) = mpsc::channel();
    drop(spindle::spawn(move || link(n, tx)));
    rx.recv().unwrap();
}

fn yield_many(threads: u64, yields: u64) {
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            spindle::spawn(move || {
                for _ in 0..yields {
                    spindle::yield_now();
                }
            })
        })
        .collect();
    hs.into_iter().for_each(|h| h.join().unwrap());
}
