//! The preempt count, and the one maybe-yield path ([`maybe_yield`]): where a pending
//! reschedule request, or a more urgent thread made runnable here, makes the running
//! thread yield.

use std::sync::atomic::compiler_fence;

use crate::loom::Ordering;
use crate::task::current::current_tcb;
use crate::task::tcb::Tcb;

/// Raises the running thread's preempt count for its lifetime: the runtime's critical
/// sections (core-local state, internal locks) are never interrupted by asynchronous
/// preemption. When the count drops back to zero, a pending reschedule request is
/// honoured (one relaxed load). Does nothing on an OS thread.
pub(crate) struct PreemptGuard {
    tcb: *mut Tcb,
}

impl PreemptGuard {
    /// A guard for the running thread (none on an OS thread).
    #[inline(always)]
    pub(crate) fn new() -> PreemptGuard {
        match current_tcb() {
            // SAFETY: `t` is the running thread.
            Some(t) => unsafe { PreemptGuard::of(t) },
            None => PreemptGuard {
                tcb: std::ptr::null_mut(),
            },
        }
    }

    /// A guard for `me`.
    ///
    /// # Safety
    ///
    /// `me` is the running thread (the caller runs on its stack).
    #[inline(always)]
    pub(crate) unsafe fn of(me: *mut Tcb) -> PreemptGuard {
        // SAFETY: only the running thread changes its own count (the contract of `of`).
        let was = unsafe {
            let c = &(*me).preempt_count;
            let was = c.load(Ordering::Relaxed);
            c.store(was + 1, Ordering::Relaxed);
            was
        };
        // The signal handler runs on this OS thread, and the tick's handoff pairs this
        // with `membarrier`: order the raise before the critical section (and before
        // the adrift mark's load) as the compiler sees it.
        compiler_fence(Ordering::SeqCst);
        // SAFETY: the running thread's own TCB; the mark is atomic.
        if was == 0 && unsafe { (*me).adrift.load(Ordering::Relaxed) } != 0 {
            // Its core is being, or was, handed to another OS thread while it blocked:
            // wait for the verdict, and rejoin a core before touching one (`carrier`).
            // SAFETY: per the contract; the count is raised.
            unsafe { super::carrier::settle(me) };
        }
        PreemptGuard { tcb: me }
    }
}

impl Drop for PreemptGuard {
    #[inline(always)]
    fn drop(&mut self) {
        let me = self.tcb;
        if me.is_null() {
            return;
        }
        compiler_fence(Ordering::SeqCst);
        // SAFETY: the guard was made by the running thread on its own stack, and a guard never leaves its thread (not Send).
        unsafe {
            let c = &(*me).preempt_count;
            c.store(c.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
            maybe_yield(me, false);
        }
    }
}

/// The one maybe-yield path: the running thread `me` yields if `urgent` (its caller
/// knows why: a more urgent thread was made runnable on this core, or a preemption
/// point found work injected here), or if its core asked it to reschedule and it is
/// outside the runtime's critical sections (preempt count zero). When there is nothing
/// to do it costs a relaxed load of the core's flag and one of the count.
///
/// The flag is read relaxed: the yield reads nothing on its strength (the scheduler
/// reads its queues under their own protocols), and a request seen late is honoured at
/// the next runtime call (`loom_tick_flag`).
///
/// # Safety
///
/// `me` is the running thread.
#[inline(always)]
pub(crate) unsafe fn maybe_yield(me: *mut Tcb, urgent: bool) {
    // SAFETY: per the contract, `me` and its core are alive while it runs.
    let requested = unsafe {
        crate::sched::Core::of(me).resched.pending()
            && (*me).preempt_count.load(Ordering::Relaxed) == 0
    };
    if urgent || requested {
        yield_now_cold();
    }
}

/// Yields (out of line: keeps the guards small).
#[cold]
#[inline(never)]
fn yield_now_cold() {
    crate::sched::wait::yield_now();
}

/// Honours a pending reschedule request at a runtime call that takes no guard.
#[inline(always)]
pub(crate) fn check() {
    if let Some(me) = current_tcb() {
        // SAFETY: `me` is the running thread.
        unsafe { maybe_yield(me, false) };
    }
}
