//! `spindle::local!`: a value per spindle thread that goes with the thread from core
//! to core, is dropped when the thread ends (before `join` returns), and refuses
//! access while it is dropped. Core counts are built, whatever the machine.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use spindle::{AccessError, Runtime};

mod common;
use common::watchdog;

spindle::local! {
    static COUNT: Cell<u64> = Cell::new(0);
    static TAG: RefCell<Vec<u64>> = RefCell::new(Vec::new());
}

#[test]
fn each_thread_has_its_own_value() {
    let _w = watchdog("own values", 60);
    let rt = Runtime::builder().cores(2).build().unwrap();
    rt.block_on(|| {
        COUNT.with(|c| c.set(1000));
        let hs: Vec<_> = (0..100u64)
            .map(|i| {
                spindle::spawn(move || {
                    for _ in 0..=i {
                        COUNT.with(|c| c.set(c.get() + 1));
                        spindle::yield_now();
                    }
                    COUNT.with(|c| c.get())
                })
            })
            .collect();
        for (i, h) in hs.into_iter().enumerate() {
            assert_eq!(h.join().unwrap(), i as u64 + 1);
        }
        assert_eq!(COUNT.with(|c| c.get()), 1000, "main's value is its own");
    });
    _w.store(true, Ordering::Relaxed);
}

std::thread_local! {
    static PER_OS_THREAD: Cell<u64> = const { Cell::new(0) };
}

/// The value stays with the thread through `migrate_to` to every core; std's
/// `thread_local!` is the core's, and changes with it.
#[test]
fn a_value_goes_with_its_thread_from_core_to_core() {
    let _w = watchdog("migrating values", 60);
    let rt = Runtime::builder().cores(4).build().unwrap();
    rt.block_on(|| {
        spindle::spawn_on(0, || {
            TAG.with(|t| t.borrow_mut().push(7));
            PER_OS_THREAD.with(|v| v.set(7));
            for core in [1, 2, 3, 0] {
                spindle::migrate_to(core).unwrap();
                assert_eq!(spindle::current_core(), Some(core));
                TAG.with(|t| t.borrow_mut().push(core as u64));
                if core != 0 {
                    assert_ne!(
                        PER_OS_THREAD.with(|v| v.get()),
                        7,
                        "core {core}'s OS thread has its own thread_local!"
                    );
                }
            }
            assert_eq!(TAG.with(|t| t.borrow().clone()), [7, 1, 2, 3, 0]);
        })
        .join()
        .unwrap();
    });
    _w.store(true, Ordering::Relaxed);
}

/// Threads that idle cores take away (work requests) keep their values: 200 threads
/// start on one core of four, each checks its own value between yields, and the test
/// goes on until some thread has run on two cores.
#[test]
fn a_value_survives_being_given_to_another_core() {
    let _w = watchdog("stolen values", 120);
    let rt = Runtime::builder().cores(4).build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut moved = 0;
    while moved == 0 && Instant::now() < deadline {
        moved = rt.block_on(|| {
            spindle::spawn_on(0, || {
                let hs: Vec<_> = (0..200u64)
                    .map(|i| {
                        spindle::spawn(move || {
                            COUNT.with(|c| c.set(i));
                            let mut cores = BTreeSet::new();
                            for _ in 0..500 {
                                cores.insert(spindle::current_core().unwrap());
                                assert_eq!(COUNT.with(|c| c.get()), i, "thread {i} lost its value");
                                spindle::yield_now();
                            }
                            cores.len() > 1
                        })
                    })
                    .collect();
                hs.into_iter()
                    .map(|h| h.join().unwrap())
                    .filter(|&m| m)
                    .count()
            })
            .join()
            .unwrap()
        });
    }
    assert!(moved > 0, "no thread ran on two cores within 20 s");
    _w.store(true, Ordering::Relaxed);
}

static DROPPED: AtomicUsize = AtomicUsize::new(0);

struct CountsDrop(u32);

impl Drop for CountsDrop {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}

spindle::local! {
    static DROPS_ONCE: CountsDrop = CountsDrop(1);
}

/// Values are made only by threads that touch them, and dropped when those threads
/// end — also by a panic — before `join` returns; OS threads outside a runtime get
/// values of their own, dropped when they end.
#[test]
fn values_are_dropped_when_their_thread_ends() {
    let _w = watchdog("dropped values", 60);
    let rt = Runtime::builder().cores(2).build().unwrap();
    let before = DROPPED.load(Ordering::SeqCst);
    rt.block_on(|| {
        let hs: Vec<_> = (0..20u32)
            .map(|i| {
                spindle::spawn(move || {
                    if i % 2 == 0 {
                        DROPS_ONCE.with(|d| assert_eq!(d.0, 1));
                    }
                    if i % 4 == 0 {
                        panic!("thread {i} ends by a panic");
                    }
                })
            })
            .collect();
        let panicked = hs
            .into_iter()
            .map(|h| h.join())
            .filter(Result::is_err)
            .count();
        assert_eq!(panicked, 5);
    });
    assert_eq!(
        DROPPED.load(Ordering::SeqCst) - before,
        10,
        "one drop per thread that touched it"
    );
    let before = DROPPED.load(Ordering::SeqCst);
    // `join` waits for the OS thread's end, after its thread-locals are dropped (a
    // scope's end does not).
    let os: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(|| DROPS_ONCE.with(|d| assert_eq!(d.0, 1))))
        .collect();
    os.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(
        DROPPED.load(Ordering::SeqCst) - before,
        3,
        "OS threads drop theirs"
    );
    _w.store(true, Ordering::Relaxed);
}

static SEEN_IN_DROP: AtomicUsize = AtomicUsize::new(0);

struct TriesOthers;

impl Drop for TriesOthers {
    fn drop(&mut self) {
        // Another key of the ending thread: refused, even if never made.
        if COUNT.try_with(|c| c.get()) == Err(AccessError) {
            SEEN_IN_DROP.fetch_add(1, Ordering::SeqCst);
        }
    }
}

spindle::local! {
    static TRIES_OTHERS: TriesOthers = TriesOthers;
    static SELF_REFERENT: u32 = SELF_REFERENT.with(|v| *v + 1);
}

/// A destructor that reaches for a `local!` of its ending thread gets `AccessError`;
/// an initializer that reads its own key panics, in that thread only.
#[test]
fn access_while_values_are_dropped_or_made_is_refused() {
    let _w = watchdog("refused access", 60);
    let rt = Runtime::builder().cores(1).build().unwrap();
    rt.block_on(|| {
        spindle::spawn(|| TRIES_OTHERS.with(|_| ())).join().unwrap();
        assert_eq!(SEEN_IN_DROP.load(Ordering::SeqCst), 1);
        let err = spindle::spawn(|| SELF_REFERENT.with(|v| *v))
            .join()
            .unwrap_err();
        let msg = err
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| err.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("");
        assert!(msg.contains("initializer accessed the value"), "{msg}");
    });
    _w.store(true, Ordering::Relaxed);
}
