//! Spawn, join, detach, panics, ids and shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use spindle::{Builder, SpawnError};

mod common;
use common::Counted;

#[test]
fn run_returns_the_main_value_and_join_returns_each_result() {
    let out = spindle::run(|| {
        let hs: Vec<_> = (0..100u64).map(|i| spindle::spawn(move || i * 3)).collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    assert_eq!(out, (0..100u64).map(|i| i * 3).collect::<Vec<_>>());
}

#[test]
fn run_borrows_from_the_caller() {
    let v = [1, 2, 3];
    let n = spindle::run(|| v.iter().sum::<i32>());
    assert_eq!(n, 6);
}

#[spindle::test]
fn panic_is_returned_by_join_and_the_core_keeps_running() {
    let n = std::hint::black_box(7);
    let h = spindle::spawn(move || -> u32 { panic!("boom {n}") });
    let err = h.join().unwrap_err();
    assert_eq!(
        err.downcast_ref::<String>().map(String::as_str),
        Some("boom 7")
    );
    assert_eq!(spindle::spawn(|| 5).join().unwrap(), 5);
}

#[test]
fn panic_in_main_is_resumed_on_the_caller() {
    let r = std::panic::catch_unwind(|| spindle::run(|| panic!("main failed")));
    let payload = r.unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"main failed"));
}

#[test]
fn detached_threads_run_to_completion() {
    let n = Arc::new(AtomicUsize::new(0));
    spindle::run(|| {
        for _ in 0..50 {
            let n = n.clone();
            drop(spindle::spawn(move || n.fetch_add(1, Ordering::Relaxed)));
        }
        while n.load(Ordering::Relaxed) < 50 {
            spindle::yield_now();
        }
    });
    assert_eq!(n.load(Ordering::Relaxed), 50);
}

#[spindle::test]
fn large_closures_and_results_take_the_boxed_path() {
    let big = [7u8; 4096];
    let h = spindle::spawn(move || {
        let mut out = [0u64; 16];
        out[15] = big.iter().map(|&b| b as u64).sum();
        out
    });
    assert_eq!(h.join().unwrap()[15], 7 * 4096);
}

#[test]
fn results_are_dropped_exactly_once_whether_joined_or_detached() {
    let drops = Arc::new(AtomicUsize::new(0));
    // One core: the yields below are what lets the detached threads finish first.
    common::on_one_core(|| {
        let d = drops.clone();
        let joined = spindle::spawn(move || Counted(d));
        drop(joined.join().unwrap());
        let d = drops.clone();
        let detached = spindle::spawn(move || Counted(d));
        spindle::yield_now(); // let it finish first
        drop(detached);
        let d = drops.clone();
        drop(spindle::spawn(move || Counted(d))); // detached before it runs
        for _ in 0..3 {
            spindle::yield_now();
        }
    });
    assert_eq!(drops.load(Ordering::Relaxed), 3);
}

#[spindle::test]
fn ids_are_unique_among_live_threads_and_generations_advance_on_reuse() {
    let a = spindle::spawn(|| spindle::current().id());
    let b = spindle::spawn(|| spindle::current().id());
    let (ida, idb) = (a.thread().id(), b.thread().id());
    assert_ne!(ida, idb);
    assert_eq!(a.join().unwrap(), ida);
    assert_eq!(b.join().unwrap(), idb);
    // The freed slot is reused with a new generation.
    let c = spindle::spawn(|| ());
    let idc = c.thread().id();
    assert!(idc.index() == ida.index() || idc.index() == idb.index());
    assert_ne!(idc, ida);
    assert_ne!(idc, idb);
    c.join().unwrap();
}

#[spindle::test]
fn a_stale_thread_handle_never_unparks_the_slots_next_owner() {
    let old = spindle::spawn(|| ());
    let stale = old.thread().clone();
    old.join().unwrap();
    let woke = Arc::new(AtomicUsize::new(0));
    let w = woke.clone();
    let next = spindle::spawn(move || {
        spindle::park();
        w.store(1, Ordering::SeqCst);
    });
    assert_eq!(
        next.thread().id().index(),
        stale.id().index(),
        "slot reused"
    );
    spindle::yield_now(); // `next` parks
    stale.unpark(); // stale: must do nothing
    for _ in 0..10 {
        spindle::yield_now();
    }
    assert_eq!(
        woke.load(Ordering::SeqCst),
        0,
        "stale unpark woke another thread"
    );
    next.thread().unpark();
    next.join().unwrap();
    assert_eq!(woke.load(Ordering::SeqCst), 1);
}

#[test]
fn names_and_current() {
    assert!(spindle::try_current().is_none());
    spindle::run(|| {
        assert_eq!(spindle::current().name(), Some("main"));
        let h = Builder::new()
            .name("worker-1")
            .spawn(|| spindle::current().name().map(String::from))
            .unwrap();
        assert_eq!(h.thread().name(), Some("worker-1"));
        assert_eq!(h.join().unwrap().as_deref(), Some("worker-1"));
        assert!(
            spindle::spawn(|| spindle::current().name().is_none())
                .join()
                .unwrap()
        );
    });
}

