//! The service core (the hypercore): maintenance threads run there and nowhere else,
//! it is protected from ordinary spawns and removal, the reaper releases stack memory,
//! and the balancer spreads threads over the cores of a type.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::watchdog;
use spindle::{Builder, ConfigError, CoreError, CoreType, Runtime, SpawnError};

#[test]
fn maintenance_threads_run_only_on_the_hypercore() {
    let _w = watchdog("maintenance placement", 60);
    let rt = Runtime::builder().cores(2).build().unwrap();
    let hyper = rt.hypercore().expect("a hypercore by default");
    assert_eq!(hyper.core_type, spindle::SERVICE_TYPE);
    assert!(
        rt.cores().iter().all(|c| c.id != hyper.id),
        "cores() lists workers only"
    );
    let elsewhere = Arc::new(AtomicUsize::new(0));
    let looks = Arc::new(AtomicUsize::new(0));
    let child_on_worker = rt.block_on({
        let (elsewhere, looks) = (elsewhere.clone(), looks.clone());
        move || {
            // Worker threads keep the workers busy meanwhile.
            let stop = Arc::new(AtomicBool::new(false));
            let busy: Vec<_> = (0..4)
                .map(|_| {
                    let stop = stop.clone();
                    spindle::spawn(move || {
                        while !stop.load(Ordering::Relaxed) {
                            spindle::yield_now();
                        }
                    })
                })
                .collect();
            let maint: Vec<_> = (0..16)
                .map(|i| {
                    let (elsewhere, looks) = (elsewhere.clone(), looks.clone());
                    spindle::spawn_maintenance(move || {
                        for k in 0..500 {
                            if spindle::current_core() != Some(hyper.id) {
                                elsewhere.fetch_add(1, Ordering::Relaxed);
                            }
                            looks.fetch_add(1, Ordering::Relaxed);
                            if (k + i) % 7 == 0 {
                                spindle::sleep(Duration::from_micros(50));
                            } else {
                                spindle::yield_now();
                            }
                        }
                    })
                })
                .collect();
            for h in maint {
                h.join().unwrap();
            }
            // A plain spawn from a maintenance thread makes a worker thread.
            let child = spindle::spawn_maintenance(|| {
                spindle::spawn(spindle::current_core).join().unwrap()
            })
            .join()
            .unwrap();
            stop.store(true, Ordering::Relaxed);
            for h in busy {
                h.join().unwrap();
            }
            child
        }
    });
    assert_eq!(looks.load(Ordering::Relaxed), 16 * 500);
    assert_eq!(
        elsewhere.load(Ordering::Relaxed),
        0,
        "a maintenance thread ran on a worker"
    );
    assert_ne!(child_on_worker, Some(hyper.id));
    assert!(child_on_worker.is_some());
    _w.store(true, Ordering::Relaxed);
}

#[test]
fn the_service_core_is_protected_with_typed_errors() {
    let rt = Runtime::builder().cores(2).build().unwrap();
    let hyper = rt.hypercore().unwrap().id;
    assert_eq!(
        rt.remove_core(hyper),
        Err(CoreError::ServiceCore { core: hyper })
    );
    assert_eq!(
        rt.add_core(spindle::SERVICE_TYPE),
        Err(CoreError::ServiceCore { core: hyper })
    );
    let (on, ty, mig) = rt.block_on(move || {
        let on = Builder::new().core(hyper).spawn(|| ()).map(|_| ());
        let ty = Builder::new()
            .core_type(spindle::SERVICE_TYPE)
            .spawn(|| ())
            .map(|_| ());
        (on, ty, spindle::migrate_to(hyper))
    });
    assert!(matches!(on, Err(SpawnError::ServiceCore { core }) if core == hyper));
    assert!(matches!(ty, Err(SpawnError::ServiceCore { .. })));
    assert_eq!(mig, Err(CoreError::ServiceCore { core: hyper }));
    let msg = SpawnError::ServiceCore { core: hyper }.to_string();
    assert!(msg.contains("spawn_maintenance"), "{msg}");
    let reserved = Runtime::builder()
        .core_type(CoreType::new(spindle::SERVICE_TYPE).cores(1))
        .build();
    assert!(matches!(
        reserved,
        Err(ConfigError::ReservedTypeName { .. })
    ));
    // Without a hypercore the name is free, and maintenance threads run on workers.
    let plain = Runtime::builder()
        .cores(2)
        .hypercore(false)
        .build()
        .unwrap();
    assert!(plain.hypercore().is_none());
    let ran_on = plain.block_on(|| spindle::spawn_maintenance(spindle::current_core).join());
    let ran_on = ran_on.unwrap().expect("ran on a core");
    assert!(plain.cores().iter().any(|c| c.id == ran_on));
}

