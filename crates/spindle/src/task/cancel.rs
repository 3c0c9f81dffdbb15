//! The unwind a cancellation forces on a thread ([`Cancelled`]).
//!
//! `Thread::cancel` sets `F_CANCEL` in the thread's slot word (a CAS, only while the
//! slot holds that thread alive and not done), then tries to win the wake of each of
//! its wait channels, as a waker does:
//!
//! - a thread that blocks later finds `F_CANCEL` in its slot word and unwinds instead
//!   of sleeping (`SlotWord::block`);
//! - a thread asleep now is woken by the canceller, if the canceller wins its wake:
//!   the canceller marks its TCB (`Tcb::cancel`) before it hands it to its core, and
//!   the thread unwinds as it resumes. If another waker won that wake, the thread
//!   resumes as woken and unwinds at its next block.
//!
//! The flag stays set: a thread that catches [`Cancelled`] and blocks again unwinds
//! again. A thread that is unwinding already (a panic, or this very unwind, in a
//! destructor that blocks) sleeps as usual, since a second unwind would abort the
//! process. The unwinds leave each wait as the abandon of a shutdown does: the
//! `sync` types' `LeaveOnUnwind`, an offloaded call's wait for its result, a ring
//! call's cancellation.

/// The payload of the unwind with which a cancelled thread leaves its blocking point
/// (see [`JoinHandle::cancel`](crate::JoinHandle::cancel)). It is not a panic: no
/// panic hook reports it, and [`join`](crate::JoinHandle::join) returns it as the
/// `Err` payload, which downcasts to `Cancelled`.
///
/// Code that catches unwinds (`catch_unwind`) can tell it apart with
/// `payload.is::<spindle::Cancelled>()` and should let it go on
/// (`std::panic::resume_unwind`); a thread that swallows it unwinds again at its next
/// blocking point.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// spindle::run(|| {
///     let h = spindle::spawn(|| spindle::sleep(Duration::from_secs(3600)));
///     h.cancel();
///     let payload = h.join().unwrap_err();
///     assert!(payload.is::<spindle::Cancelled>());
/// });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the thread was cancelled")
    }
}

impl std::error::Error for Cancelled {}

/// Unwinds the running thread with [`Cancelled`] (no panic hook runs).
#[cold]
#[inline(never)]
pub(crate) fn unwind() -> ! {
    std::panic::resume_unwind(Box::new(Cancelled))
}
