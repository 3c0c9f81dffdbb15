//! Cancellation (`JoinHandle::cancel`, `Thread::cancel`): a thread unwinds from each
//! kind of blocking point with `Cancelled`, its destructors run, `join` reports it,
//! no panic is printed, and the primitives it left stay usable.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{child_case, run_child, with_watchdog};
use spindle::sync::{Barrier, Condvar, Mutex, RwLock, Semaphore, WaitGroup, mpmc, mpsc};
use spindle::{CancelToken, Cancelled, JoinHandle, Runtime};

/// Sets its flag when dropped: the cancelled thread's destructors ran.
struct Dropped(Arc<AtomicBool>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Spawns `wait` (a blocking point) behind a destructor, lets it block, cancels it,
/// and checks the unwind.
fn cancels_out_of(what: &str, wait: impl FnOnce() + Send + 'static) {
    let dropped = Arc::new(AtomicBool::new(false));
    let d = Dropped(dropped.clone());
    let reached = Arc::new(AtomicBool::new(false));
    let r = reached.clone();
    let h = spindle::spawn(move || {
        let _d = d;
        r.store(true, Ordering::SeqCst);
        wait();
        unreachable!("the wait returned instead of unwinding");
    });
    while !reached.load(Ordering::SeqCst) {
        spindle::sleep(Duration::from_millis(1));
    }
    spindle::sleep(Duration::from_millis(5));
    h.cancel();
    let payload = h.join().expect_err(what);
    assert!(
        payload.is::<Cancelled>(),
        "{what}: payload is not Cancelled"
    );
    assert!(
        dropped.load(Ordering::SeqCst),
        "{what}: destructors did not run"
    );
}

#[spindle::test(cores = 2)]
fn a_cancelled_thread_unwinds_from_every_blocking_point() {
    with_watchdog("cancel points", 60, || {
        cancels_out_of("park", || {
            loop {
                spindle::park();
            }
        });
        cancels_out_of("sleep", || spindle::sleep(Duration::from_secs(3600)));
        let m = Arc::new(Mutex::new(0));
        let held = m.lock().unwrap();
        let m2 = m.clone();
        cancels_out_of("mutex", move || drop(m2.lock()));
        drop(held);
        // The mutex is usable after its waiter left.
        *m.lock().unwrap() += 1;
        let rw = Arc::new(RwLock::new(0));
        let w = rw.write().unwrap();
        let rw2 = rw.clone();
        cancels_out_of("rwlock", move || drop(rw2.read()));
        drop(w);
        drop(rw.read().unwrap());
        let cv = Arc::new((Mutex::new(false), Condvar::new()));
        let cv2 = cv.clone();
        cancels_out_of("condvar", move || {
            let g = cv2.0.lock().unwrap();
            drop(cv2.1.wait_while(g, |ready| !*ready));
        });
        let (tx, rx) = mpsc::channel::<u32>();
        cancels_out_of("channel", move || {
            let _ = rx.recv();
        });
        drop(tx);
        let (tx, rx) = mpmc::sync_channel::<u32>(0);
        cancels_out_of("rendezvous send", move || {
            let _ = tx.send(1);
        });
        assert!(
            rx.try_recv().is_err(),
            "a cancelled rendezvous send left its message"
        );
        let (_tx, rx) = mpsc::channel::<u32>();
        let token = CancelToken::new();
        let t2 = token.clone();
        cancels_out_of("select", move || {
            spindle::select! {
                recv(rx) -> _ => {},
                recv(t2) -> _ => {},
            }
        });
        let sem = Arc::new(Semaphore::new(0));
        let s2 = sem.clone();
        cancels_out_of("semaphore", move || drop(s2.acquire()));
        let b = Arc::new(Barrier::new(2));
        let b2 = b.clone();
        cancels_out_of("barrier", move || {
            b2.wait();
        });
        let wg = Arc::new(WaitGroup::new());
        wg.add(1);
        let wg2 = wg.clone();
        cancels_out_of("wait group", move || wg2.wait());
        let t3 = token.clone();
        cancels_out_of("token", move || t3.wait());
        let sleeper = spindle::spawn(|| spindle::sleep(Duration::from_secs(3600)));
        let joined = sleeper.thread().clone();
        cancels_out_of("join", move || drop(sleeper.join()));
        joined.cancel();
        cancels_out_of("blocking pool", || {
            spindle::blocking(|| std::thread::sleep(Duration::from_millis(20)));
        });
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        cancels_out_of("offloaded read", move || {
            let mut buf = [0u8; 8];
            let _ = spindle::sys::read(&a, &mut buf);
        });
        let l = spindle::net::TcpListener::bind("127.0.0.1:0").unwrap();
        cancels_out_of("socket accept", move || drop(l.accept()));
    });
}

#[spindle::test(cores = 2)]
fn a_woken_waiter_that_is_cancelled_passes_its_wakeup_on() {
    with_watchdog("cancel pass-on", 30, || {
        // Two receivers wait on one channel; the first is cancelled; a message sent
        // reaches the second.
        let (tx, rx) = mpmc::channel::<u32>();
        let rx2 = rx.clone();
        let first = spindle::spawn(move || rx.recv());
        spindle::sleep(Duration::from_millis(5));
        let second = spindle::spawn(move || rx2.recv());
        spindle::sleep(Duration::from_millis(5));
        first.cancel();
        tx.send(7).unwrap();
        assert!(first.join().unwrap_err().is::<Cancelled>());
        assert_eq!(second.join().unwrap(), Ok(7));
    });
}

#[spindle::test(cores = 1)]
fn cancelling_a_finished_thread_does_nothing() {
    let h = spindle::spawn(|| 5);
    while !h.is_finished() {
        spindle::yield_now();
    }
    h.cancel();
    assert_eq!(h.join().unwrap(), 5);
}

#[spindle::test(cores = 1)]
fn cancelling_yourself_unwinds_at_your_next_blocking_point() {
    let ran_on = Arc::new(AtomicUsize::new(0));
    let r = ran_on.clone();
    let h = spindle::spawn(move || {
        spindle::current().cancel();
        // No blocking point yet: the thread runs on.
        r.store(1, Ordering::SeqCst);
        spindle::yield_now();
        r.store(2, Ordering::SeqCst);
        spindle::sleep(Duration::from_millis(1));
        r.store(3, Ordering::SeqCst);
    });
    assert!(h.join().unwrap_err().is::<Cancelled>());
    assert_eq!(ran_on.load(Ordering::SeqCst), 2);
}

#[spindle::test(cores = 1)]
fn a_thread_cancelled_before_it_starts_never_runs() {
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    // One core: the spawner runs on until it blocks, so the thread has not started.
    let h: JoinHandle<()> = spindle::spawn(move || r.store(true, Ordering::SeqCst));
    h.cancel();
    assert!(h.join().unwrap_err().is::<Cancelled>());
    assert!(!ran.load(Ordering::SeqCst));
}

#[spindle::test(cores = 1)]
fn a_thread_that_swallows_the_cancel_unwinds_again_and_destructors_may_block() {
    let h = spindle::spawn(|| {
        let caught = std::panic::catch_unwind(|| spindle::sleep(Duration::from_secs(3600)));
        assert!(caught.unwrap_err().is::<Cancelled>());
        // An unwinding thread's destructor that blocks sleeps normally.
        struct SleepsInDrop;
        impl Drop for SleepsInDrop {
            fn drop(&mut self) {
                spindle::sleep(Duration::from_millis(2));
            }
        }
        let _s = SleepsInDrop;
        spindle::sleep(Duration::from_secs(3600));
    });
    spindle::sleep(Duration::from_millis(5));
    h.cancel();
    assert!(h.join().unwrap_err().is::<Cancelled>());
}

/// A cancelled thread prints no panic message (the child's stderr stays empty of
/// "panicked"), even when `Cancelled` is raised as a panic by user code.
#[test]
fn a_cancel_is_not_reported_as_a_panic() {
    if child_case().as_deref() == Some("quiet") {
        Runtime::builder().cores(1).build().unwrap().block_on(|| {
            let h = spindle::spawn(|| spindle::sleep(Duration::from_secs(3600)));
            spindle::sleep(Duration::from_millis(2));
            h.cancel();
            assert!(h.join().unwrap_err().is::<Cancelled>());
            let h = spindle::spawn(|| std::panic::panic_any(Cancelled));
            assert!(h.join().unwrap_err().is::<Cancelled>());
            println!("child done");
        });
        return;
    }
    if child_case().is_some() {
        return;
    }
    let out = run_child("a_cancel_is_not_reported_as_a_panic", "quiet", |_| {});
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("child done"), "{out:?}");
    assert!(!out.stderr.contains("panicked"), "{out:?}");
}

