//! Stress of `spindle::sync`: many spindle threads and several OS threads contending on
//! the same objects. A lost wakeup shows up as a hang, so every test runs under a
//! watchdog that aborts the process with a message after 60 s.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use spindle::sync::{Condvar, Mutex, RwLock, Semaphore, WaitGroup, mpmc};

mod common;
use common::with_watchdog;

/// Runs `f` as the main thread of a 4-core runtime (more cores than this machine may
/// have CPUs: contention between cores is real, and so is preemption by the OS).
fn on_four_cores<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    spindle::Runtime::builder()
        .cores(4)
        .build()
        .expect("4-core runtime")
        .block_on(f)
}

const OS_THREADS: usize = 3;
const SPINDLE_THREADS: usize = 64;

/// Runs `spindle_body` on `SPINDLE_THREADS` spindle threads and `os_body` on
/// `OS_THREADS` OS threads at the same time, inside one runtime.
fn mixed(
    spindle_body: impl Fn(usize) + Send + Sync + 'static,
    os_body: impl Fn(usize) + Send + Sync + 'static,
) {
    let spindle_body = Arc::new(spindle_body);
    let os_body = Arc::new(os_body);
    let wg = Arc::new(WaitGroup::new());
    on_four_cores(|| {
        wg.add(OS_THREADS);
        let os: Vec<_> = (0..OS_THREADS)
            .map(|i| {
                let (f, wg) = (os_body.clone(), wg.clone());
                std::thread::spawn(move || {
                    f(i);
                    wg.done();
                })
            })
            .collect();
        let hs: Vec<_> = (0..SPINDLE_THREADS)
            .map(|i| {
                let f = spindle_body.clone();
                spindle::spawn(move || f(i))
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
        // Parks this spindle thread (not the core) until the OS threads are done.
        wg.wait();
        os.into_iter().for_each(|h| h.join().unwrap());
    });
}

#[test]
fn stress_mutex_counter() {
    const SPINDLE_ITERS: u64 = 1_000;
    const OS_ITERS: u64 = 50_000;
    with_watchdog("stress mutex", 60, || {
        let m = Arc::new(Mutex::new(0u64));
        let (a, b) = (m.clone(), m.clone());
        mixed(
            move |i| {
                for k in 0..SPINDLE_ITERS {
                    let mut g = a.lock().unwrap();
                    *g += 1;
                    if (i as u64 + k).is_multiple_of(16) {
                        spindle::yield_now(); // hold the lock across a switch
                    }
                }
            },
            move |_| {
                for _ in 0..OS_ITERS {
                    *b.lock().unwrap() += 1;
                }
            },
        );
        assert_eq!(
            *m.lock().unwrap(),
            SPINDLE_THREADS as u64 * SPINDLE_ITERS + OS_THREADS as u64 * OS_ITERS
        );
    });
}

#[test]
fn stress_rwlock_counter() {
    const SPINDLE_ITERS: u64 = 500;
    const OS_ITERS: u64 = 30_000;
    with_watchdog("stress rwlock", 60, || {
        let l = Arc::new(RwLock::new((0u64, 0u64)));
        let writes = Arc::new(AtomicU64::new(0));
        let (a, b, wa, wb) = (l.clone(), l.clone(), writes.clone(), writes.clone());
        mixed(
            move |i| {
                for k in 0..SPINDLE_ITERS {
                    if (i as u64 + k).is_multiple_of(4) {
                        let mut g = a.write().unwrap();
                        g.0 += 1;
                        spindle::yield_now();
                        g.1 += 1;
                        wa.fetch_add(1, Ordering::Relaxed);
                    } else {
                        let g = a.read().unwrap();
                        spindle::yield_now();
                        assert_eq!(g.0, g.1, "a reader saw a half-done write");
                    }
                }
            },
            move |_| {
                for k in 0..OS_ITERS {
                    if k.is_multiple_of(4) {
                        let mut g = b.write().unwrap();
                        g.0 += 1;
                        g.1 += 1;
                        wb.fetch_add(1, Ordering::Relaxed);
                    } else {
                        let g = b.read().unwrap();
                        assert_eq!(g.0, g.1, "a reader saw a half-done write");
                    }
                }
            },
        );
        let g = l.read().unwrap();
        assert_eq!(g.0, writes.load(Ordering::Relaxed));
        assert_eq!(g.1, g.0);
    });
}

#[test]
fn stress_mpmc_exactly_once() {
    const PER_PRODUCER: u64 = 10_000;
    for cap in [None, Some(0), Some(1), Some(16)] {
        with_watchdog(format!("stress mpmc cap {cap:?}"), 60, || {
            let (tx, rx) = match cap {
                None => mpmc::channel::<u64>(),
                Some(c) => mpmc::sync_channel::<u64>(c),
            };
            let sum = Arc::new(AtomicU64::new(0));
            let count = Arc::new(AtomicU64::new(0));
            let wg = Arc::new(WaitGroup::new());
            let producers = 4u64; // 2 spindle + 2 OS
            on_four_cores(|| {
                wg.add(4);
                let mut os = Vec::new();
                // OS producers 0, 1; OS consumers 2.
                for p in 0..2u64 {
                    let (tx, wg) = (tx.clone(), wg.clone());
                    os.push(std::thread::spawn(move || {
                        for i in 0..PER_PRODUCER {
                            tx.send(p * PER_PRODUCER + i).unwrap();
                        }
                        wg.done();
                    }));
                }
                for _ in 0..2 {
                    let (rx, sum, count, wg) = (rx.clone(), sum.clone(), count.clone(), wg.clone());
                    os.push(std::thread::spawn(move || {
                        for v in rx.iter() {
                            sum.fetch_add(v, Ordering::Relaxed);
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                        wg.done();
                    }));
                }
                let mut hs = Vec::new();
                for p in 2..producers {
                    let tx = tx.clone();
                    hs.push(spindle::spawn(move || {
                        for i in 0..PER_PRODUCER {
                            tx.send(p * PER_PRODUCER + i).unwrap();
                            if i.is_multiple_of(64) {
                                spindle::yield_now();
                            }
                        }
                    }));
                }
                for _ in 0..8 {
                    let (rx, sum, count) = (rx.clone(), sum.clone(), count.clone());
                    hs.push(spindle::spawn(move || {
                        while let Ok(v) = rx.recv() {
                            sum.fetch_add(v, Ordering::Relaxed);
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                    }));
                }
                drop((tx, rx));
                hs.into_iter().for_each(|h| h.join().unwrap());
                wg.wait();
                os.into_iter().for_each(|h| h.join().unwrap());
            });
            let n = producers * PER_PRODUCER;
            assert_eq!(
                count.load(Ordering::Relaxed),
                n,
                "cap {cap:?}: message count"
            );
            assert_eq!(
                sum.load(Ordering::Relaxed),
                n * (n - 1) / 2,
                "cap {cap:?}: message sum"
            );
        });
    }
}

#[test]
fn stress_condvar_ping_pong() {
    const ROUNDS: u64 = 10_000;
    with_watchdog("stress condvar", 60, || {
        // Two spindle threads and two OS threads pass a token around a ring:
        // turn % 4 says whose move it is.
        let st = Arc::new((Mutex::new(0u64), Condvar::new()));
        let play = |who: u64, st: Arc<(Mutex<u64>, Condvar)>| {
            move || {
                let (m, cv) = &*st;
                for _ in 0..ROUNDS {
                    let mut g = cv.wait_while(m.lock().unwrap(), |t| *t % 4 != who).unwrap();
                    *g += 1;
                    drop(g);
                    cv.notify_all();
                }
            }
        };
        let wg = Arc::new(WaitGroup::new());
        on_four_cores(|| {
            wg.add(2);
            let os: Vec<_> = [1u64, 3]
                .into_iter()
                .map(|who| {
                    let (f, wg) = (play(who, st.clone()), wg.clone());
                    std::thread::spawn(move || {
                        f();
                        wg.done();
                    })
                })
                .collect();
            let hs: Vec<_> = [0u64, 2]
                .into_iter()
                .map(|who| spindle::spawn(play(who, st.clone())))
                .collect();
            hs.into_iter().for_each(|h| h.join().unwrap());
            wg.wait();
            os.into_iter().for_each(|h| h.join().unwrap());
        });
        assert_eq!(*st.0.lock().unwrap(), 4 * ROUNDS);
    });
}

#[test]
fn stress_condvar_timeouts_racing_notifies() {
    // Waiters with short timeouts while notifiers fire: every notify_one that finds a
    // waiter wakes it or is taken by a waiter whose time ran out; counts must balance
    // and nobody hangs.
    with_watchdog("stress condvar timeouts", 60, || {
        let st = Arc::new((Mutex::new(0u64), Condvar::new()));
        let consumed = Arc::new(AtomicUsize::new(0));
        const ITEMS: u64 = 10_000;
        let (s1, s2, c2) = (st.clone(), st.clone(), consumed.clone());
        let take = move |st: &(Mutex<u64>, Condvar), c: &AtomicUsize| loop {
            let (m, cv) = st;
            let mut g = m.lock().unwrap();
            loop {
                if *g > 0 {
                    *g -= 1;
                    c.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                if c.load(Ordering::Relaxed) as u64 >= ITEMS {
                    return;
                }
                g = cv.wait_timeout(g, Duration::from_micros(200)).unwrap().0;
            }
        };
        let produced = Arc::new(AtomicBool::new(false));
        let p2 = produced.clone();
        let wg = Arc::new(WaitGroup::new());
        on_four_cores(|| {
            wg.add(1);
            let producer = {
                let wg = wg.clone();
                std::thread::spawn(move || {
                    for _ in 0..ITEMS {
                        *s1.0.lock().unwrap() += 1;
                        s1.1.notify_one();
                    }
                    p2.store(true, Ordering::SeqCst);
                    wg.done();
                })
            };
            let consumers: Vec<_> = (0..16)
                .map(|_| {
                    let (s2, c2) = (s2.clone(), c2.clone());
                    spindle::spawn(move || take(&s2, &c2))
                })
                .collect();
            consumers.into_iter().for_each(|h| h.join().unwrap());
            wg.wait();
            producer.join().unwrap();
        });
        assert!(produced.load(Ordering::SeqCst));
        assert_eq!(consumed.load(Ordering::Relaxed) as u64, ITEMS);
        assert_eq!(*st.0.lock().unwrap(), 0);
    });
}

#[test]
fn stress_semaphore_bound() {
    const PERMITS: usize = 4;
    with_watchdog("stress semaphore", 60, || {
        let sem = Arc::new(Semaphore::new(PERMITS));
        let inside = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let body = {
            let (sem, inside, max) = (sem.clone(), inside.clone(), max.clone());
            move |iters: usize| {
                for k in 0..iters {
                    let p = if k.is_multiple_of(5) {
                        match sem.acquire_timeout(Duration::from_micros(50)) {
                            Some(p) => p,
                            None => continue,
                        }
                    } else {
                        sem.acquire()
                    };
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(now, Ordering::SeqCst);
                    spindle::yield_now();
                    inside.fetch_sub(1, Ordering::SeqCst);
                    drop(p);
                }
            }
        };
        let b2 = body.clone();
        mixed(move |_| body(100), move |_| b2(3_000));
        assert!(max.load(Ordering::SeqCst) <= PERMITS);
        assert_eq!(
            sem.available_permits(),
            PERMITS,
            "a permit was lost or invented"
        );
    });
}
