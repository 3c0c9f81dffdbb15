//! The token for a core's core-local state.
//!
//! A core's run queue, timers, stack pool, slot free list and dispatcher lists
//! (`CoreLocal`) belong to the OS thread running that core: the thread on it, or its
//! scheduler context. Outside this module they are reached only through a `CoreCtx`,
//! made where that is known — [`CoreCtx::current`] for the running spindle thread (the
//! one place the invariant "a running thread is on its core's OS thread" is relied
//! on), the scheduler's own paths, and a stopped core ([`CoreCtx::stopped`]). A token
//! is neither `Send` nor kept: it is made for one piece of work, and none of its
//! methods switches, so no access outlives the switch after which it would be wrong.

use std::cmp::Reverse;
use std::marker::PhantomData;
use std::time::Instant;

use super::core::CoreLocal;
use super::timers::Timer;
use super::{Core, CoreStats};
use crate::stack::StackPool;
use crate::task::current::current_tcb;
use crate::task::id::ThreadId;
use crate::task::slot::Channel;
use crate::task::tcb::Tcb;

/// Access to one core's core-local state (see the module docs).
pub(crate) struct CoreCtx<'a> {
    core: &'a Core,
    l: *mut CoreLocal,
    _not_send: PhantomData<*mut ()>,
}

impl<'a> CoreCtx<'a> {
    /// A token from the scheduler's own paths, which run on the core's OS thread.
    pub(super) fn new(core: &'a Core, l: *mut CoreLocal) -> CoreCtx<'a> {
        CoreCtx {
            core,
            l,
            _not_send: PhantomData,
        }
    }

    /// The token of the core that runs the calling spindle thread, with that thread's
    /// TCB; `None` on an OS thread.
    pub(crate) fn current() -> Option<(CoreCtx<'static>, *mut Tcb)> {
        let me = current_tcb()?;
        // SAFETY: `me` is the running thread.
        Some((unsafe { CoreCtx::of_running(me) }, me))
    }

    /// The token of the core that runs `me`.
    ///
    /// # Safety
    ///
    /// `me` is the running thread.
    pub(crate) unsafe fn of_running(me: *mut Tcb) -> CoreCtx<'static> {
        // SAFETY: the running thread's core is alive while it runs, and the running thread is on that core's OS thread: a core switches into a thread only on its own OS thread, and sets the thread's core before it does.
        let core: &'static Core = unsafe { Core::of(me) };
        CoreCtx::new(core, core.local())
    }

    /// The token of a core whose OS thread has ended (the shutdown's reclaim), or of
    /// the core whose scheduler context calls.
    ///
    /// # Safety
    ///
    /// No other OS thread runs `core`, now or while the token lives.
    pub(crate) unsafe fn stopped(core: &'a Core) -> CoreCtx<'a> {
        CoreCtx::new(core, core.local())
    }

    /// The core.
    pub(crate) fn core(&self) -> &'a Core {
        self.core
    }

    fn local(&mut self) -> &mut CoreLocal {
        // A running thread touches its core's state only inside the runtime's critical
        // sections: that is what keeps the core's handoff (`carrier`) from racing it.
        #[cfg(debug_assertions)]
        if let Some(t) = current_tcb() {
            // SAFETY: the running thread's own TCB.
            let count = unsafe {
                (*t).preempt_count
                    .load(std::sync::atomic::Ordering::Relaxed)
            };
            assert!(count > 0, "core-local state touched outside a PreemptGuard");
        }
        // SAFETY: a token exists only on the core's OS thread (see the constructors), and the reference lives no longer than this borrow of the token.
        unsafe { &mut *self.l }
    }

    /// The core's pool of free stack blocks.
    pub(crate) fn pool(&mut self) -> &mut StackPool {
        &mut self.local().pool
    }

    /// The core's free join slots.
    pub(crate) fn free_slots(&mut self) -> &mut Vec<u32> {
        &mut self.local().free_slots
    }

    /// The core's stack pool and free join slots, together (a spawn takes both).
    pub(crate) fn pool_and_free_slots(&mut self) -> (&mut StackPool, &mut Vec<u32>) {
        let l = self.local();
        (&mut l.pool, &mut l.free_slots)
    }

    /// Runnable threads waiting on the core.
    pub(crate) fn runq_len(&mut self) -> usize {
        self.local().runq.len()
    }

    /// Puts a new thread on this core's run queue (a spawn), and wakes a sleeping core
    /// of the type to come and ask for work if none is looking (`steal`).
    ///
    /// # Safety
    ///
    /// `t` is an embryo nobody else knows, on no list.
    pub(crate) unsafe fn push_here(&mut self, t: *mut Tcb) {
        let core = self.core;
        // SAFETY: per the contract the thread is ours to queue.
        unsafe {
            (*t).set_core(core.owner());
            self.local().runq.push(t);
        }
        let l = self.local();
        l.stats.spawned_local += 1;
        core.share_new_work(l);
    }

    /// Sends a thread to core `dst` through the exchange slot (now if the slot is
    /// free, else at a later schedule point).
    ///
    /// # Safety
    ///
    /// `t` is a thread this core owns, runnable or an embryo, on no list.
    pub(crate) unsafe fn send(&mut self, dst: usize, t: *mut Tcb) {
        let core = self.core;
        let l = self.local();
        // SAFETY: per the contract.
        unsafe { core.push_out(l, dst, t) };
        core.flush(l);
    }

    /// Arms a timer that wakes `thread` on `chan` at `deadline`, if it still sleeps
    /// there then.
    pub(crate) fn add_timer(&mut self, deadline: Instant, thread: ThreadId, chan: Channel) {
        self.local()
            .timers
            .push(Reverse(Timer::new(deadline, thread, chan)));
    }

    /// Counts a spawn made on this core.
    pub(crate) fn note_spawned(&mut self) {
        self.local().stats.spawned += 1;
    }

    /// Wakes thread `id` if it is blocked on its internal channel (the system-call
    /// collector).
    pub(crate) fn wake_internal(&mut self, id: ThreadId) {
        let core = self.core;
        core.wake_internal_here(self.local(), id);
    }

    /// Makes runnable a thread of this runtime whose wake the caller won: here, or
    /// through the exchange slot of the core it lives on.
    ///
    /// # Safety
    ///
    /// The caller won the wake of the slot's thread, so it is alive, asleep, and ours
    /// to enqueue.
    pub(crate) unsafe fn enqueue_woken(&mut self, slot: &crate::task::slot::Slot) {
        let core = self.core;
        // SAFETY: per the contract.
        unsafe { core.enqueue_woken_here(self.local(), slot) }
    }

    /// Takes in what other cores left in this core's exchange slots.
    pub(crate) fn take_in(&mut self) {
        let core = self.core;
        core.take_in(self.local());
    }

    /// The core's counters.
    /// Publishes the core's counters for other threads (a core that stops).
    pub(crate) fn publish_stats(&mut self) {
        let core = self.core;
        core.publish_stats(self.local());
    }

    /// The core's counters, fresh.
    pub(crate) fn stats(&mut self) -> CoreStats {
        let mut s = self.local().stats;
        s.preempt_signals = self.core.clock.signals_sent();
        s.async_preemptions = self.core.clock.preemptions();
        s
    }
}
