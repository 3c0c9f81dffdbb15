//! Behaviour of `spindle::sync`: each type from spindle threads, from plain OS threads,
//! and mixed; timeouts (never early), disconnection, poisoning.
//!
//! A spindle thread must never wait for an OS thread with `std::thread::JoinHandle::join`
//! while that OS thread needs the core's threads to progress (it would block the core):
//! the tests wait for OS threads with spindle primitives first, and join them after.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use spindle::sync::{
    Barrier, Condvar, Mutex, RwLock, Semaphore, TryLockError, WaitGroup, mpmc, mpsc,
};

mod common;
use common::with_watchdog;

const SHORT: Duration = Duration::from_millis(30);

// ---------------------------------------------------------------- Mutex

#[test]
fn mutex_counts_from_spindle_threads() {
    with_watchdog("mutex spindle", 60, || {
        let n = spindle::run(|| {
            let m = Arc::new(Mutex::new(0u64));
            let hs: Vec<_> = (0..50)
                .map(|_| {
                    let m = m.clone();
                    spindle::spawn(move || {
                        for _ in 0..100 {
                            let mut g = m.lock().unwrap();
                            let v = *g;
                            // Give others a chance to run while we hold the lock.
                            spindle::yield_now();
                            *g = v + 1;
                        }
                    })
                })
                .collect();
            hs.into_iter().for_each(|h| h.join().unwrap());
            *m.lock().unwrap()
        });
        assert_eq!(n, 5000);
    });
}

#[test]
fn mutex_counts_from_os_threads() {
    with_watchdog("mutex os", 60, || {
        let m = Arc::new(Mutex::new(0u64));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        *m.lock().unwrap() += 1;
                    }
                })
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(*m.lock().unwrap(), 8000);
    });
}

#[test]
fn mutex_held_by_spindle_thread_blocks_os_thread_until_released() {
    with_watchdog("mutex mixed", 60, || {
        spindle::run(|| {
            let m = Arc::new(Mutex::new(Vec::new()));
            let g = m.lock().unwrap();
            let (tx, rx) = mpsc::channel();
            let os = {
                let m = m.clone();
                std::thread::spawn(move || {
                    tx.send(()).unwrap();
                    m.lock().unwrap().push("os");
                })
            };
            rx.recv().unwrap(); // the OS thread is about to lock
            // Let it reach the wait; the core keeps running spindle threads meanwhile.
            let other = spindle::spawn(|| 7);
            assert_eq!(other.join().unwrap(), 7);
            spindle::sleep(SHORT);
            assert!(m.try_lock().is_err(), "we still hold it");
            drop(g);
            // Now a spindle thread waits for the OS thread's push without blocking the
            // core: lock until the entry is there.
            loop {
                if m.lock().unwrap().len() == 1 {
                    break;
                }
                spindle::sleep(Duration::from_millis(1));
            }
            os.join().unwrap();
            assert_eq!(*m.lock().unwrap(), ["os"]);
        });
    });
}

#[test]
fn mutex_spindle_and_os_threads_contend() {
    with_watchdog("mutex contend", 60, || {
        let m = Arc::new(Mutex::new(0u64));
        let wg = Arc::new(WaitGroup::new());
        let total = spindle::run(|| {
            wg.add(2);
            let os: Vec<_> = (0..2)
                .map(|_| {
                    let (m, wg) = (m.clone(), wg.clone());
                    std::thread::spawn(move || {
                        for _ in 0..1000 {
                            *m.lock().unwrap() += 1;
                        }
                        wg.done();
                    })
                })
                .collect();
            let hs: Vec<_> = (0..20)
                .map(|_| {
                    let m = m.clone();
                    spindle::spawn(move || {
                        for i in 0..100 {
                            let mut g = m.lock().unwrap();
                            *g += 1;
                            if i % 10 == 0 {
                                spindle::yield_now();
                            }
                        }
                    })
                })
                .collect();
            hs.into_iter().for_each(|h| h.join().unwrap());
            wg.wait(); // parks this spindle thread, not the core
            os.into_iter().for_each(|h| h.join().unwrap());
            *m.lock().unwrap()
        });
        assert_eq!(total, 2000 + 2000);
    });
}

