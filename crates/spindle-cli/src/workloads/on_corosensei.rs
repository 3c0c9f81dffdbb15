//! Bare corosensei coroutines: no scheduler, no run queue, just the switch. They bound
//! from below what a stackful runtime can do.

use std::hint::black_box;
use std::time::{Duration, Instant};

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, Yielder};

use super::{half, scale};

/// Stack size of the coroutines: spindle's default.
const STACK_SIZE: usize = spindle::DEFAULT_STACK_SIZE;

/// `n` switches: a coroutine suspends `n / 2` times (rounded up) and is resumed each
/// time; one resume + suspend pair counts as two switches.
pub fn switch(n: u64) -> Duration {
    let k = half(n);
    let stack = DefaultStack::new(STACK_SIZE).expect("cannot allocate a coroutine stack");
    let mut co = Coroutine::with_stack(stack, move |y: &Yielder<(), ()>, ()| {
        for _ in 0..k {
            y.suspend(());
        }
    });
    let t0 = Instant::now();
    // k suspends, then the return: k + 1 resume/return pairs.
    while co.resume(()).as_yield().is_some() {}
    let d = t0.elapsed();
    scale(d, 2 * (k + 1), n)
}

/// `n` times: creates a coroutine on one reused stack, runs it to completion and
/// takes the stack back. The stack is allocated once, outside the timed part.
pub fn spawn_join(n: u64) -> Duration {
    let mut stack = DefaultStack::new(STACK_SIZE).expect("cannot allocate a coroutine stack");
    let t0 = Instant::now();
    for _ in 0..n {
        let mut co = Coroutine::with_stack(stack, |_: &Yielder<(), ()>, ()| black_box(()));
        let done = co.resume(()).as_return().is_some();
        debug_assert!(done, "an empty coroutine returns at its first resume");
        stack = co.into_stack();
    }
    t0.elapsed()
}
