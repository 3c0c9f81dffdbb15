//! The OS-thread workloads (`std::thread`). The two-thread ones of the single-core
//! benches pin both threads to one CPU ([`crate::affinity::bench_cpu`]) so that they
//! compare with single-core runtimes: a handoff is then a real switch on that CPU. The
//! cross-core ones pin their two threads to two CPUs
//! ([`crate::affinity::cross_cpus`]).

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::{cross_pair, half, pingpong, pinned_pair, scale};
use crate::affinity::HopSampler;

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

/// `n` round trips between two OS threads pinned to one CPU: A sends on two
/// `crossbeam_channel`s in turn, B takes each in a `select!` over both and answers
/// on a third.
pub fn select_pingpong(n: u64) -> Duration {
    use crossbeam_channel::{select, unbounded};
    let (x_tx, x_rx) = unbounded::<u64>();
    let (y_tx, y_rx) = unbounded::<u64>();
    let (z_tx, z_rx) = unbounded::<u64>();
    pinned_pair(
        |_| {
            let t0 = Instant::now();
            for i in 0..n {
                if i % 2 == 1 {
                    y_tx.send(i).expect("B left");
                } else {
                    x_tx.send(i).expect("B left");
                }
                z_rx.recv().expect("B left");
            }
            t0.elapsed()
        },
        |_| {
            for _ in 0..n {
                let v = select! {
                    recv(x_rx) -> m => m.expect("A left"),
                    recv(y_rx) -> m => m.expect("A left"),
                };
                z_tx.send(v).expect("A left");
            }
        },
    )
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

/// `n` round trips of a message between two OS threads pinned to two CPUs, through
/// two `std::sync::mpsc` channels: A sends and waits for the answer, B answers.
pub fn cross_core_pingpong(n: u64) -> Duration {
    let (to_b, from_a) = mpsc::channel::<u64>();
    let (to_a, from_b) = mpsc::channel::<u64>();
    cross_pair(
        move |_| {
            let t0 = Instant::now();
            for i in 0..n {
                to_b.send(i).expect("B hung up");
                from_b.recv().expect("B hung up");
            }
            t0.elapsed()
        },
        move |_| {
            for i in from_a.iter() {
                to_a.send(i).expect("A hung up");
            }
        },
    )
    .0
}

/// `n` park/unpark round trips between two OS threads pinned to two CPUs.
pub fn cross_core_park(n: u64) -> Duration {
    let turn = AtomicU64::new(0);
    cross_pair(
        |b| {
            let t0 = Instant::now();
            pingpong::side_a(&turn, n, || b.unpark(), thread::park);
            t0.elapsed()
        },
        |a| pingpong::side_b(&turn, n, || a.unpark(), thread::park),
    )
    .0
}

/// `n` times, one after the other: `std::thread::spawn` from the calling thread
/// (unpinned: a pinned spawner's child would inherit its CPU) a thread whose first
/// action is to read the clock, and join it. Returns the sum of the times from just
/// before `spawn` to that reading; every spawn is sampled for whether the new thread
/// started on another CPU than the spawner's.
pub fn remote_spawn(n: u64) -> Duration {
    let mut sampler = HopSampler::new();
    let mut total = Duration::ZERO;
    for _ in 0..n {
        let from = HopSampler::cpu_stamp();
        let t0 = Instant::now();
        let (t1, crossed) = thread::spawn(move || {
            let t1 = Instant::now();
            (t1, HopSampler::cpu_stamp() != from)
        })
        .join()
        .expect("spawned thread panicked");
        total += t1 - t0;
        sampler.count(crossed);
    }
    total
}