#[spindle::test]
fn mutex_poisoned_by_panicking_spindle_thread() {
    let m = Arc::new(Mutex::new(5));
    let m2 = m.clone();
    let r = spindle::spawn(move || {
        let _g = m2.lock().unwrap();
        panic!("boom while holding the lock");
    })
    .join();
    assert!(r.is_err());
    assert!(m.is_poisoned());
    let e = m.lock().unwrap_err();
    assert_eq!(**e.get_ref(), 5);
    drop(e);
    assert!(matches!(m.try_lock(), Err(TryLockError::Poisoned(_))));
    let m = Arc::try_unwrap(m).unwrap();
    assert_eq!(m.into_inner().unwrap_err().into_inner(), 5);
}

#[test]
fn mutex_get_mut_and_into_inner() {
    let mut m = Mutex::new(String::from("a"));
    m.get_mut().unwrap().push('b');
    assert_eq!(m.try_lock().unwrap().as_str(), "ab");
    assert_eq!(m.into_inner().unwrap(), "ab");
}

#[test]
fn mutex_wait_keeps_the_park_token() {
    with_watchdog("park token", 30, || {
        spindle::run(|| {
            let m = Arc::new(Mutex::new(()));
            let g = m.lock().unwrap();
            let m2 = m.clone();
            let h = spindle::spawn(move || {
                spindle::current().unpark(); // our own token
                let _g = m2.lock().unwrap(); // blocks; must not eat the token
                spindle::park(); // returns at once: the token is still there
            });
            spindle::sleep(SHORT);
            drop(g);
            h.join().unwrap();
        });
    });
}

// ---------------------------------------------------------------- Condvar

#[test]
fn condvar_producer_consumer() {
    with_watchdog("condvar pc", 60, || {
        let sum = spindle::run(|| {
            let q = Arc::new((Mutex::new((Vec::new(), false)), Condvar::new()));
            let consumer = {
                let q = q.clone();
                spindle::spawn(move || {
                    let (m, cv) = &*q;
                    let mut sum = 0u64;
                    loop {
                        let mut g = cv
                            .wait_while(m.lock().unwrap(), |s| s.0.is_empty() && !s.1)
                            .unwrap();
                        if g.0.is_empty() && g.1 {
                            return sum;
                        }
                        sum += g.0.drain(..).sum::<u64>();
                    }
                })
            };
            let (m, cv) = &*q;
            for i in 1..=1000u64 {
                m.lock().unwrap().0.push(i);
                cv.notify_one();
                if i % 7 == 0 {
                    spindle::yield_now();
                }
            }
            m.lock().unwrap().1 = true;
            cv.notify_all();
            consumer.join().unwrap()
        });
        assert_eq!(sum, 500_500);
    });
}

#[test]
fn condvar_os_thread_notifies_spindle_waiter() {
    with_watchdog("condvar mixed", 60, || {
        spindle::run(|| {
            let p = Arc::new((Mutex::new(0u32), Condvar::new()));
            let os = {
                let p = p.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        let (m, cv) = &*p;
                        let mut g = cv.wait_while(m.lock().unwrap(), |v| *v % 2 == 0).unwrap();
                        *g += 1;
                        cv.notify_all();
                    }
                })
            };
            let (m, cv) = &*p;
            for _ in 0..100 {
                let mut g = cv.wait_while(m.lock().unwrap(), |v| *v % 2 == 1).unwrap();
                *g += 1;
                cv.notify_all();
            }
            let g = cv.wait_while(m.lock().unwrap(), |v| *v < 200).unwrap();
            assert_eq!(*g, 200);
            drop(g);
            os.join().unwrap();
        });
    });
}

#[test]
fn condvar_wait_timeout_is_not_early() {
    let check = || {
        let m = Mutex::new(());
        let cv = Condvar::new();
        let t = Instant::now();
        let (g, r) = cv.wait_timeout(m.lock().unwrap(), SHORT).unwrap();
        assert!(r.timed_out());
        assert!(t.elapsed() >= SHORT);
        drop(g);
        let t = Instant::now();
        let (_g, r) = cv
            .wait_timeout_while(m.lock().unwrap(), SHORT, |_| true)
            .unwrap();
        assert!(r.timed_out());
        assert!(t.elapsed() >= SHORT);
    };
    check();
    spindle::run(check);
}

