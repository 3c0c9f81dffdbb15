//! Handoff: ordinary blocking code in one thread never stalls the other threads of its
//! core. A core whose thread blocks its OS thread in the kernel goes to a spare OS
//! thread; the blocked thread rejoins a core at its next runtime call.
//!
//! Each test puts the blocking thread and the threads that must keep running on one
//! worker core, so without handoff they could not run while the call blocks (the
//! `handoff(false)` test shows it). The assertions count what ran during the call,
//! never how fast.

mod common;

use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use spindle::{Builder, Runtime};

/// A one-worker runtime (plus the service core) with handoff as given.
fn one_core(handoff: bool) -> Runtime {
    Runtime::builder()
        .cores(1)
        .handoff(handoff)
        .build()
        .expect("a one-core runtime")
}

/// Runs `block` in a thread on core 0 while a ticker thread on core 0 counts its
/// rounds (1 ms spindle sleeps); returns the rounds counted while `block` was inside
/// its call, and the cores' handoff count.
fn rounds_during(rt: &Runtime, block: impl FnOnce() + Send + 'static) -> (u64, u64) {
    rt.block_on(move || {
        let inside = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let during = Arc::new(AtomicU64::new(0));
        let ticker = {
            let (inside, stop, during) = (inside.clone(), stop.clone(), during.clone());
            Builder::new()
                .name("ticker")
                .core(0)
                .spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        if inside.load(Ordering::Acquire) {
                            during.fetch_add(1, Ordering::Relaxed);
                        }
                        spindle::sleep(Duration::from_millis(1));
                    }
                })
                .unwrap()
        };
        let blocker = {
            let inside = inside.clone();
            Builder::new()
                .name("blocker")
                .core(0)
                .spawn(move || {
                    inside.store(true, Ordering::Release);
                    block();
                    inside.store(false, Ordering::Release);
                    // Back from the call: a runtime call rejoins a core, and a bound
                    // thread its own.
                    spindle::yield_now();
                    spindle::current_core()
                })
                .unwrap()
        };
        assert_eq!(
            blocker.join().unwrap(),
            Some(0),
            "the bound blocker left core 0"
        );
        stop.store(true, Ordering::Release);
        ticker.join().unwrap();
        (
            during.load(Ordering::Relaxed),
            spindle::Handle::current().stats().total().handed_off,
        )
    })
}

#[test]
fn a_sleeping_thread_does_not_stall_its_core() {
    let done = common::watchdog("a_sleeping_thread_does_not_stall_its_core", 60);
    let (during, handed) = rounds_during(&one_core(true), || {
        std::thread::sleep(Duration::from_millis(300));
    });
    assert!(
        during > 0,
        "nothing ran on the core while its thread slept in std"
    );
    assert!(handed >= 1, "the core was never handed off");
    done.store(true, Ordering::Relaxed);
}

#[test]
fn without_handoff_a_sleeping_thread_stalls_its_core() {
    let done = common::watchdog("without_handoff_a_sleeping_thread_stalls_its_core", 60);
    let (during, handed) = rounds_during(&one_core(false), || {
        std::thread::sleep(Duration::from_millis(100));
    });
    assert_eq!(
        during, 0,
        "a thread ran on the core while its only OS thread slept"
    );
    assert_eq!(handed, 0);
    done.store(true, Ordering::Relaxed);
}

/// A pipe whose ends are plain `std::fs::File`s: blocking reads and writes.
fn pipe() -> (std::fs::File, std::fs::File) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: pipe made them, and nothing else owns them.
    unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    }
}

#[test]
fn a_blocking_pipe_read_waits_for_a_writer_on_its_own_core() {
    let done = common::watchdog(
        "a_blocking_pipe_read_waits_for_a_writer_on_its_own_core",
        60,
    );
    // Without handoff this deadlocks: the writer is queued behind the reader, whose
    // read holds the core's only OS thread.
    let got = one_core(true).block_on(|| {
        let (mut r, mut w) = pipe();
        let reader = Builder::new()
            .core(0)
            .spawn(move || {
                let mut buf = [0u8; 5];
                r.read_exact(&mut buf).unwrap();
                buf
            })
            .unwrap();
        let writer = Builder::new()
            .core(0)
            .spawn(move || {
                // Let the reader block first.
                spindle::sleep(Duration::from_millis(20));
                w.write_all(b"hello").unwrap();
            })
            .unwrap();
        writer.join().unwrap();
        reader.join().unwrap()
    });
    assert_eq!(&got, b"hello");
    done.store(true, Ordering::Relaxed);
}

