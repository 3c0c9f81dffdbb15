//! Blocking the running thread: `yield_now`, `park`, `sleep`, and the internal channel
//! the runtime's own waits use (`block_internal`, woken through a `Waiter`).

use std::time::{Duration, Instant};

use super::guard::PreemptGuard;
use super::{After, CoreCtx};
use crate::task::current::current_tcb;
use crate::task::dump::WaitReason;
use crate::task::id::ThreadId;
use crate::task::slot::{Block, Channel};
use crate::task::tcb::{State, Tcb};

/// Lets the core run other threads of the same or a more urgent priority; returns at
/// once if there are none. On an OS thread, calls `std::thread::yield_now`.
pub fn yield_now() {
    let Some(me) = current_tcb() else {
        return std::thread::yield_now();
    };
    // SAFETY: `me` is the running thread on its core, on its own stack.
    let _g = unsafe { PreemptGuard::of(me) };
    // SAFETY: as above.
    unsafe {
        (*me).set_state(State::Runnable);
        crate::sched::Core::of(me).schedule(me, After::Requeue);
    }
}

/// Runs a more urgent thread that was just made runnable on this core, if `level` is
/// more urgent than the caller's.
#[inline]
pub(crate) fn preempt_for(level: u8) {
    if let Some(me) = current_tcb() {
        // SAFETY: `me` is the running thread.
        unsafe { super::guard::maybe_yield(me, level < (*me).level) };
    }
}

/// Sleeps the running thread on `chan` until woken (returns at once if a token is
/// pending), waiting for `reason` (what the thread dump shows). A thread its runtime
/// abandons at shutdown unwinds from here instead (`abandon`), and so does a cancelled
/// thread (`cancel`: before it sleeps, or as it resumes if its canceller woke it),
/// unless it is unwinding already.
pub(crate) fn block(me: *mut Tcb, chan: Channel, reason: WaitReason) {
    // SAFETY: `me` is the running thread (the caller's own), on its own stack.
    let g = unsafe { PreemptGuard::of(me) };
    // SAFETY: as above.
    let slot = unsafe { (*me).slot() };
    // SAFETY: `me` runs on its core, which is alive while it runs.
    let tick = unsafe { crate::sched::Core::of(me) }
        .clock
        .now
        .load(std::sync::atomic::Ordering::Relaxed);
    slot.info.note_wait(reason, tick);
    let may_unwind = !std::thread::panicking();
    match slot.word.block(chan, may_unwind) {
        Block::MustSleep => {
            // SAFETY: we run on `me`'s stack and set the state schedule expects; after it returns we run again and our TCB is ours.
            let (abandoned, cancelled) = unsafe {
                (*me).set_state(State::Sleeping);
                crate::sched::Core::of(me).schedule(me, After::Sleep);
                ((*me).abandon.replace(false), (*me).cancel.replace(false))
            };
            if abandoned && may_unwind {
                drop(g);
                crate::task::abandon::unwind();
            }
            if cancelled && may_unwind {
                drop(g);
                crate::task::cancel::unwind();
            }
        }
        Block::TokenTaken => {}
        Block::Abandoned => {
            drop(g);
            crate::task::abandon::unwind();
        }
        Block::Cancelled => {
            drop(g);
            crate::task::cancel::unwind();
        }
    }
}

/// A spindle thread that may block in [`block_internal`], as its waker names it.
///
/// Used by the runtime's own blocking types (`sync`, `join`): they block on the
/// thread's internal channel, so they never consume or leave a user's park token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Waiter(ThreadId);

impl Waiter {
    /// The running spindle thread, or `None` on an OS thread.
    #[inline]
    pub(crate) fn current() -> Option<Waiter> {
        // SAFETY: the running thread's TCB is valid while it runs.
        current_tcb().map(|t| unsafe { Waiter((*t).id()) })
    }

    /// The waiter of thread `id` (as kept by the system-call slots).
    pub(crate) fn of(id: ThreadId) -> Waiter {
        Waiter(id)
    }

    /// The thread it wakes.
    pub(crate) fn id(self) -> ThreadId {
        self.0
    }