#[spindle::test]
fn condvar_wait_timeout_while_sees_condition() {
    let p = Arc::new((Mutex::new(false), Condvar::new()));
    let p2 = p.clone();
    let h = spindle::spawn(move || {
        *p2.0.lock().unwrap() = true;
        p2.1.notify_one();
    });
    let (g, r) =
        p.1.wait_timeout_while(p.0.lock().unwrap(), Duration::from_secs(600), |v| !*v)
            .unwrap();
    assert!(*g && !r.timed_out());
    drop(g);
    h.join().unwrap();
}

// ---------------------------------------------------------------- RwLock

#[test]
fn rwlock_readers_share_writer_excludes() {
    with_watchdog("rwlock", 60, || {
        spindle::run(|| {
            let l = Arc::new(RwLock::new(0u64));
            let readers_in = Arc::new(AtomicUsize::new(0));
            let max_readers = Arc::new(AtomicUsize::new(0));
            let hs: Vec<_> = (0..20)
                .map(|i| {
                    let (l, rin, maxr) = (l.clone(), readers_in.clone(), max_readers.clone());
                    spindle::spawn(move || {
                        for _ in 0..50 {
                            if i % 5 == 0 {
                                let mut w = l.write().unwrap();
                                assert_eq!(rin.load(Ordering::SeqCst), 0, "reader inside a write");
                                *w += 1;
                                spindle::yield_now();
                            } else {
                                let r = l.read().unwrap();
                                let now = rin.fetch_add(1, Ordering::SeqCst) + 1;
                                maxr.fetch_max(now, Ordering::SeqCst);
                                let _ = *r;
                                spindle::yield_now();
                                rin.fetch_sub(1, Ordering::SeqCst);
                            }
                        }
                    })
                })
                .collect();
            hs.into_iter().for_each(|h| h.join().unwrap());
            assert_eq!(*l.read().unwrap(), 4 * 50);
            assert!(
                max_readers.load(Ordering::SeqCst) > 1,
                "readers never shared the lock"
            );
        });
    });
}

#[test]
fn rwlock_waiting_writer_is_not_starved_by_readers() {
    with_watchdog("rwlock writer pref", 60, || {
        spindle::run(|| {
            let l = Arc::new(RwLock::new(0));
            let stop = Arc::new(AtomicBool::new(false));
            // Readers that overlap each other forever until the writer got in.
            let readers: Vec<_> = (0..4)
                .map(|_| {
                    let (l, stop) = (l.clone(), stop.clone());
                    spindle::spawn(move || {
                        while !stop.load(Ordering::SeqCst) {
                            let _r = l.read().unwrap();
                            spindle::yield_now();
                        }
                    })
                })
                .collect();
            spindle::yield_now();
            *l.write().unwrap() = 1; // must get in despite the overlapping readers
            stop.store(true, Ordering::SeqCst);
            readers.into_iter().for_each(|h| h.join().unwrap());
            assert_eq!(*l.read().unwrap(), 1);
        });
    });
}

#[test]
fn rwlock_os_and_spindle_threads() {
    with_watchdog("rwlock mixed", 60, || {
        let l = Arc::new(RwLock::new(0u64));
        let wg = Arc::new(WaitGroup::new());
        spindle::run(|| {
            wg.add(2);
            let os: Vec<_> = (0..2)
                .map(|_| {
                    let (l, wg) = (l.clone(), wg.clone());
                    std::thread::spawn(move || {
                        for i in 0..1000 {
                            if i % 3 == 0 {
                                *l.write().unwrap() += 1;
                            } else {
                                let _ = *l.read().unwrap();
                            }
                        }
                        wg.done();
                    })
                })
                .collect();
            let hs: Vec<_> = (0..10)
                .map(|_| {
                    let l = l.clone();
                    spindle::spawn(move || {
                        for _ in 0..100 {
                            *l.write().unwrap() += 1;
                            let _r = l.read().unwrap();
                            spindle::yield_now();
                        }
                    })
                })
                .collect();
            hs.into_iter().for_each(|h| h.join().unwrap());
            wg.wait();
            os.into_iter().for_each(|h| h.join().unwrap());
        });
        assert_eq!(*l.read().unwrap(), 2 * 334 + 1000);
    });
}

