//! Locality: plain spawns stay on the spawner's core, idle cores ask busy ones for
//! work, and the counters say so. Asserted on counters, never on time, with as many
//! cores configured as each test needs, whatever the machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use spindle::{CoreStats, Handle, Runtime, RuntimeStats};

mod common;
use common::{Rng, watchdog};

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
        let stop = Arc::new(AtomicBool::new(false));
        let churns = Arc::new(AtomicU64::new(0));
        let churner = {
            let (handle, stop, churns) = (handle.clone(), stop.clone(), churns.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(round * 104_729 + 1);
                while !stop.load(Ordering::Relaxed) {
                    let cores = handle.cores();
                    if cores.len() > 2 && rng.next().is_multiple_of(2) {
                        let victim = cores[(rng.next() as usize) % cores.len()].id;
                        let _ = handle.remove_core(victim);
                    } else if cores.len() < 6 {
                        handle.add_core(spindle::DEFAULT_TYPE).unwrap();
                    }
                    churns.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_micros(200 + rng.next() % 800));
                }
            })
        };
        let sum = rt.block_on(|| skynet(0, 10_000, 10));
        stop.store(true, Ordering::Relaxed);
        churner.join().unwrap();
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
