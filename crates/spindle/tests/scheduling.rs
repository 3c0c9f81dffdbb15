//! Priorities, turn-taking, park/unpark, sleep, and the foreign-thread paths, among
//! the threads of one core: every test builds a one-core runtime, so that it holds on
//! a machine of any size.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spindle::Builder;

mod common;
use common::on_one_core;

fn log() -> Arc<Mutex<Vec<u32>>> {
    Arc::new(Mutex::new(Vec::new()))
}

#[test]
fn higher_priority_runs_first() {
    let order = log();
    on_one_core(|| {
        // Main is priority 32; spawn less urgent threads so none preempts it, then
        // block in join so they all compete.
        let hs: Vec<_> = [3u8, 10, 1, 30, 10, 20]
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let o = order.clone();
                Builder::new()
                    .priority(p)
                    .spawn(move || o.lock().unwrap().push(i as u32))
                    .unwrap()
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    // By priority 30, 20, 10, 10 (FIFO), 3, 1.
    assert_eq!(*order.lock().unwrap(), vec![3, 5, 1, 4, 0, 2]);
}

#[spindle::test(cores = 1)]
fn a_more_urgent_spawn_runs_before_spawn_returns() {
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let h = Builder::new()
        .priority(60)
        .spawn(move || r.store(true, Ordering::SeqCst))
        .unwrap();
    assert!(
        ran.load(Ordering::SeqCst),
        "urgent thread did not preempt its spawner"
    );
    h.join().unwrap();
    let r = Arc::new(AtomicBool::new(false));
    let r2 = r.clone();
    let h = Builder::new()
        .priority(10)
        .spawn(move || r2.store(true, Ordering::SeqCst))
        .unwrap();
    assert!(
        !r.load(Ordering::SeqCst),
        "a less urgent thread ran before its spawner yielded"
    );
    h.join().unwrap();
}

#[spindle::test(cores = 1)]
fn a_yielding_urgent_thread_keeps_the_core() {
    let low_ran = Arc::new(AtomicBool::new(false));
    let l = low_ran.clone();
    let low = Builder::new()
        .priority(1)
        .spawn(move || l.store(true, Ordering::SeqCst))
        .unwrap();
    for _ in 0..100 {
        spindle::yield_now();
        assert!(
            !low_ran.load(Ordering::SeqCst),
            "yield handed the core to a less urgent thread"
        );
    }
    low.join().unwrap();
    assert!(low_ran.load(Ordering::SeqCst));
}

#[test]
fn equal_priorities_take_turns() {
    let order = log();
    on_one_core(|| {
        let hs: Vec<_> = (0..3u32)
            .map(|i| {
                let o = order.clone();
                spindle::spawn(move || {
                    for _ in 0..4 {
                        o.lock().unwrap().push(i);
                        spindle::yield_now();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    assert_eq!(
        *order.lock().unwrap(),
        vec![0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]
    );
}

#[spindle::test(cores = 1)]
fn park_tokens_follow_std_semantics() {
    let me = spindle::current();
    // unpark before park: park returns at once.
    me.unpark();
    spindle::park();
    // Tokens do not accumulate: two unparks, one park consumes, the next times out.
    me.unpark();
    me.unpark();
    spindle::park();
    let t = Instant::now();
    spindle::park_timeout(Duration::from_millis(30));
    assert!(
        t.elapsed() >= Duration::from_millis(29),
        "second park returned early"
    );
}

#[spindle::test(cores = 1)]
fn unpark_resumes_a_parked_thread() {
    let stage = Arc::new(AtomicUsize::new(0));
    let s = stage.clone();
    let h = spindle::spawn(move || {
        s.store(1, Ordering::SeqCst);
        spindle::park();
        s.store(2, Ordering::SeqCst);
    });
    while stage.load(Ordering::SeqCst) != 1 {
        spindle::yield_now();
    }
    for _ in 0..5 {
        spindle::yield_now();
    }
    assert_eq!(
        stage.load(Ordering::SeqCst),
        1,
        "parked thread ran without a token"
    );
    h.thread().unpark();
    h.join().unwrap();
    assert_eq!(stage.load(Ordering::SeqCst), 2);
}

#[spindle::test(cores = 1)]
fn sleeping_threads_let_others_run_and_sleep_long_enough() {
    let counter = Arc::new(AtomicUsize::new(0));
    let c = counter.clone();
    let sleeper = spindle::spawn(move || {
        let t = Instant::now();
        spindle::sleep(Duration::from_millis(40));
        (t.elapsed(), c.load(Ordering::SeqCst))
    });
    let c = counter.clone();
    let worker = spindle::spawn(move || {
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(20) {
            c.fetch_add(1, Ordering::SeqCst);
            spindle::yield_now();
        }
    });
    let (slept, seen) = sleeper.join().unwrap();
    worker.join().unwrap();
    assert!(slept >= Duration::from_millis(40), "slept {slept:?}");
    assert!(seen > 0, "no other thread ran while one slept");
}

#[test]
fn sleepers_wake_in_deadline_order() {
    let order = log();
    on_one_core(|| {
        let hs: Vec<_> = [30u64, 10, 20]
            .into_iter()
            .map(|ms| {
                let o = order.clone();
                spindle::spawn(move || {
                    spindle::sleep(Duration::from_millis(ms));
                    o.lock().unwrap().push(ms as u32);
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    assert_eq!(*order.lock().unwrap(), vec![10, 20, 30]);
}

#[spindle::test(cores = 1)]
fn unpark_from_a_foreign_os_thread_wakes_an_idle_core() {
    for _ in 0..50 {
        let h = spindle::spawn(|| {
            spindle::park();
            7
        });
        spindle::yield_now(); // it parks
        let t = h.thread().clone();
        let os = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_micros(200));
            t.unpark();
        });
        // The core goes idle (main blocks in join, the child is parked) until the
        // foreign unpark arrives through the injection queue.
        assert_eq!(h.join().unwrap(), 7);
        os.join().unwrap();
    }
}

#[test]
fn park_and_sleep_fall_back_to_std_outside_a_runtime() {
    let t = Instant::now();
    spindle::sleep(Duration::from_millis(5));
    assert!(t.elapsed() >= Duration::from_millis(5));
    spindle::yield_now();
    std::thread::current().unpark();
    spindle::park(); // token from the line above
    spindle::park_timeout(Duration::from_millis(1));
}

#[test]
fn mxcsr_and_x87_control_are_per_thread() {
    fn mxcsr() -> u32 {
        let mut v = 0u32;
        // SAFETY: stmxcsr writes 4 bytes to a local.
        unsafe { std::arch::asm!("stmxcsr [{}]", in(reg) &mut v, options(nostack)) };
        v
    }
    fn set_mxcsr(v: u32) {
        // SAFETY: loads a valid MXCSR value (only rounding bits changed).
        unsafe { std::arch::asm!("ldmxcsr [{}]", in(reg) &v, options(nostack)) };
    }
    fn fpucw() -> u16 {
        let mut v = 0u16;
        // SAFETY: fnstcw writes 2 bytes to a local.
        unsafe { std::arch::asm!("fnstcw [{}]", in(reg) &mut v, options(nostack)) };
        v
    }
    fn set_fpucw(v: u16) {
        // SAFETY: loads a valid x87 control word.
        unsafe { std::arch::asm!("fldcw [{}]", in(reg) &v, options(nostack)) };
    }
    on_one_core(|| {
        let base = (mxcsr(), fpucw());
        let a = spindle::spawn(|| {
            set_mxcsr((mxcsr() & !0x6000) | 0x6000); // round toward zero
            set_fpucw(fpucw() & !0x0300); // 24-bit precision
            let mine = (mxcsr(), fpucw());
            for _ in 0..100 {
                spindle::yield_now();
                assert_eq!(
                    (mxcsr(), fpucw()),
                    mine,
                    "control state lost across a switch"
                );
            }
            mine
        });
        let b = spindle::spawn(move || {
            for _ in 0..100 {
                spindle::yield_now();
                assert_eq!(
                    mxcsr() & 0x6000,
                    0,
                    "another thread's rounding mode leaked in"
                );
            }
        });
        let mine = a.join().unwrap();
        b.join().unwrap();
        assert_ne!(mine, base);
        assert_eq!((mxcsr(), fpucw()), base, "main's control state changed");
    });
}

#[test]
fn callee_saved_registers_survive_switches() {
    // Values kept live across yields in many locals force the compiler to keep some in
    // callee-saved registers; any corruption shows up in the sums.
    on_one_core(|| {
        let hs: Vec<_> = (0..4u64)
            .map(|k| {
                spindle::spawn(move || {
                    let (mut a, mut b, mut c, mut d, mut e, mut f) =
                        (k, k * 2, k * 3, k * 5, k * 7, k * 11);
                    for i in 0..1000u64 {
                        spindle::yield_now();
                        a = a.wrapping_add(i);
                        b = b.wrapping_mul(3).wrapping_add(a);
                        c ^= b.rotate_left(7);
                        d = d.wrapping_add(c);
                        e = e.wrapping_sub(d);
                        f = f.wrapping_add(e ^ a);
                    }
                    [a, b, c, d, e, f]
                })
            })
            .collect();
        for (k, h) in hs.into_iter().enumerate() {
            let k = k as u64;
            let (mut a, mut b, mut c, mut d, mut e, mut f) =
                (k, k * 2, k * 3, k * 5, k * 7, k * 11);
            for i in 0..1000u64 {
                a = a.wrapping_add(i);
                b = b.wrapping_mul(3).wrapping_add(a);
                c ^= b.rotate_left(7);
                d = d.wrapping_add(c);
                e = e.wrapping_sub(d);
                f = f.wrapping_add(e ^ a);
            }
            assert_eq!(h.join().unwrap(), [a, b, c, d, e, f]);
        }
    });
}