#[test]
fn rwlock_poison_and_try() {
    let l = Arc::new(RwLock::new(1));
    let w = l.write().unwrap();
    assert!(matches!(l.try_read(), Err(TryLockError::WouldBlock)));
    assert!(matches!(l.try_write(), Err(TryLockError::WouldBlock)));
    drop(w);
    let l2 = l.clone();
    assert!(
        std::thread::spawn(move || {
            let _w = l2.write().unwrap();
            panic!("poison");
        })
        .join()
        .is_err()
    );
    assert!(l.is_poisoned());
    assert!(l.read().is_err());
    assert_eq!(*l.read().unwrap_err().into_inner(), 1);
}

// ---------------------------------------------------------------- channels

#[test]
fn mpsc_unbounded_spindle_threads() {
    with_watchdog("mpsc", 60, || {
        spindle::run(|| {
            let (tx, rx) = mpsc::channel();
            for p in 0..10u64 {
                let tx = tx.clone();
                spindle::spawn(move || {
                    for i in 0..100 {
                        tx.send(p * 1000 + i).unwrap();
                    }
                });
            }
            drop(tx);
            let got: Vec<u64> = rx.iter().collect();
            assert_eq!(got.len(), 1000);
            // Per-sender order is preserved.
            for p in 0..10 {
                let mine: Vec<_> = got.iter().filter(|v| *v / 1000 == p).collect();
                assert!(mine.windows(2).all(|w| w[0] < w[1]));
            }
            assert_eq!(rx.try_recv(), Err(mpsc::TryRecvError::Disconnected));
            assert_eq!(rx.recv(), Err(mpsc::RecvError));
        });
    });
}

#[test]
fn mpsc_between_os_threads() {
    with_watchdog("mpsc os", 60, || {
        let (tx, rx) = mpsc::sync_channel(2);
        let h = std::thread::spawn(move || {
            for i in 0..1000 {
                tx.send(i).unwrap();
            }
        });
        assert_eq!(rx.iter().sum::<i32>(), 999 * 1000 / 2);
        h.join().unwrap();
    });
}

#[test]
fn mpsc_os_producer_spindle_consumer_and_back() {
    with_watchdog("mpsc mixed", 60, || {
        spindle::run(|| {
            let (to_os, os_rx) = mpsc::sync_channel::<u32>(1);
            let (to_spindle, rx) = mpsc::channel::<u32>();
            let os = std::thread::spawn(move || {
                for v in os_rx.iter() {
                    to_spindle.send(v * 2).unwrap();
                }
            });
            let mut sum = 0;
            for i in 0..500 {
                to_os.send(i).unwrap();
                sum += rx.recv().unwrap();
            }
            drop(to_os);
            assert_eq!(rx.recv(), Err(mpsc::RecvError), "OS side hung up");
            os.join().unwrap();
            assert_eq!(sum, 499 * 500);
        });
    });
}

#[test]
fn recv_timeout_times_out_not_early() {
    let check = || {
        let (tx, rx) = mpsc::channel::<u8>();
        let t = Instant::now();
        assert_eq!(rx.recv_timeout(SHORT), Err(mpsc::RecvTimeoutError::Timeout));
        assert!(t.elapsed() >= SHORT);
        tx.send(1).unwrap();
        assert_eq!(rx.recv_timeout(SHORT), Ok(1));
        drop(tx);
        assert_eq!(
            rx.recv_timeout(SHORT),
            Err(mpsc::RecvTimeoutError::Disconnected)
        );
        let (tx, rx) = mpmc::channel::<u8>();
        let t = Instant::now();
        assert_eq!(rx.recv_timeout(SHORT), Err(mpmc::RecvTimeoutError::Timeout));
        assert!(t.elapsed() >= SHORT);
        drop(tx);
    };
    check();
    spindle::run(check);
}

