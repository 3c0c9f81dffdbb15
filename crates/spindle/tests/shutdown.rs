//! Dropping a runtime: it returns in bounded time whatever its threads do, threads
//! still blocked are unwound so their destructors run, and nothing the runtime made —
//! descriptors, OS threads, mappings — outlives it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use spindle::Runtime;

mod common;
use common::{Counted, with_watchdog};

/// Starts a detached thread named "stubborn" in `rt` that spins for ever without a
/// runtime call, and returns once it runs.
fn start_spinner(rt: &Runtime) {
    let started = Arc::new(AtomicBool::new(false));
    let s = started.clone();
    drop(
        spindle::Builder::new()
            .name("stubborn")
            .spawn_in(rt.handle(), move || {
                s.store(true, Ordering::SeqCst);
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            })
            .unwrap(),
    );
    while !started.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
}

/// A detached preemptible thread that spins for ever does not keep `drop` waiting.
#[test]
fn drop_returns_while_a_preemptible_thread_spins() {
    with_watchdog("drop with a preemptible spinner", 30, || {
        let rt = Runtime::builder()
            .cores(1)
            .preemptible(true)
            .build()
            .unwrap();
        start_spinner(&rt);
        drop(rt);
    });
}

/// Threads blocked when the runtime is dropped — parked, asleep, waiting on a lock, a
/// channel, a join — are unwound from where they wait: their destructors run, and
/// `join` reports them abandoned.
#[test]
fn blocked_threads_are_unwound_at_shutdown() {
    with_watchdog("unwind at shutdown", 60, || {
        let drops = Arc::new(AtomicUsize::new(0));
        let rt = Runtime::builder().cores(2).build().unwrap();
        let lock = Arc::new(spindle::sync::Mutex::new(()));
        let (tx, rx) = spindle::sync::mpsc::channel::<u32>();
        let held = lock.lock().unwrap();
        let handles = rt.block_on({
            let (drops, lock) = (drops.clone(), lock.clone());
            move || {
                let mut hs = Vec::new();
                let d = drops.clone();
                hs.push(spindle::spawn(move || {
                    let _c = Counted(d);
                    loop {
                        spindle::park();
                    }
                }));
                let d = drops.clone();
                hs.push(spindle::spawn(move || {
                    let _c = Counted(d);
                    spindle::sleep(Duration::from_secs(3600));
                }));
                let d = drops.clone();
                hs.push(spindle::spawn(move || {
                    let _c = Counted(d);
                    drop(lock.lock());
                }));
                let d = drops.clone();
                hs.push(spindle::spawn(move || {
                    let _c = Counted(d);
                    let _ = rx.recv();
                }));
                let d = drops.clone();
                let parked = spindle::spawn(spindle::park);
                hs.push(spindle::spawn(move || {
                    let _c = Counted(d);
                    // The joined thread is abandoned too, maybe first: then the join
                    // returns, and the park after it is where this one is unwound.
                    let _ = parked.join();
                    loop {
                        spindle::park();
                    }
                }));
                // Let every one of them block.
                spindle::sleep(Duration::from_millis(20));
                hs
            }
        });
        drop(rt);
        assert_eq!(
            drops.load(Ordering::SeqCst),
            5,
            "destructors of blocked threads ran"
        );
        for h in handles {
            let e = h.join().unwrap_err();
            assert_eq!(e.downcast_ref::<&str>(), Some(&spindle::ABANDONED));
        }
        // The lock the unwound waiter queued on still works for everyone else.
        drop(held);
        drop(lock.lock().unwrap());
        drop(tx);
    });
}

