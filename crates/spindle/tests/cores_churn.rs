//! Cores joining and leaving while threads run, sleep and park: nothing lost, nothing
//! run twice. And the errors of removing a core that cannot go.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use spindle::{Builder, CoreError, CoreType, Runtime};

mod common;
use common::{Rng, watchdog};

#[test]
fn ten_thousand_threads_survive_random_core_churn() {
    const THREADS: usize = 10_000;
    const STEPS: u64 = 40;
    let w = watchdog("core churn", 240);
    let rt = Runtime::builder().cores(4).build().unwrap();
    let handle = rt.handle().clone();
    // Per thread: is it on a CPU right now (a thread run twice at once trips this),
    // and how many steps it made.
    let running: Arc<Vec<AtomicBool>> =
        Arc::new((0..THREADS).map(|_| AtomicBool::new(false)).collect());
    let steps: Arc<Vec<AtomicU64>> = Arc::new((0..THREADS).map(|_| AtomicU64::new(0)).collect());
    let finished = Arc::new(AtomicUsize::new(0));
    let churn_done = Arc::new(AtomicBool::new(false));

    let mut hs = Vec::with_capacity(THREADS);
    for i in 0..THREADS {
        let (running, steps, finished) = (running.clone(), steps.clone(), finished.clone());
        let h = Builder::new()
            .stack_size(16 * 1024)
            .spawn_in(&handle, move || {
                let mut rng = Rng(i as u64 * 2654435761 + 1);
                let enter = |running: &AtomicBool| {
                    assert!(
                        !running.swap(true, Ordering::AcqRel),
                        "thread {i} runs twice at once"
                    );
                };
                enter(&running[i]);
                for _ in 0..STEPS {
                    steps[i].fetch_add(1, Ordering::Relaxed);
                    running[i].store(false, Ordering::Release);
                    match rng.next() % 4 {
                        0 => spindle::yield_now(),
                        1 => spindle::sleep(Duration::from_micros(rng.next() % 200)),
                        2 => spindle::park_timeout(Duration::from_micros(rng.next() % 300)),
                        _ => {
                            let cores = spindle::Handle::current().cores();
                            let to = cores[(rng.next() as usize) % cores.len()].id;
                            // The core may be leaving by now: that is an error, not a loss.
                            let _ = spindle::migrate_to(to);
                        }
                    }
                    enter(&running[i]);
                }
                running[i].store(false, Ordering::Release);
                finished.fetch_add(1, Ordering::Relaxed);
                i
            })
            .unwrap();
        hs.push(h);
    }

    // Foreign unparks into parked threads while the cores churn.
    let unparker = {
        let ts: Vec<_> = hs.iter().map(|h| h.thread().clone()).collect();
        let done = churn_done.clone();
        std::thread::spawn(move || {
            let mut rng = Rng(99);
            while !done.load(Ordering::Relaxed) {
                for _ in 0..64 {
                    ts[(rng.next() as usize) % ts.len()].unpark();
                }
                std::thread::yield_now();
            }
        })
    };

    let mut rng = Rng(7);
    let mut added = 0;
    let mut removed = 0;
    while finished.load(Ordering::Relaxed) < THREADS {
        let cores = handle.cores();
        if cores.len() > 2 && rng.next().is_multiple_of(2) {
            let victim = cores[(rng.next() as usize) % cores.len()].id;
            handle.remove_core(victim).unwrap();
            removed += 1;
        } else if cores.len() < 6 {
            handle.add_core(spindle::DEFAULT_TYPE).unwrap();
            added += 1;
        }
        std::thread::sleep(Duration::from_micros(500 + rng.next() % 2000));
    }
    churn_done.store(true, Ordering::Relaxed);
    unparker.join().unwrap();

    for (i, h) in hs.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), i);
    }
    for (i, s) in steps.iter().enumerate() {
        assert_eq!(s.load(Ordering::Relaxed), STEPS, "thread {i}");
    }
    assert!(added > 0 && removed > 0, "added {added}, removed {removed}");
    w.store(true, Ordering::Relaxed);
}

#[test]
fn a_core_that_cannot_go_is_a_typed_error() {
    let rt = Runtime::builder()
        .core_type(CoreType::new("main").cores(2))
        .core_type(CoreType::new("solo").cores(1))
        .pin(false)
        .build()
        .unwrap();
    let h = rt.handle();
    assert_eq!(h.remove_core(9), Err(CoreError::NoSuchCore { core: 9 }));
    assert!(matches!(
        h.add_core("gpu"),
        Err(CoreError::NoSuchType { .. })
    ));
    // A parked thread of type `solo` keeps its only core in place.
    let parked = Builder::new()
        .core_type("solo")
        .spawn_in(h, || {
            spindle::park();
            spindle::current_core()
        })
        .unwrap();
    while h.live_threads("solo") != Some(1) {
        std::thread::yield_now();
    }
    let e = h.remove_core(2).unwrap_err();
    assert!(
        matches!(
            e,
            CoreError::LastCoreOfType {
                core: 2,
                threads: 1,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("add another core"), "{e}");
    // With a second `solo` core the first can go; the parked thread moves over.
    let second = h.add_core("solo").unwrap();
    h.remove_core(2).unwrap();
    assert!(h.cores().iter().all(|c| c.id != 2));
    parked.thread().unpark();
    assert_eq!(parked.join().unwrap(), Some(second));
    // A thread counts as live until its core reclaimed its stack, just after `join`
    // can return.
    while h.live_threads("solo") != Some(0) {
        std::thread::yield_now();
    }
    // The last core of a type without threads may go; the runtime's last core may not.
    h.remove_core(second).unwrap();
    h.remove_core(0).unwrap();
    assert_eq!(h.remove_core(1), Err(CoreError::LastCore { core: 1 }));
    // A removed core comes back with add_core of its type.
    let back = h.add_core("main").unwrap();
    assert_eq!(back, 0);
    assert_eq!(
        rt.block_on(|| spindle::spawn_on(back, spindle::current_core)
            .join()
            .unwrap()),
        Some(back)
    );
}
