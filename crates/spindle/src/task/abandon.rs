//! The unwind a shutdown forces on the threads it abandons.
//!
//! When a runtime is dropped, its threads that are still alive will never finish.
//! Rather than reclaim their stacks with whatever they hold (heap memory, descriptors,
//! locks), the shutdown unwinds each from its blocking point, so its destructors run:
//!
//! - a thread that blocks after the shutdown began finds `F_ABANDON` in its slot word
//!   (set by the shutdown's scan) and unwinds instead of sleeping;
//! - a thread already asleep is woken by the scan, which marks it in its TCB
//!   (`Tcb::abandon`) before handing it back to its core; it unwinds as it resumes.
//!
//! The unwind carries [`Abandoned`] and runs no panic hook. A thread that is
//! unwinding already (a panic, or this very unwind, in a destructor that blocks)
//! sleeps as usual instead: a second unwind would abort the process. `thread_entry`
//! turns the payload into the `ABANDONED` error its `join` returns.

/// The message of the error `join` returns for a thread abandoned at shutdown.
pub const ABANDONED: &str = "spindle: the runtime shut down before this thread finished";

/// The error payload `join` returns for a thread abandoned at shutdown.
pub(crate) fn abandoned_payload() -> Box<dyn std::any::Any + Send> {
    Box::new(ABANDONED)
}

/// The payload of the unwind with which a shutdown abandons a thread that was still
/// blocked (see [`Runtime`](crate::Runtime)): not a panic, no panic hook runs for
/// it, and `join` reports the thread with the [`ABANDONED`](crate::ABANDONED) error.
///
/// Code that catches unwinds (`catch_unwind`) can tell it apart with
/// `payload.is::<spindle::Abandoned>()` and should let it go on
/// (`std::panic::resume_unwind`); a thread that swallows it is unwound again at its
/// next blocking point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abandoned;

/// Unwinds the running thread with [`Abandoned`].
#[cold]
#[inline(never)]
pub(crate) fn unwind() -> ! {
    std::panic::resume_unwind(Box::new(Abandoned))
}