#[test]
fn recv_timeout_gets_a_late_message() {
    with_watchdog("late message", 60, || {
        spindle::run(|| {
            let (tx, rx) = mpsc::channel();
            let h = spindle::spawn(move || {
                spindle::sleep(SHORT);
                tx.send(9).unwrap();
            });
            assert_eq!(rx.recv_timeout(Duration::from_secs(600)), Ok(9));
            h.join().unwrap();
        });
    });
}

#[test]
fn bounded_channel_full_try_send_and_send_timeout() {
    let check = || {
        let (tx, rx) = mpsc::sync_channel(2);
        tx.try_send(1).unwrap();
        tx.send(2).unwrap();
        assert_eq!(tx.try_send(3), Err(mpsc::TrySendError::Full(3)));
        let t = Instant::now();
        assert_eq!(
            tx.send_timeout(4, SHORT),
            Err(mpsc::SendTimeoutError::Timeout(4))
        );
        assert!(t.elapsed() >= SHORT);
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1, 2]);
        drop(rx);
        assert_eq!(tx.send(5), Err(mpsc::SendError(5)));
        assert_eq!(tx.try_send(6), Err(mpsc::TrySendError::Disconnected(6)));
        assert_eq!(
            tx.send_timeout(7, SHORT),
            Err(mpsc::SendTimeoutError::Disconnected(7))
        );
    };
    check();
    spindle::run(check);
}

#[test]
fn blocked_sender_wakes_when_receiver_drops() {
    with_watchdog("sender disconnect", 60, || {
        spindle::run(|| {
            let (tx, rx) = mpsc::sync_channel(1);
            tx.send(0).unwrap();
            let h = spindle::spawn(move || tx.send(1));
            spindle::sleep(SHORT); // the sender blocks on the full buffer
            drop(rx);
            assert_eq!(h.join().unwrap(), Err(mpsc::SendError(1)));
        });
    });
}

#[test]
fn blocked_receiver_wakes_when_senders_drop() {
    with_watchdog("receiver disconnect", 60, || {
        spindle::run(|| {
            let (tx, rx) = mpmc::channel::<u8>();
            let rx2 = rx.clone();
            let a = spindle::spawn(move || rx.recv());
            let b = spindle::spawn(move || rx2.recv());
            spindle::sleep(SHORT);
            drop(tx);
            assert_eq!(a.join().unwrap(), Err(mpmc::RecvError));
            assert_eq!(b.join().unwrap(), Err(mpmc::RecvError));
        });
    });
}

#[test]
fn rendezvous_send_waits_for_the_receiver() {
    with_watchdog("rendezvous", 60, || {
        spindle::run(|| {
            let (tx, rx) = mpsc::sync_channel(0);
            assert_eq!(tx.try_send(1), Err(mpsc::TrySendError::Full(1)));
            let t = Instant::now();
            assert_eq!(
                tx.send_timeout(2, SHORT),
                Err(mpsc::SendTimeoutError::Timeout(2))
            );
            assert!(t.elapsed() >= SHORT);
            assert!(rx.try_recv().is_err(), "a timed-out message is taken back");
            let received = Arc::new(AtomicBool::new(false));
            let r2 = received.clone();
            let h = spindle::spawn(move || {
                spindle::sleep(SHORT);
                r2.store(true, Ordering::SeqCst);
                rx.recv().unwrap()
            });
            tx.send(3).unwrap();
            assert!(
                received.load(Ordering::SeqCst),
                "send returned before the receive"
            );
            assert_eq!(h.join().unwrap(), 3);
            // The receiver is gone: a send fails and gets its message back.
            assert_eq!(tx.send(4), Err(mpsc::SendError(4)));
        });
    });
}

#[test]
fn rendezvous_with_waiting_receiver_and_os_thread() {
    with_watchdog("rendezvous mixed", 60, || {
        spindle::run(|| {
            let (tx, rx) = mpmc::sync_channel::<u32>(0);
            let os = std::thread::spawn(move || (0..200).map(|_| rx.recv().unwrap()).sum::<u32>());
            for i in 0..200 {
                tx.send(i).unwrap();
            }
            // Every send returned, so every message was taken.
            assert!(tx.try_send(0).is_err(), "nobody receives any more");
            drop(tx);
            let os_sum = {
                // The OS thread is done receiving; joining cannot stall the core.
                os.join().unwrap()
            };
            assert_eq!(os_sum, 199 * 200 / 2);
        });
    });
}