/// Many threads blocked in a mix of waits, cancelled from other cores while others
/// wake them: every one ends (cancelled or done), nothing hangs, and the shared
/// channel loses no message.
#[test]
fn cancels_race_wakes_across_cores() {
    with_watchdog("cancel stress", 120, || {
        let rt = Runtime::builder().cores(4).build().unwrap();
        rt.block_on(|| {
            for _round in 0..20 {
                let (tx, rx) = mpmc::channel::<u32>();
                let got = Arc::new(AtomicUsize::new(0));
                let handles: Vec<_> = (0..32)
                    .map(|i| {
                        let (rx, got) = (rx.clone(), got.clone());
                        spindle::spawn(move || {
                            if i % 2 == 0 {
                                if rx.recv().is_ok() {
                                    got.fetch_add(1, Ordering::SeqCst);
                                }
                            } else {
                                spindle::sleep(Duration::from_micros(50 * i));
                            }
                        })
                    })
                    .collect();
                let sender = spindle::spawn(move || {
                    for v in 0..8 {
                        tx.send(v).unwrap();
                    }
                });
                for h in handles.iter().step_by(3) {
                    h.cancel();
                }
                sender.join().unwrap();
                let mut cancelled = 0;
                for h in handles {
                    match h.join() {
                        Ok(()) => {}
                        Err(p) => {
                            assert!(p.is::<Cancelled>());
                            cancelled += 1;
                        }
                    }
                }
                // What no receiver took is still in the channel.
                let left = rx.try_iter().count();
                assert_eq!(got.load(Ordering::SeqCst) + left, 8);
                assert!(cancelled <= 11);
            }
        });
    });
}

/// Cancelling a thread that waits in `scope` for a scoped thread cancels that one too:
/// the scope's caller ends (a blocked scoped thread would keep it waiting for ever).
#[spindle::test(cores = 2)]
fn a_cancel_reaches_the_threads_of_the_scope_its_thread_waits_in() {
    with_watchdog("scope cancel", 30, || {
        let inner_cancelled = Arc::new(AtomicBool::new(false));
        let flag = inner_cancelled.clone();
        let h = spindle::spawn(move || {
            let (_tx, rx) = mpsc::channel::<u32>();
            spindle::scope(|s| {
                s.spawn(|| {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rx.recv()));
                    if r.as_ref().is_err_and(|p| p.is::<Cancelled>()) {
                        flag.store(true, Ordering::SeqCst);
                    }
                    if let Err(p) = r {
                        std::panic::resume_unwind(p);
                    }
                });
            });
        });
        spindle::sleep(Duration::from_millis(10));
        h.cancel();
        assert!(h.join().unwrap_err().is::<Cancelled>());
        assert!(inner_cancelled.load(Ordering::SeqCst));
    });
}
