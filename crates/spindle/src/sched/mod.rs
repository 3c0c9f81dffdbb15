//! Per-core scheduling.
//!
//! A core is one OS thread running one scheduler. It owns a run queue, a timer heap,
//! a stack pool and a slot free list, all touched by that OS thread alone, plus an
//! injection queue and a doorbell through which other OS threads hand it threads.
//!
//! ## Switching (xv6's scheme, with direct switches)
//!
//! `schedule(me, after)` runs on the yielding thread's stack: it polls (injection
//! queue, timers), picks the next thread and switches to it directly — "enter in A,
//! return in B". Only when nothing is runnable does it switch to the core's scheduler
//! context (the OS thread's own stack), which idles. What happens to the thread that
//! switched out (`after`: requeue it, leave it asleep, free its stack) is done by
//! whoever runs next, right after the switch, in `finish_switch`: a thread is never
//! put back on a run queue, and its stack is never freed, while it is still running
//! on that stack.
//!
//! Every context that is switched *into* calls `finish_switch` first: `schedule`
//! after its `switch` returns, a new thread at its entry, and the scheduler loop.

//!
//! ## Files
//!
//! - `core`: the `Core` object, its shared fields and its core-local state (private to
//!   this module: reached through a `CoreCtx` token, `ctx`);
//! - `set`: the cores of a runtime, their exchange slots and types; `placement`: where
//!   a thread goes;
//! - `switch`: `schedule`, `finish_switch`, the scheduler loop's `run_next`;
//!   `handoff`: exchange slots, injection, waking; `steal`: idle cores ask busy ones
//!   for threads; `timers`; `idle`; `evacuate`;
//!   `lazy`: the first run of a lazily created thread; `retire`: the end of a thread;
//! - `wait`: blocking the running thread (park, sleep, the internal channel);
//!   `guard`: the preempt count and the one place a pending reschedule is honoured;
//!   `clock`: what a core publishes for the tick; `requests`: what other threads ask
//!   a core to do (rebalance, reschedule); `role`: what a core does besides running
//!   threads (the service core serves system calls);
//! - the protocols: `exchange`, `doorbell`, `lifecycle`, `runq`.

pub(crate) mod carrier;
pub(crate) mod clock;
pub(crate) mod core;
pub(crate) mod ctx;
pub(crate) mod doorbell;
pub(crate) mod evacuate;
pub(crate) mod exchange;
pub(crate) mod guard;
pub(crate) mod handoff;
pub(crate) mod idle;
pub(crate) mod lazy;
pub(crate) mod lifecycle;
pub(crate) mod placement;
pub(crate) mod requests;
pub(crate) mod retire;
pub(crate) mod role;
pub(crate) mod runq;
pub(crate) mod set;
pub(crate) mod steal;
pub(crate) mod switch;
pub(crate) mod timers;
pub(crate) mod trace;
pub(crate) mod wait;

pub(crate) use self::core::Core;
pub use self::core::CoreStats;
pub(crate) use crate::limits::{MAX_CORES, MAX_TYPES};
pub(crate) use ctx::CoreCtx;
pub(crate) use lifecycle::CoreState;
pub(crate) use set::{CoreSet, TypeInfo};

/// The level a core publishes while it runs no thread: less urgent than any thread.
pub(crate) const IDLE_LEVEL: u8 = u8::MAX;

/// What the next context does with the thread that switched out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum After {
    /// It yielded: put it at the back of its run-queue level.
    Requeue,
    /// It blocked: leave it; a waker will make it runnable.
    Sleep,
    /// It exited: return its stack block to the pool.
    Exit,
    /// It moves to the core with this id: hand it over through the exchange slot.
    Migrate(usize),
}