#[test]
fn blocked_rendezvous_sender_gets_message_back_on_disconnect() {
    with_watchdog("rendezvous disconnect", 60, || {
        spindle::run(|| {
            let (tx, rx) = mpsc::sync_channel::<String>(0);
            let h = spindle::spawn(move || tx.send("hello".into()));
            spindle::sleep(SHORT);
            drop(rx);
            assert_eq!(h.join().unwrap(), Err(mpsc::SendError("hello".into())));
        });
    });
}

#[test]
fn mpmc_each_message_once() {
    with_watchdog("mpmc", 60, || {
        spindle::run(|| {
            let (tx, rx) = mpmc::sync_channel(3);
            let consumers: Vec<_> = (0..4)
                .map(|_| {
                    let rx = rx.clone();
                    spindle::spawn(move || {
                        let mut got = Vec::new();
                        for v in &rx {
                            got.push(v);
                        }
                        got
                    })
                })
                .collect();
            drop(rx);
            let producers: Vec<_> = (0..3u64)
                .map(|p| {
                    let tx = tx.clone();
                    spindle::spawn(move || {
                        for i in 0..300 {
                            tx.send(p * 300 + i).unwrap();
                        }
                    })
                })
                .collect();
            drop(tx);
            producers.into_iter().for_each(|h| h.join().unwrap());
            let mut all: Vec<u64> = consumers
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect();
            all.sort();
            assert_eq!(all, (0..900).collect::<Vec<_>>());
        });
    });
}

#[test]
fn channel_errors_say_what_happened() {
    assert!(mpsc::RecvError.to_string().contains("senders are all gone"));
    assert!(
        mpsc::RecvTimeoutError::Timeout
            .to_string()
            .contains("timed out")
    );
    assert!(mpsc::TryRecvError::Empty.to_string().contains("empty"));
    assert!(
        mpsc::SendError(1)
            .to_string()
            .contains("receivers are all gone")
    );
    assert!(mpsc::TrySendError::Full(1).to_string().contains("full"));
    assert!(
        mpsc::SendTimeoutError::Timeout(1)
            .to_string()
            .contains("timed out")
    );
    assert_eq!(mpsc::TrySendError::Full(5).into_inner(), 5);
    assert_eq!(format!("{:?}", mpsc::SendError(1)), "SendError { .. }");
}

// ---------------------------------------------------------------- Semaphore

fn bounded_concurrency(sem: &Semaphore, inside: &AtomicUsize, max: &AtomicUsize) {
    let _p = sem.acquire();
    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
    max.fetch_max(now, Ordering::SeqCst);
    spindle::yield_now();
    inside.fetch_sub(1, Ordering::SeqCst);
}

#[test]
fn semaphore_bounds_concurrency() {
    with_watchdog("semaphore", 60, || {
        const N: usize = 3;
        let sem = Arc::new(Semaphore::new(N));
        let inside = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let wg = Arc::new(WaitGroup::new());
        spindle::run(|| {
            wg.add(2);
            let os: Vec<_> = (0..2)
                .map(|_| {
                    let (sem, inside, max, wg) =
                        (sem.clone(), inside.clone(), max.clone(), wg.clone());
                    std::thread::spawn(move || {
                        for _ in 0..200 {
                            bounded_concurrency(&sem, &inside, &max);
                        }
                        wg.done();
                    })
                })
                .collect();
            let hs: Vec<_> = (0..20)
                .map(|_| {
                    let (sem, inside, max) = (sem.clone(), inside.clone(), max.clone());
                    spindle::spawn(move || {
                        for _ in 0..20 {
                            bounded_concurrency(&sem, &inside, &max);
                        }
                    })
                })
                .collect();
            hs.into_iter().for_each(|h| h.join().unwrap());
            wg.wait();
            os.into_iter().for_each(|h| h.join().unwrap());
        });
        let m = max.load(Ordering::SeqCst);
        assert!(
            (1..=N).contains(&m),
            "max concurrently held permits {m} > {N}"
        );
        assert_eq!(sem.available_permits(), N);
    });
}

