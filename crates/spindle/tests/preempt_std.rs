//! Asynchronous preemption and the standard library: a preemptible thread is never
//! stopped while it runs std code that holds a lock of its OS thread (stdout's and
//! stderr's reentrant locks, the environment lock, the allocator's), a SIGURG handler
//! the program installed first keeps getting the signals that are not spindle's, and
//! a handler installed later, which silences preemption, is reported.
//!
//! Each case runs in a child process (this binary re-run), so that stdout and stderr
//! are real descriptors and signal handlers do not leak into other tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use spindle::{Builder, Runtime};

mod common;

/// Four preemptible threads on one core, each running `work` in a loop for `ms`;
/// returns how many of them ended with a panic, and the core's async preemptions.
fn four_on_one_core(ms: u64, work: fn(u64)) -> (usize, u64) {
    let rt = Runtime::builder()
        .cores(1)
        .preemptible(true)
        .time_slice(Duration::from_millis(1))
        .build()
        .unwrap();
    rt.block_on(|| {
        let hs: Vec<_> = (0..4u64)
            .map(|t| {
                Builder::new()
                    .spawn(move || {
                        let end = Instant::now() + Duration::from_millis(ms);
                        let mut i = 0;
                        while Instant::now() < end {
                            work(t * 1_000_000 + i);
                            i += 1;
                        }
                        spindle::core_stats().unwrap().async_preemptions
                    })
                    .unwrap()
            })
            .collect();
        let mut panics = 0;
        let mut preemptions = 0;
        for h in hs {
            match h.join() {
                Ok(p) => preemptions = preemptions.max(p),
                Err(_) => panics += 1,
            }
        }
        (panics, preemptions)
    })
}

/// User code outside the standard library: where preemption may happen.
fn busy(seed: u64) -> u64 {
    let mut x = seed;
    for _ in 0..20_000 {
        x = std::hint::black_box(x.wrapping_mul(2862933555777941757).wrapping_add(3));
    }
    x
}

/// A value whose `Display` runs user code while `println!` holds stdout's lock.
struct Slow(u64);
impl std::fmt::Display for Slow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut x = self.0;
        for _ in 0..20_000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        write!(f, "{x}")
    }
}

static USER_SIGURG: AtomicUsize = AtomicUsize::new(0);

extern "C" fn user_handler(_: libc::c_int) {
    USER_SIGURG.fetch_add(1, Ordering::SeqCst);
}

fn install_user_handler() {
    // SAFETY: a zeroed sigaction with a plain handler that only bumps an atomic.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = user_handler as *const () as usize;
        libc::sigemptyset(&mut act.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGURG, &act, std::ptr::null_mut()), 0);
    }
}

/// The child side of the tests below.
#[test]
fn child_entry() {
    let Some(case) = common::child_case() else {
        return;
    };
    let (panics, preemptions) = match case.as_str() {
        "println" => four_on_one_core(400, |i| {
            busy(i);
            println!("line {i} {}", Slow(i))
        }),
        "eprintln" => four_on_one_core(400, |i| {
            busy(i);
            eprintln!("line {i} {}", Slow(i))
        }),
        "env" => four_on_one_core(400, |i| {
            let key = format!("SPINDLE_TEST_VAR_{}", i % 7);
            // The environment is only touched through std's lock, which this exercises.
            // SAFETY: nothing in this child process reads the environment without std.
            unsafe { std::env::set_var(&key, i.to_string()) };
            std::hint::black_box(std::env::var(&key).ok());
        }),
        "alloc" => four_on_one_core(400, |i| {
            let v: Vec<u64> = (0..(i % 64) + 1).collect();
            let s: String = v
                .iter()
                .map(|x| char::from(b'a' + (x % 26) as u8))
                .collect();
            std::hint::black_box((v, s));
        }),
        "chain" => {
            install_user_handler();
            let r = four_on_one_core(300, |i| {
                std::hint::black_box(i);
            });
            // Signals that are not spindle's still reach the program's handler.
            let before = USER_SIGURG.load(Ordering::SeqCst);
            for _ in 0..5 {
                // SAFETY: raising a signal in our own process.
                unsafe { libc::raise(libc::SIGURG) };
            }
            let got = USER_SIGURG.load(Ordering::SeqCst) - before;
            println!("user handler got {got} of 5, saw {before} of spindle's");
            r
        }
        "replaced" => {
            let rt = Runtime::builder()
                .cores(1)
                .preemptible(true)
                .build()
                .unwrap();
            install_user_handler();
            let spun = Arc::new(AtomicU64::new(0));
            rt.block_on({
                let spun = spun.clone();
                move || {
                    let h = spindle::spawn(move || {
                        let end = Instant::now() + Duration::from_millis(300);
                        while Instant::now() < end {
                            spun.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                    h.join().unwrap();
                }
            });
            (0, 0)
        }
        _ => return,
    };
    println!("panics {panics} preemptions {preemptions}");
}

fn run(case: &str) -> common::ChildOutput {
    let c = common::run_child("child_entry", case, |_| {});
    assert_eq!(c.code, Some(0), "{case}: {c:?}");
    c
}

/// Preemptions happened (so the test exercised something) and no thread panicked.
fn assert_clean(case: &str) {
    let c = run(case);
    // The harness may print "test child_entry ... " before it on the same line.
    let line = c
        .stdout
        .lines()
        .find_map(|l| l.find("panics ").map(|at| l[at..].to_owned()))
        .unwrap_or_else(|| panic!("{case}: no result line: {c:?}"));
    let mut it = line.split_whitespace().skip(1);
    let panics: usize = it.next().unwrap().parse().unwrap();
    let preemptions: u64 = it.nth(1).unwrap().parse().unwrap();
    assert_eq!(panics, 0, "{case}: threads panicked: {c:?}");
    assert!(
        !c.stderr.contains("already borrowed"),
        "{case}: {}",
        c.stderr
    );
    assert!(
        preemptions > 0,
        "{case}: never preempted, nothing tested: {line}"
    );
    // A thread preempted inside `println!` (in the `Display` it calls, with stdout's
    // reentrant lock held) lets the next thread of its core into the same lock: their
    // pieces interleave. Every line must be whole.
    for out in [&c.stdout, &c.stderr] {
        for l in out.lines().filter(|l| l.contains("line ")) {
            let at = l.find("line ").unwrap();
            let words: Vec<&str> = l[at..].split_whitespace().collect();
            let whole = words.len() == 3 && words[1..].iter().all(|w| w.parse::<u64>().is_ok());
            assert!(whole, "{case}: two threads wrote into one line: {l:?}");
        }
    }
}

#[test]
fn println_in_preemptible_threads() {
    assert_clean("println");
}

#[test]
fn eprintln_in_preemptible_threads() {
    assert_clean("eprintln");
}

#[test]
fn set_var_in_preemptible_threads() {
    assert_clean("env");
}

#[test]
fn allocation_in_preemptible_threads() {
    assert_clean("alloc");
}

#[test]
fn an_earlier_sigurg_handler_is_chained() {
    let c = run("chain");
    assert!(
        c.stdout
            .contains("user handler got 5 of 5, saw 0 of spindle's"),
        "{c:?}"
    );
}

#[test]
fn a_later_sigurg_handler_is_reported_once() {
    let c = run("replaced");
    assert_eq!(
        c.stderr.matches("SIGURG handler was replaced").count(),
        1,
        "{c:?}"
    );
}