#[test]
fn a_preempted_std_mutex_holder_does_not_deadlock_its_core() {
    let done = common::watchdog(
        "a_preempted_std_mutex_holder_does_not_deadlock_its_core",
        60,
    );
    // The holder takes a std mutex and spins until the other thread waits for it: it
    // is preempted holding the lock, the other thread blocks its OS thread in the
    // futex, and only a handoff lets the holder run again to unlock.
    let rt = Runtime::builder()
        .cores(1)
        .time_slice(Duration::from_millis(2))
        .build()
        .unwrap();
    let total = rt.block_on(|| {
        let m = Arc::new(std::sync::Mutex::new(0u64));
        let waiting = Arc::new(AtomicBool::new(false));
        let held = Arc::new(AtomicBool::new(false));
        let holder = {
            let (m, waiting, held) = (m.clone(), waiting.clone(), held.clone());
            Builder::new()
                .core(0)
                .preemptible(true)
                .spawn(move || {
                    let mut g = m.lock().unwrap();
                    held.store(true, Ordering::Release);
                    while !waiting.load(Ordering::Acquire) {
                        std::hint::spin_loop();
                    }
                    *g += 1;
                })
                .unwrap()
        };
        let other = {
            let (m, waiting, held) = (m.clone(), waiting.clone(), held.clone());
            Builder::new()
                .core(0)
                .spawn(move || {
                    while !held.load(Ordering::Acquire) {
                        spindle::yield_now();
                    }
                    waiting.store(true, Ordering::Release);
                    *m.lock().unwrap() += 10;
                })
                .unwrap()
        };
        holder.join().unwrap();
        other.join().unwrap();
        *m.lock().unwrap()
    });
    assert_eq!(total, 11);
    done.store(true, Ordering::Relaxed);
}

spindle::local! {
    static MINE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

#[test]
fn locals_and_unbound_threads_survive_a_handoff() {
    let done = common::watchdog("locals_and_unbound_threads_survive_a_handoff", 60);
    let rt = Runtime::builder().cores(2).build().unwrap();
    let (value, core, handed) = rt.block_on(|| {
        let h = spindle::spawn(|| {
            MINE.with(|m| m.set(42));
            std::thread::sleep(Duration::from_millis(200));
            // Back from the call, before any runtime call: on no core.
            let adrift = spindle::current_core();
            spindle::yield_now();
            (MINE.with(|m| m.get()), adrift, spindle::current_core())
        });
        let (v, adrift, c) = h.join().unwrap();
        assert_eq!(
            adrift, None,
            "the thread was not adrift after its long call"
        );
        (v, c, spindle::Handle::current().stats().total().handed_off)
    });
    assert_eq!(value, 42);
    assert!(core.is_some(), "the thread did not rejoin a core");
    assert!(handed >= 1);
    done.store(true, Ordering::Relaxed);
}

#[test]
fn many_blocking_threads_on_few_cores_all_finish() {
    // A bounded stress of the whole path: threads that block in std calls of random
    // lengths, yield, spawn and join, on two cores with a small spare bound (so
    // cores also wait for a spare). Debug builds assert at every switch that no
    // thread runs on two cores.
    let done = common::watchdog("many_blocking_threads_on_few_cores_all_finish", 120);
    let rt = Runtime::builder()
        .cores(2)
        .spare_threads(2)
        .build()
        .unwrap();
    let sum = rt.block_on(|| {
        let hs: Vec<_> = (0..40u64)
            .map(|i| {
                spindle::spawn(move || {
                    let mut rng = common::Rng(i * 7919 + 1);
                    let mut acc = 0u64;
                    for _ in 0..6 {
                        match rng.next() % 4 {
                            0 => std::thread::sleep(Duration::from_micros(rng.next() % 4000)),
                            1 => spindle::yield_now(),
                            2 => acc += spindle::spawn(move || i).join().unwrap(),
                            _ => spindle::sleep(Duration::from_micros(200)),
                        }
                    }
                    acc + 1
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    assert!(sum >= 40);
    done.store(true, Ordering::Relaxed);
}

#[test]
fn an_exhausted_spare_bound_is_reported_once_and_the_runtime_keeps_running() {
    if let Some(case) = common::child_case() {
        if case == "exhausted" {
            // One worker and one spare: the second blocked core waits for the spare.
            let rt = Runtime::builder()
                .cores(1)
                .spare_threads(1)
                .build()
                .unwrap();
            let n = rt.block_on(|| {
                let hs: Vec<_> = (0..3)
                    .map(|i| {
                        Builder::new()
                            .name(format!("sleeper-{i}"))
                            .core(0)
                            .spawn(|| std::thread::sleep(Duration::from_millis(400)))
                            .unwrap()
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().is_ok() as u32).sum::<u32>()
            });
            println!("finished {n}");
        }
        return;
    }
    let out = common::run_child(
        "an_exhausted_spare_bound_is_reported_once_and_the_runtime_keeps_running",
        "exhausted",
        |_| {},
    );
    assert!(out.stdout.contains("finished 3"), "{out:?}");
    let reports = out.stderr.matches("spare OS threads are in use").count();
    assert_eq!(reports, 1, "{out:?}");
    assert!(out.stderr.contains("'sleeper-"), "{out:?}");
}

#[test]
fn the_signal_path_hands_off_too() {
    // Kernels without membarrier(2) let the core go from the carrier's signal handler.
    if common::child_case().as_deref() == Some("by_signal") {
        spindle::__private::handoff_by_signal();
        let (during, handed) = rounds_during(&one_core(true), || {
            std::thread::sleep(Duration::from_millis(200));
        });
        println!("during {during} handed {handed}");
        return;
    }
    if common::child_case().is_some() {
        return;
    }
    let out = common::run_child("the_signal_path_hands_off_too", "by_signal", |_| {});
    // The child's line may follow the test harness's own text on one line.
    let nums: Vec<u64> = out
        .stdout
        .split("during ")
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(nums.len(), 2, "{out:?}");
    assert!(nums[0] > 0 && nums[1] >= 1, "{out:?}");
}
