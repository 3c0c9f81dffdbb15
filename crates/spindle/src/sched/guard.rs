//! The preempt count, and the one place a pending reschedule request is honoured.

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
        // SAFETY: only the running thread changes its own count (caller).
        unsafe {
            let c = &(*me).preempt_count;
            c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
        // The signal handler runs on this OS thread: order the raise before the
        // critical section as the compiler sees it.
        compiler_fence(Ordering::SeqCst);
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
        let (zero, core) = unsafe {
            let c = &(*me).preempt_count;
            let v = c.load(Ordering::Relaxed) - 1;
            c.store(v, Ordering::Relaxed);
            (v == 0, crate::sched::Core::of(me))
        };
        if zero && core.resched.load(Ordering::Relaxed) {
            honour();
        }
    }
}

/// Yields for a pending reschedule request (out of line: keeps the guards small).
#[cold]
#[inline(never)]
fn honour() {
    crate::sched::wait::yield_now();
}

/// Honours a pending reschedule request at a runtime call that takes no guard (one
/// relaxed load when there is none).
#[inline(always)]
pub(crate) fn check() {
    if let Some(me) = current_tcb() {
        // SAFETY: the running thread's TCB and core are alive while it runs.
        let (free, core) = unsafe {
            (
                (*me).preempt_count.load(Ordering::Relaxed) == 0,
                crate::sched::Core::of(me),
            )
        };
        if core.resched.load(Ordering::Relaxed) && free {
            honour();
        }
    }
}
