//! Stress of the cross-thread paths: foreign OS threads unpark and join spindle
//! threads while the core runs, parks, sleeps and idles. A lost wakeup shows up as a
//! hang, so every test runs under a watchdog that fails the process after a deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

mod common;
use common::with_watchdog;

#[test]
fn foreign_unpark_storm_loses_no_wakeup() {
    const THREADS: usize = 64;
    const ROUNDS: usize = 2000;
    with_watchdog("unpark storm", 60, || {
        spindle::run(|| {
            let progress = Arc::new(AtomicUsize::new(0));
            let hs: Vec<_> = (0..THREADS)
                .map(|_| {
                    let p = progress.clone();
                    spindle::spawn(move || {
                        for _ in 0..ROUNDS {
                            spindle::park();
                            p.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            let targets: Vec<spindle::Thread> = hs.iter().map(|h| h.thread().clone()).collect();
            let stop = Arc::new(AtomicBool::new(false));
            // Two foreign OS threads keep unparking everybody until all are done.
            let storm: Vec<_> = (0..2)
                .map(|k| {
                    let (targets, stop) = (targets.clone(), stop.clone());
                    std::thread::spawn(move || {
                        while !stop.load(Ordering::Relaxed) {
                            for t in targets.iter().skip(k).step_by(2) {
                                t.unpark();
                            }
                            std::thread::yield_now();
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            stop.store(true, Ordering::Relaxed);
            for s in storm {
                s.join().unwrap();
            }
            assert_eq!(progress.load(Ordering::Relaxed), THREADS * ROUNDS);
        });
    });
}

#[test]
fn foreign_joiners_and_detaches_race_with_exits() {
    with_watchdog("foreign joins", 60, || {
        spindle::run(|| {
            for round in 0..20u64 {
                let (tx, rx) = std::sync::mpsc::channel::<spindle::JoinHandle<u64>>();
                let joiner = std::thread::spawn(move || {
                    let mut sum = 0;
                    for h in rx {
                        sum += h.join().unwrap();
                    }
                    sum
                });
                let mut expected = 0;
                for i in 0..200u64 {
                    let h = spindle::spawn(move || {
                        if i % 3 == 0 {
                            spindle::yield_now();
                        }
                        if i % 7 == 0 {
                            spindle::sleep(Duration::from_micros(50));
                        }
                        round * 1000 + i
                    });
                    if i % 5 == 0 {
                        drop(h); // detach, racing its exit
                    } else {
                        expected += round * 1000 + i;
                        tx.send(h).unwrap();
                    }
                    if i % 11 == 0 {
                        spindle::yield_now();
                    }
                }
                drop(tx);
                // Keep the core busy and idle in turns while the OS thread joins.
                while !joiner.is_finished() {
                    spindle::sleep(Duration::from_micros(200));
                }
                assert_eq!(joiner.join().unwrap(), expected);
            }
        });
    });
}

#[test]
fn spindle_threads_of_two_runtimes_join_and_unpark_each_other() {
    with_watchdog("two runtimes", 60, || {
        let (tx, rx) = std::sync::mpsc::channel::<(spindle::JoinHandle<u32>, spindle::Thread)>();
        let joined = Arc::new(AtomicBool::new(false));
        let j = joined.clone();
        let other = std::thread::spawn(move || {
            spindle::run(move || {
                let (h, waiting) = rx.recv().unwrap();
                let v = h.join().unwrap(); // a thread of the other runtime
                j.store(true, Ordering::SeqCst);
                waiting.unpark(); // wake a thread of the other runtime
                v
            })
        });
        spindle::run(move || {
            let h = spindle::spawn(|| {
                spindle::sleep(Duration::from_millis(5));
                41
            });
            tx.send((h, spindle::current())).unwrap();
            // park may return spuriously: wait for the flag.
            while !joined.load(Ordering::SeqCst) {
                spindle::park();
            }
        });
        assert_eq!(other.join().unwrap(), 41);
    });
}
