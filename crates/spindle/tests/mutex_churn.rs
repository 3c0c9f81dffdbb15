//! Mutex contention while cores join and leave: a thread that blocks on a lock is
//! still running on its core until its context is saved, so a waker that wins its wake
//! must never resume it elsewhere before that (it would run on two cores at once).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use spindle::Runtime;

mod common;
use common::{Churner, watchdog};

/// 2,000 threads take one `spindle::sync::Mutex` 50 times each while an OS thread
/// outside the runtime adds and removes cores every 100–500 µs. Every increment must
/// land, no thread may be seen on two cores, and the run ends (the watchdog aborts a
/// hang). Bounded: fresh runtimes repeat the rounds for `SECS` seconds.
#[test]
fn mutex_contention_survives_core_churn() {
    const THREADS: u64 = 2_000;
    const LOCKS: u64 = 50;
    const SECS: u64 = 4;
    let w = watchdog("mutex churn", 120);
    let deadline = Instant::now() + Duration::from_secs(SECS);
    let mut round = 0;
    let mut churns = 0;
    while Instant::now() < deadline {
        round += 1;
        let rt = Runtime::builder().cores(4).build().unwrap();
        let handle = rt.handle().clone();
        let counter = Arc::new(spindle::sync::Mutex::new(0u64));
        let on_cpu: Arc<Vec<AtomicBool>> = Arc::new(
            (0..THREADS)
                .map(|_| AtomicBool::new(false))
                .collect::<Vec<_>>(),
        );
        let churner = Churner::start(handle, round * 7919 + 3, (100, 400));
        let total = rt.block_on({
            let (counter, on_cpu) = (counter.clone(), on_cpu.clone());
            move || {
                let hs: Vec<_> = (0..THREADS)
                    .map(|i| {
                        let (counter, on_cpu) = (counter.clone(), on_cpu.clone());
                        spindle::spawn(move || {
                            for _ in 0..LOCKS {
                                let mut g = counter.lock().unwrap();
                                assert!(
                                    !on_cpu[i as usize].swap(true, Ordering::AcqRel),
                                    "thread {i} runs on two cores at once"
                                );
                                *g += 1;
                                on_cpu[i as usize].store(false, Ordering::Release);
                            }
                        })
                    })
                    .collect();
                for h in hs {
                    h.join().unwrap();
                }
                *counter.lock().unwrap()
            }
        });
        churns += churner.stop();
        assert_eq!(total, THREADS * LOCKS, "round {round}: increments lost");
    }
    assert!(churns > 0, "no core was added or removed");
    w.store(true, Ordering::Relaxed);
}