/// An unwound thread's payload is `spindle::Abandoned`, not an ordinary panic: code
/// that catches unwinds can tell, and a thread that swallows it is unwound again at
/// its next blocking point.
#[test]
fn the_shutdown_unwind_has_its_own_payload() {
    with_watchdog("abandon payload", 60, || {
        let seen = Arc::new(AtomicUsize::new(0));
        let rt = Runtime::builder().cores(1).build().unwrap();
        let h = rt.block_on({
            let seen = seen.clone();
            move || {
                let h = spindle::spawn(move || {
                    loop {
                        let Err(p) = std::panic::catch_unwind(spindle::park) else {
                            continue;
                        };
                        assert!(p.is::<spindle::Abandoned>(), "an ordinary panic payload");
                        // Swallowed once; the next park unwinds again.
                        if seen.fetch_add(1, Ordering::SeqCst) == 1 {
                            std::panic::resume_unwind(p);
                        }
                    }
                });
                spindle::sleep(Duration::from_millis(10));
                h
            }
        });
        drop(rt);
        let e = h.join().unwrap_err();
        assert_eq!(e.downcast_ref::<&str>(), Some(&spindle::ABANDONED));
        assert_eq!(
            seen.load(Ordering::SeqCst),
            2,
            "not unwound again after swallowing it"
        );
    });
}

/// Descriptors, OS threads and mappings of this process, and its resident memory in
/// KiB.
fn census() -> (usize, usize, usize, usize) {
    let count = |dir: &str| std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    let maps = std::fs::read_to_string("/proc/self/maps")
        .map(|m| m.lines().count())
        .unwrap_or(0);
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0);
    (count("/proc/self/fd"), count("/proc/self/task"), maps, rss)
}

/// A thousand runtimes built and dropped — each with a thread parked for good that
/// holds a descriptor, each through the readiness poller and the blocking pool —
/// leave descriptors, OS threads and mappings where they were. In a child process, so
/// that no other test's runtime is counted.
#[test]
fn a_thousand_runtimes_leave_nothing_behind() {
    let c = common::run_child("child_entry", "thousand", |_| {});
    assert_eq!(c.code, Some(0), "{c:?}");
    assert!(c.stdout.contains("flat"), "{c:?}");
}

/// The child side of `a_thousand_runtimes_leave_nothing_behind`.
fn thousand_runtimes() {
    let round = || {
        let rt = Runtime::builder().cores(1).build().unwrap();
        rt.block_on(|| {
            let l = spindle::net::TcpListener::bind("127.0.0.1:0").unwrap();
            drop(spindle::spawn(move || {
                let _l = l;
                spindle::park();
            }));
            spindle::blocking(|| ());
            spindle::sleep(Duration::from_millis(1));
        });
    };
    for _ in 0..20 {
        round();
    }
    let before = census();
    let t = Instant::now();
    for _ in 0..1000 {
        round();
    }
    let after = census();
    println!(
        "1000 runtimes in {:?}: (descriptors, threads, mappings, RSS KiB) {before:?} -> \
         {after:?}",
        t.elapsed()
    );
    assert_eq!(after.0, before.0, "descriptors leaked");
    assert_eq!(after.1, before.1, "OS threads leaked");
    assert_eq!(after.2, before.2, "mappings leaked");
    // Resident memory: allocator noise only, under 1 KiB per runtime.
    assert!(
        after.3 < before.3 + 1000,
        "resident memory grew: {before:?} -> {after:?}"
    );
    println!("flat");
}

/// The child side of the test below.
#[test]
fn child_entry() {
    if common::child_case().as_deref() == Some("thousand") {
        thousand_runtimes();
    }
    if common::child_case().as_deref() == Some("stuck") {
        let rt = Runtime::builder()
            .cores(1)
            .shutdown_timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        start_spinner(&rt);
        let t = Instant::now();
        drop(rt);
        println!("dropped in {} ms", t.elapsed().as_millis());
        std::process::exit(0);
    }
}

/// A thread that neither yields nor can be preempted cannot stop its core: `drop`
/// gives up after the shutdown timeout, says so on stderr, and returns.
#[test]
fn drop_gives_up_on_a_thread_that_cannot_be_stopped() {
    let c = common::run_child("child_entry", "stuck", |_| {});
    assert_eq!(c.code, Some(0), "{c:?}");
    assert!(c.stdout.contains("dropped in"), "{c:?}");
    assert!(c.stderr.contains("'stubborn'"), "{c:?}");
}