#[test]
fn semaphore_timeout_forget_release() {
    let check = || {
        let sem = Semaphore::new(1);
        let p = sem.acquire();
        assert!(sem.try_acquire().is_none());
        let t = Instant::now();
        assert!(sem.acquire_timeout(SHORT).is_none());
        assert!(t.elapsed() >= SHORT);
        p.forget();
        assert_eq!(sem.available_permits(), 0);
        sem.release(2);
        assert_eq!(sem.available_permits(), 2);
        let a = sem.acquire_timeout(SHORT);
        assert!(a.is_some());
    };
    check();
    spindle::run(check);
}

#[test]
fn semaphore_release_hands_permit_to_waiter() {
    with_watchdog("semaphore handoff", 60, || {
        spindle::run(|| {
            let sem = Arc::new(Semaphore::new(0));
            let s2 = sem.clone();
            let h = spindle::spawn(move || {
                s2.acquire_timeout(Duration::from_secs(600))
                    .map(|p| p.forget())
                    .is_some()
            });
            spindle::sleep(SHORT);
            sem.release(1);
            assert!(h.join().unwrap());
            assert_eq!(sem.available_permits(), 0);
        });
    });
}

// ---------------------------------------------------------------- Barrier, WaitGroup

#[test]
fn barrier_reused_for_rounds_mixed() {
    with_watchdog("barrier", 60, || {
        const SPINDLE: usize = 5;
        const OS: usize = 2;
        const ROUNDS: usize = 20;
        let b = Arc::new(Barrier::new(SPINDLE + OS));
        let arrived = Arc::new(AtomicUsize::new(0));
        let leaders = Arc::new(AtomicUsize::new(0));
        let wg = Arc::new(WaitGroup::new());
        let body = {
            let (b, arrived, leaders) = (b.clone(), arrived.clone(), leaders.clone());
            move || {
                for round in 0..ROUNDS {
                    arrived.fetch_add(1, Ordering::SeqCst);
                    if b.wait().is_leader() {
                        leaders.fetch_add(1, Ordering::SeqCst);
                    }
                    // Nobody passes round `r` before all arrived at it.
                    assert!(arrived.load(Ordering::SeqCst) >= (round + 1) * (SPINDLE + OS));
                }
            }
        };
        spindle::run(|| {
            wg.add(OS);
            let os: Vec<_> = (0..OS)
                .map(|_| {
                    let (body, wg) = (body.clone(), wg.clone());
                    std::thread::spawn(move || {
                        body();
                        wg.done();
                    })
                })
                .collect();
            let hs: Vec<_> = (0..SPINDLE).map(|_| spindle::spawn(body.clone())).collect();
            hs.into_iter().for_each(|h| h.join().unwrap());
            wg.wait();
            os.into_iter().for_each(|h| h.join().unwrap());
        });
        assert_eq!(leaders.load(Ordering::SeqCst), ROUNDS);
        assert_eq!(arrived.load(Ordering::SeqCst), ROUNDS * (SPINDLE + OS));
    });
}

#[test]
fn waitgroup_waits_for_all() {
    with_watchdog("waitgroup", 60, || {
        spindle::run(|| {
            let wg = Arc::new(WaitGroup::new());
            let done = Arc::new(AtomicUsize::new(0));
            wg.add(10);
            for _ in 0..10 {
                let (wg, done) = (wg.clone(), done.clone());
                spindle::spawn(move || {
                    spindle::sleep(Duration::from_millis(1));
                    done.fetch_add(1, Ordering::SeqCst);
                    wg.done();
                });
            }
            // A second waiter, on an OS thread.
            let os = {
                let (wg, done) = (wg.clone(), done.clone());
                std::thread::spawn(move || {
                    wg.wait();
                    done.load(Ordering::SeqCst)
                })
            };
            wg.wait();
            assert_eq!(done.load(Ordering::SeqCst), 10);
            assert_eq!(wg.count(), 0);
            assert_eq!(os.join().unwrap(), 10);
            wg.wait(); // zero: returns at once
        });
    });
}

#[test]
#[should_panic(expected = "more times than add")]
fn waitgroup_done_below_zero_panics() {
    WaitGroup::new().done();
}