#[test]
fn the_reaper_releases_stack_memory_that_idle_cores_hand_over() {
    let _w = watchdog("reaper", 60);
    let rt = Runtime::builder().cores(1).build().unwrap();
    let before = spindle::stack::reaped_blocks();
    rt.block_on(|| {
        // 2,000 threads alive at once, so the core's pool holds ~2,000 free blocks
        // once they end: far above what an idle core keeps.
        let go = Arc::new(AtomicBool::new(false));
        let hs: Vec<_> = (0..2000)
            .map(|_| {
                let go = go.clone();
                spindle::spawn(move || {
                    while !go.load(Ordering::Acquire) {
                        spindle::sleep(Duration::from_micros(200));
                    }
                })
            })
            .collect();
        go.store(true, Ordering::Release);
        for h in hs {
            h.join().unwrap();
        }
    });
    // The core goes idle and hands the blocks beyond what it keeps (256 per size;
    // above 1,024 half had already gone to the spare list) to the reaper.
    let t0 = Instant::now();
    while spindle::stack::reaped_blocks() < before + 400 && t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        spindle::stack::reaped_blocks() >= before + 400,
        "reaped {} blocks",
        spindle::stack::reaped_blocks() - before
    );
    _w.store(true, Ordering::Relaxed);
}

#[test]
fn the_balancer_spreads_threads_from_one_core_over_the_type() {
    let _w = watchdog("balancer", 120);
    const N: usize = 1000;
    let rt = Runtime::builder().cores(1).build().unwrap();
    let handle = rt.handle().clone();
    let (spread, moved) = rt.block_on(move || {
        let first = spindle::current_core().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let last: Arc<Vec<AtomicUsize>> =
            Arc::new((0..N).map(|_| AtomicUsize::new(usize::MAX)).collect());
        // All on the only worker core: placement has nowhere else to put them.
        let hs: Vec<_> = (0..N)
            .map(|i| {
                let (stop, last) = (stop.clone(), last.clone());
                spindle::spawn(move || {
                    let mut x = i as u64;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..200 {
                            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                        }
                        last[i].store(spindle::current_core().unwrap(), Ordering::Relaxed);
                        spindle::yield_now();
                    }
                    x
                })
            })
            .collect();
        assert!(last.iter().all(|c| {
            let c = c.load(Ordering::Relaxed);
            c == usize::MAX || c == first
        }));
        // Two more cores of the type join; the balancer must fill them.
        let added = [
            handle.add_core("default").unwrap(),
            handle.add_core("default").unwrap(),
        ];
        let count_on = |c: usize| {
            last.iter()
                .filter(|l| l.load(Ordering::Relaxed) == c)
                .count()
        };
        loop {
            let spread = [first, added[0], added[1]].map(count_on);
            if spread.iter().all(|&n| n >= N / 10) {
                stop.store(true, Ordering::Relaxed);
                for h in hs {
                    h.join().unwrap();
                }
                // This thread may have been balanced too: go back to read the stats
                // of the first core.
                spindle::migrate_to(first).unwrap();
                let moved: u64 = spindle::core_stats().map_or(0, |s| s.balanced_out);
                return (spread, moved);
            }
            spindle::sleep(Duration::from_millis(5));
        }
    });
    assert!(spread.iter().all(|&n| n >= N / 10), "{spread:?}");
    assert!(
        moved > 0,
        "the first core sent threads at the balancer's request"
    );
    _w.store(true, Ordering::Relaxed);
}
