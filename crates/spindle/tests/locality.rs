//! Locality: plain spawns stay on the spawner's core, idle cores ask busy ones for
//! work, and the counters say so. Asserted on counters, never on time, with as many
//! cores configured as each test needs, whatever the machine.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use spindle::sync::mpsc;
use spindle::{CoreStats, Handle, Runtime, RuntimeStats};

mod common;
use common::{Churner, watchdog};

/// The skynet tree: each node spawns `fanout` children with a plain `spawn` and joins
/// them; the leaves compute a little (so that the tree lasts long enough for every
/// idle core to ask for work, on any machine) and return their number. Returns the
/// sum of the leaves.
fn skynet(num: u64, size: u64, fanout: u64) -> u64 {
    if size == 1 {
        let mut x = num;
        for _ in 0..20_000 {
            x = std::hint::black_box(x.rotate_left(5) ^ 0x9e37_79b9);
        }
        std::hint::black_box(x);
        return num;
    }
    let child = size / fanout;
    let hs: Vec<_> = (0..fanout)
        .map(|i| spindle::spawn(move || skynet(num + i * child, child, fanout)))
        .collect();
    hs.into_iter().map(|h| h.join().unwrap()).sum()
}

/// The runtime's counters once every core published at least `spawned` spawns and
/// as many exits (cores publish when they go idle).
fn settled(handle: &Handle, spawned: u64) -> RuntimeStats {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = handle.stats();
        let t = s.total();
        // Main exits too.
        if (t.spawned >= spawned && t.exited > spawned) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn plain_spawns_stay_on_the_spawners_core() {
    let _w = watchdog("local spawns", 60);
    let rt = Runtime::builder().cores(4).build().unwrap();
    // The spawner is bound to its core, so that no idle core takes it away between
    // the two readings of its core's counters.
    let (before, after) = rt.block_on(|| {
        spindle::spawn_on(1, || {
            let before = spindle::core_stats().unwrap();
            for i in 0..100u64 {
                assert_eq!(spindle::spawn(move || i).join().unwrap(), i);
            }
            (before, spindle::core_stats().unwrap())
        })
        .join()
        .unwrap()
    });
    assert_eq!(after.spawned - before.spawned, 100);
    assert_eq!(
        after.spawned_local - before.spawned_local,
        100,
        "every plain spawn goes on the spawner's core"
    );
    _w.store(true, Ordering::Relaxed);
}

/// The cores on which each side of a channel ping-pong ran: where it started, then
/// round by round. A is spawned with `a`, B with `b`, from main; A sends first.
fn ping_pong_cores(
    a: spindle::Builder,
    b: spindle::Builder,
    rounds: usize,
) -> (Vec<usize>, Vec<usize>) {
    let (to_b, from_a) = mpsc::channel::<usize>();
    let (to_a, from_b) = mpsc::channel::<usize>();
    let b = b
        .spawn(move || {
            let mut cores = vec![spindle::current_core().unwrap()];
            for i in from_a.iter() {
                cores.push(spindle::current_core().unwrap());
                to_a.send(i).unwrap();
            }
            cores
        })
        .unwrap();
    let a = a
        .spawn(move || {
            let mut cores = vec![spindle::current_core().unwrap()];
            for i in 0..rounds {
                to_b.send(i).unwrap();
                assert_eq!(from_b.recv().unwrap(), i);
                cores.push(spindle::current_core().unwrap());
            }
            cores
        })
        .unwrap();
    let a = a.join().unwrap();
    (a, b.join().unwrap())
}

/// Two unbound threads that start on two cores and pass a message back and forth end
/// up on one core: a woken thread runs on its waker's core once its context is saved
/// (wake affinity), and `woken_here` counts it. Two bound threads stay where they
/// were put.
#[test]
fn woken_threads_follow_their_waker_unless_bound() {
    const ROUNDS: usize = 1000;
    let _w = watchdog("wake affinity", 60);
    let rt = Runtime::builder().cores(2).build().unwrap();
    // A is spawned plain (on main's core), B on the least loaded core of the type,
    // the other one while main runs. An idle core may take one of them away before it
    // starts: such a try proves nothing and is made again.
    let mut apart_at_start = 0;
    for _ in 0..20 {
        let (a, b) = rt.block_on(|| {
            ping_pong_cores(
                spindle::Builder::new(),
                spindle::Builder::new().core_type(spindle::DEFAULT_TYPE),
                ROUNDS,
            )
        });
        if a[0] == b[0] {
            continue;
        }
        apart_at_start += 1;
        let (a_end, b_end) = (a[ROUNDS], b[ROUNDS]);
        let apart = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        assert!(
            a_end == b_end && apart < ROUNDS / 2,
            "the pair should end up on one core; apart in {apart} of {ROUNDS} rounds, \
             A ended on {a_end}, B on {b_end}"
        );
        break;
    }
    assert_eq!(
        apart_at_start, 1,
        "the two sides never started on two cores"
    );
    assert!(
        settled_woken(rt.handle()) >= 1,
        "no woken thread followed its waker"
    );
    let (a, b) = rt.block_on(|| {
        ping_pong_cores(
            spindle::Builder::new().core(0),
            spindle::Builder::new().core(1),
            ROUNDS,
        )
    });
    assert!(a.iter().all(|&c| c == 0) && b.iter().all(|&c| c == 1));
    _w.store(true, Ordering::Relaxed);
}

/// The runtime's `woken_here` total once the cores published it (they do when they go
/// to sleep).
fn settled_woken(handle: &Handle) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let w = handle.stats().total().woken_here;
        if w > 0 || Instant::now() > deadline {
            return w;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Skynet on 8 configured cores (on any number of CPUs): every spawn stays local,
/// idle cores get threads by asking for them, and every core runs some.
#[test]
fn skynet_stays_local_and_still_uses_every_core() {
    const CORES: usize = 8;
    const LEAVES: u64 = 10_000;
    // The root, then 10 + 100 + 1,000 + 10,000 threads below it.
    const SPAWNS: u64 = 11_111;
    let _w = watchdog("skynet locality", 120);
    let rt = Runtime::builder().cores(CORES).build().unwrap();
    let sum = rt.block_on(|| spindle::spawn(|| skynet(0, LEAVES, 10)).join().unwrap());
    assert_eq!(sum, LEAVES * (LEAVES - 1) / 2);
    let stats = settled(rt.handle(), SPAWNS);
    let t = stats.total();
    assert_eq!(t.spawned, SPAWNS, "{t:#?}");
    assert_eq!(
        t.spawned_local, SPAWNS,
        "every plain spawn stays local: {t:#?}"
    );
    assert_eq!(
        t.stolen_in, t.stolen_out,
        "every stolen thread arrived: {t:#?}"
    );
    let idle: Vec<usize> = stats
        .cores
        .iter()
        .filter(|(id, s)| *id < CORES && s.exited == 0)
        .map(|(id, _)| *id)
        .collect();
    assert!(
        idle.is_empty(),
        "cores {idle:?} ran no thread of the tree: {:#?}",
        stats.cores
    );
    _w.store(true, Ordering::Relaxed);
}

/// Fork-join under core churn: recursive plain spawns while an OS thread adds and
/// removes cores; every result arrives exactly once, and the counters add up (every
/// thread given away was taken in, every spawned thread exited). Bounded in time.
#[test]
fn stealing_survives_core_churn() {
    const SECS: u64 = 3;
    let w = watchdog("stealing under churn", 120);
    let deadline = Instant::now() + Duration::from_secs(SECS);
    let mut round = 0;
    while Instant::now() < deadline {
        round += 1;
        let rt = Runtime::builder().cores(4).build().unwrap();
        let handle = rt.handle().clone();
        let churner = Churner::start(handle.clone(), round * 104_729 + 1, (200, 800));
        let sum = rt.block_on(|| skynet(0, 10_000, 10));
        churner.stop();
        assert_eq!(sum, 10_000 * 9_999 / 2, "round {round}");
        // Removed cores published their counters when they stopped.
        // Main's children and all below them (main itself came from an OS thread).
        let t: CoreStats = settled(&handle, 11_110).total();
        assert_eq!(t.spawned, 11_110, "round {round}: {t:#?}");
        assert_eq!(
            t.exited,
            t.spawned + 1,
            "round {round}: main exits too: {t:#?}"
        );
        assert_eq!(t.stolen_in, t.stolen_out, "round {round}: {t:#?}");
        drop(rt);
    }
    w.store(true, Ordering::Relaxed);
}