#[spindle::test]
fn bad_attributes_are_typed_errors_that_say_what_to_do() {
    for bad in [0, 1000, 3 << 14, 8 << 10, 16 << 20] {
        let e = Builder::new().stack_size(bad).spawn(|| ()).unwrap_err();
        assert_eq!(e, SpawnError::StackSize { requested: bad });
        assert!(e.to_string().contains("power of two from 16384"), "{e}");
    }
    let e = Builder::new().priority(64).spawn(|| ()).unwrap_err();
    assert_eq!(e, SpawnError::Priority { requested: 64 });
    assert!(e.to_string().contains("0 (least urgent) to 63"), "{e}");
    // Nothing was lost: the runtime still spawns.
    assert_eq!(
        Builder::new()
            .stack_size(16 << 10)
            .spawn(|| 1)
            .unwrap()
            .join()
            .unwrap(),
        1
    );
}

#[test]
fn spawning_outside_a_runtime_is_an_error_and_plain_spawn_panics() {
    let e = Builder::new().spawn(|| ()).unwrap_err();
    assert_eq!(e, SpawnError::NoRuntime);
    assert!(e.to_string().contains("spindle::run"));
    let p = std::panic::catch_unwind(|| spindle::spawn(|| ())).unwrap_err();
    let msg = p.downcast_ref::<String>().unwrap();
    assert!(msg.contains("not inside a spindle runtime"), "{msg}");
}

#[spindle::test]
fn nested_run_panics_with_advice() {
    let p = std::panic::catch_unwind(|| spindle::run(|| ())).unwrap_err();
    let msg = p.downcast_ref::<&str>().unwrap();
    assert!(msg.contains("use spindle::spawn"), "{msg}");
}

#[test]
fn every_stack_size_class_is_usable_to_near_its_size() {
    fn touch(depth: usize) -> u64 {
        let buf = [depth as u8; 1024];
        let below = if depth == 0 { 0 } else { touch(depth - 1) };
        std::hint::black_box(&buf);
        below + buf[0] as u64
    }
    spindle::run(|| {
        for shift in 14..=23 {
            let size = 1usize << shift;
            // Use about half the stack: ~1.1 KiB per frame.
            let depth = size / 2 / 1200;
            let h = Builder::new()
                .stack_size(size)
                .spawn(move || touch(depth))
                .unwrap();
            assert!(h.join().is_ok(), "stack of {size} bytes");
        }
    });
}

#[test]
fn threads_left_at_shutdown_are_abandoned_and_their_handles_say_so() {
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let rt = spindle::Runtime::builder().cores(1).build().unwrap();
    let (parked, never_ran, spinner) = rt.block_on(move || {
        let parked = spindle::spawn(spindle::park);
        spindle::yield_now(); // it parks
        let c = Counted(d);
        // Least urgent: it never runs, because the spinner (more urgent) holds the
        // only core from the moment main exits until the shutdown halts it.
        let never_ran = Builder::new().priority(0).spawn(move || drop(c)).unwrap();
        let spinner = Builder::new()
            .priority(10)
            .spawn(|| {
                loop {
                    spindle::preempt_point();
                    std::hint::spin_loop();
                }
            })
            .unwrap();
        (parked, never_ran, spinner)
    });
    drop(rt);
    assert_eq!(
        drops.load(Ordering::Relaxed),
        1,
        "the closure that never ran was dropped"
    );
    let e = parked.join().unwrap_err();
    assert_eq!(e.downcast_ref::<&str>(), Some(&spindle::ABANDONED));
    assert!(never_ran.join().is_err());
    assert!(spinner.join().is_err());
}

#[spindle::test]
fn join_from_an_os_thread_blocks_that_thread_only() {
    let h = spindle::spawn(|| {
        spindle::sleep(Duration::from_millis(20));
        99
    });
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    let os = std::thread::spawn(move || {
        let v = h.join().unwrap();
        d.store(1, Ordering::SeqCst);
        v
    });
    while done.load(Ordering::SeqCst) == 0 {
        spindle::sleep(Duration::from_millis(1));
    }
    assert_eq!(os.join().unwrap(), 99);
}

#[test]
fn many_threads_spawn_and_join() {
    let n = spindle::run(|| {
        let hs: Vec<_> = (0..20_000usize)
            .map(|i| spindle::spawn(move || i))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<usize>()
    });
    assert_eq!(n, (0..20_000).sum::<usize>());
}

#[test]
fn guard_mode_is_reported() {
    spindle::run(|| spindle::spawn(|| ()).join().unwrap());
    let m = spindle::guard_mode().expect("a stack was made");
    assert!(matches!(
        m,
        spindle::GuardMode::Madvise | spindle::GuardMode::Mprotect
    ));
}

#[spindle::main]
fn macro_main() -> u32 {
    spindle::spawn(|| 21).join().unwrap() * 2
}

#[test]
fn the_main_attribute_runs_the_body_in_a_runtime() {
    assert_eq!(macro_main(), 42);
}
