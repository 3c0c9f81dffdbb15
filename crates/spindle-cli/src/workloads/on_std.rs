//! The OS-thread workloads (`std::thread`). The two-thread ones pin both threads to
//! one CPU ([`crate::affinity::bench_cpu`]) so that they compare with single-core
//! runtimes: a handoff is then a real switch on that CPU.

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Barrier, OnceLock};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use super::{half, pingpong, scale};
use crate::affinity;

/// Runs `a` and `b` on two new OS threads pinned to the bench CPU, each given the
/// other's handle once both are pinned; returns what `a` returns. Records whether
/// pinning worked with [`affinity::record_pinned`].
fn pinned_pair<A, B>(a: A, b: B) -> Duration
where
    A: FnOnce(&Thread) -> Duration + Send,
    B: FnOnce(&Thread) + Send,
{
    let cpu = affinity::bench_cpu();
    let handles: [OnceLock<Thread>; 2] = [OnceLock::new(), OnceLock::new()];
    let ready = Barrier::new(2);
    let start = |me: usize| {
        let ok = cpu.is_some_and(affinity::pin_current);
        affinity::record_pinned(ok);
        handles[me].set(thread::current()).expect("handle set once");
        ready.wait();
        handles[1 - me].get().expect("peer handle set").clone()
    };
    thread::scope(|s| {
        let tb = s.spawn(|| b(&start(1)));
        let ta = s.spawn(|| a(&start(0)));
        let d = ta.join().expect("thread A panicked");
        tb.join().expect("thread B panicked");
        d
    })
}

/// `futex(FUTEX_WAIT_PRIVATE)`: sleeps while `*word == expected` (or returns at once).
fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: `word` is a live aligned u32 for the call; null timeout = none; only read.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            std::ptr::null::<libc::timespec>(),
        );
    }
}

/// `futex(FUTEX_WAKE_PRIVATE)`: wakes one waiter on `word`.
fn futex_wake(word: &AtomicU32) {
    // SAFETY: `word` is a live aligned u32; FUTEX_WAKE only hashes its address.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        );
    }
}

/// `n` OS thread handoffs: two threads pinned to one CPU pass a token through a
/// futex word; each waits in the kernel until the token is its own.
pub fn switch(n: u64) -> Duration {
    let k = half(n);
    // 0: A's turn, 1: B's turn.
    let word = AtomicU32::new(0);
    let pass = |mine: u32| {
        while word.load(Ordering::Acquire) != mine {
            futex_wait(&word, 1 - mine);
        }
        word.store(1 - mine, Ordering::Release);
        futex_wake(&word);
    };
    let d = pinned_pair(
        |_| {
            let t0 = Instant::now();
            for _ in 0..k {
                pass(0);
            }
            // Wait for B's last handoff.
            while word.load(Ordering::Acquire) != 0 {
                futex_wait(&word, 1);
            }
            t0.elapsed()
        },
        |_| {
            for _ in 0..k {
                pass(1);
            }
        },
    );
    scale(d, 2 * k, n)
}

/// `n` times: `std::thread::spawn` an empty thread and join it.
pub fn spawn_join(n: u64) -> Duration {
    let t0 = Instant::now();
    for _ in 0..n {
        thread::spawn(|| ()).join().expect("empty thread panicked");
    }
    t0.elapsed()
}

/// `n` park/unpark round trips between two OS threads pinned to one CPU.
pub fn park_unpark(n: u64) -> Duration {
    let turn = AtomicU64::new(0);
    pinned_pair(
        |b| {
            let t0 = Instant::now();
            pingpong::side_a(&turn, n, || b.unpark(), thread::park);
            t0.elapsed()
        },
        |a| pingpong::side_b(&turn, n, || a.unpark(), thread::park),
    )
}

/// Calls `std::thread::current()` `n` times on the calling thread.
pub fn current(n: u64) -> Duration {
    let t0 = Instant::now();
    for _ in 0..n {
        black_box(thread::current());
    }
    t0.elapsed()
}