    /// Wakes the waiter if it is blocked in [`block_internal`]; otherwise leaves a
    /// token so that its next `block_internal` returns at once. Does nothing if the
    /// thread has finished. Callable from any context (spindle thread or OS thread).
    pub(crate) fn wake(self) {
        super::handoff::wake(self.0, Channel::Internal);
    }
}

/// Blocks the running spindle thread on its internal channel until a
/// [`Waiter::wake`], or until `deadline`. May return spuriously (a stale token or
/// timer): callers re-check their condition in a loop.
///
/// # Panics
///
/// On an OS thread (callers block OS threads themselves).
pub(crate) fn block_internal(deadline: Option<Instant>, reason: WaitReason) {
    let me = current_tcb().expect("block_internal called on an OS thread");
    // SAFETY: `me` is the running thread.
    let _g = unsafe { PreemptGuard::of(me) };
    if let Some(d) = deadline {
        if d <= Instant::now() {
            return;
        }
        // SAFETY: `me` is the running thread.
        unsafe { CoreCtx::of_running(me).add_timer(d, (*me).id(), Channel::Internal) };
    }
    block(me, Channel::Internal, reason);
}

/// Blocks the running thread until its park token is available, then consumes it.
/// May also return spuriously, like `std::thread::park`. On an OS thread, calls
/// `std::thread::park`.
///
/// # Examples
///
/// ```
/// spindle::run(|| {
///     let main = spindle::current();
///     let h = spindle::spawn(move || main.unpark());
///     spindle::park(); // returns once the token is there
///     h.join().unwrap();
/// });
/// ```
pub fn park() {
    match current_tcb() {
        Some(me) => block(me, Channel::Park, WaitReason::Park),
        None => std::thread::park(),
    }
}

/// Like [`park`], but returns after `dur` at the latest.
pub fn park_timeout(dur: Duration) {
    let Some(me) = current_tcb() else {
        return std::thread::park_timeout(dur);
    };
    // SAFETY: `me` is the running thread.
    let _g = unsafe { PreemptGuard::of(me) };
    if let Some(deadline) = Instant::now().checked_add(dur) {
        // SAFETY: `me` is the running thread.
        unsafe { CoreCtx::of_running(me).add_timer(deadline, (*me).id(), Channel::Park) };
    }
    block(me, Channel::Park, WaitReason::Park);
}

/// Puts the running thread to sleep for at least `dur`; its core runs other threads
/// meanwhile. On an OS thread, calls `std::thread::sleep`.
pub fn sleep(dur: Duration) {
    let Some(me) = current_tcb() else {
        return std::thread::sleep(dur);
    };
    // SAFETY: `me` is the running thread.
    let _g = unsafe { PreemptGuard::of(me) };
    let Some(deadline) = Instant::now().checked_add(dur) else {
        // Beyond the clock's range: sleep for good, as a very long sleep would.
        loop {
            block(
                me,
                Channel::Internal,
                WaitReason::Sleep {
                    until_ms: u64::MAX >> 8,
                },
            );
        }
    };
    let until_ms = crate::os::coarse_ms() + u64::try_from(dur.as_millis()).unwrap_or(u64::MAX >> 9);
    while Instant::now() < deadline {
        // SAFETY: `me` is the running thread.
        unsafe { CoreCtx::of_running(me).add_timer(deadline, (*me).id(), Channel::Internal) };
        block(me, Channel::Internal, WaitReason::Sleep { until_ms });
    }
}

/// A preemption point: if the core was asked to reschedule (a more urgent thread was
/// sent to it) or has injected work waiting, lets the scheduler run; else returns at
/// once (a few loads). Long computations call it in their loops so that urgent
/// threads are not kept waiting. On an OS thread it does nothing.
pub fn preempt_point() {
    if let Some(me) = current_tcb() {
        // SAFETY: the running thread's core is alive while it runs; `me` is the running thread.
        unsafe {
            let injected = crate::sched::Core::of(me).doorbell.pending();
            super::guard::maybe_yield(me, injected);
        }
    }
}
