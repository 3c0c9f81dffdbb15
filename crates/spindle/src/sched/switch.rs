//! Switching: `schedule` on the yielding thread's stack, `finish_switch` in the context
//! switched into, and the scheduler loop's `run_next` (see the module docs of `sched`).

use super::core::CoreLocal;
use super::{After, Core};
use std::time::Instant;

use crate::arch::{self, Context};
use crate::loom::Ordering;
use crate::task::tcb::{State, Tcb};

/// Where the scheduler context stands after [`Core::run_next`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// A thread ran; the core is still this OS thread's.
    Ran,
    /// Nothing was runnable (or the core halts).
    Idle,
    /// A thread that ran adrift came back, and this OS thread took its core back.
    Retook,
    /// The core went to another OS thread while a thread of it blocked this one.
    Lost,
}

/// Schedule points between two publications of a busy core's counters.
const STATS_EVERY: u64 = 1024;

impl Core {
    /// Switches from `me` to the next runnable thread, or to the scheduler context.
    /// Returns when `me` runs again (never, for `After::Exit`).
    ///
    /// # Safety
    ///
    /// Must run on `me`'s stack, `me` must be this core's current thread, and its state
    /// must already be `Runnable` (Requeue, Migrate), `Sleeping` (Sleep) or `Zombie`
    /// (Exit).
    pub(crate) unsafe fn schedule(&self, me: *mut Tcb, after: After) {
        let l = self.local();
        // SAFETY: we are this core's current thread (caller), so we own `l`; each reference below ends before the switch.
        unsafe {
            debug_assert!(
                (*l).current == me,
                "schedule: not the current thread of core {}",
                self.id
            );
            debug_assert!(
                (*l).prev.is_null(),
                "schedule: previous switch not finished"
            );
            if self.poll(&mut *l) {
                // Shutdown or removal: the scheduler context takes over.
                (*l).current = std::ptr::null_mut();
                self.switch_out(me, after, &raw const (*l).sched_ctx);
                return;
            }
            if after == After::Requeue && (*l).runq.top_level().is_none_or(|top| top > (*me).level)
            {
                // Nothing at least as urgent is waiting: keep running (a new slice).
                (*me).set_state(State::Running);
                self.clock.kept();
                return;
            }
            let to: *const Context = match self.pop_ready(&mut *l) {
                Some(n) if n == me => {
                    // Woken while switching out (injected before we left).
                    (*me).set_state(State::Running);
                    self.clock.kept();
                    return;
                }
                Some(n) => {
                    self.prepare(n);
                    (*l).current = n;
                    (*n).ctx.get()
                }
                None => {
                    (*l).current = std::ptr::null_mut();
                    &raw const (*l).sched_ctx
                }
            };
            self.switch_out(me, after, to);
        }
    }
    /// # Safety
    ///
    /// As for [`Core::schedule`]; `to` is a resumable context of this core.
    #[inline(always)]
    pub(super) unsafe fn switch_out(&self, me: *mut Tcb, after: After, to: *const Context) {
        let l = self.local();
        // SAFETY: we own `l` (caller); no reference to it survives the switch. `me` stays valid: its block is freed only by `finish_switch` after the switch.
        unsafe {
            if (*l).current.is_null() {
                // The published level stays (see `Published`); the slice clock stops.
                self.clock.idle();
            }
            (*l).prev = me;
            (*l).prev_after = after;
            (*l).stats.switches += 1;
            // A thread unwinding takes std's panic count of this OS thread along.
            crate::task::panic_count::take_off(me);
            arch::switch((*me).ctx.get(), to);
            // Resumed: some context switched back to us, on the core that owns us now.
            crate::sched::Core::of(me).finish_switch();
            crate::task::panic_count::put_back(me);
        }
    }
    /// The next thread of the run queue, with a lazy embryo record moved onto a stack
    /// block of this core's pool first (an embryo that cannot get a block ends with
    /// an error and the next one is taken).
    ///
    /// # Safety
    ///
    /// Called on this core's OS thread with its local state.
    #[inline(always)]
    pub(super) unsafe fn pop_ready(&self, l: &mut CoreLocal) -> Option<*mut Tcb> {
        loop {
            let n = l.runq.pop()?;
            // SAFETY: `n` was on our run queue, so it is ours.
            if !unsafe { (*n).lazy } {
                return Some(n);
            }
            // SAFETY: as above; `l` is this core's local state.
            if let Some(t) = unsafe { super::lazy::materialize(self, l, n) } {
                return Some(t);
            }
        }
    }
    /// Makes a picked thread ready to run: builds the first frame of an embryo (on
    /// this core, so the stack is first touched by the CPU that runs it).
    ///
    /// # Safety
    ///
    /// `n` was just popped from this core's run queue.
    #[inline(always)]
    pub(super) unsafe fn prepare(&self, n: *mut Tcb) {
        // SAFETY: `n` is ours and not running; its stack top and entry were set at spawn.
        unsafe {
            // Relaxed: the thread's next block (a release on its slot word) publishes
            // it to the waker that wins the wake (`Core::takes_woken`).
            #[cfg(not(debug_assertions))]
            (*n).on_cpu.store(true, Ordering::Relaxed);
            #[cfg(debug_assertions)]
            assert!(
                !(*n).on_cpu.swap(true, Ordering::AcqRel),
                "runtime: thread {} is switched into on core {} while its previous run has \
                 not finished switching out (it would run on two cores at once)",
                (*n).id_u64(),
                self.id
            );
            if (*n).state() == State::Embryo {
                arch::init_context(&mut *(*n).ctx.get(), (*n).stack_top, (*n).entry, n as usize);
            }
            (*n).set_state(State::Running);
            self.publish_level(&mut *self.local(), (*n).level);
            self.clock
                .switched_to((*n).run_word, (*n).id_u64(), n as usize);
        }
    }
    #[inline(always)]
    pub(super) fn publish_level(&self, l: &mut CoreLocal, level: u8) {
        if l.level_seen != level {
            l.level_seen = level;
            self.published.level.store(level, Ordering::Relaxed);
        }
    }
    /// Completes the switch that just brought this context in: requeues, leaves
    /// asleep, frees, or sends away the thread that switched out.
    ///
    /// # Safety
    ///
    /// Must be called by the context that was just switched into on this core, before
    /// anything else touches the scheduler.
    #[inline(always)]
    pub(crate) unsafe fn finish_switch(&self) {
        let l = self.local();
        // SAFETY: we run on this core's OS thread; `prev` switched out completely (we are on another stack now), so its TCB and block are ours to requeue or free.
        unsafe {
            let prev = (*l).prev;
            if !self.trace.load(Ordering::Relaxed).is_null() {
                self.trace_switched(&*l);
            }
            if prev.is_null() {
                return;
            }
            (*l).prev = std::ptr::null_mut();
            // Its context is saved: it is off the CPU. Release: pairs with the acquire
            // of a waker that runs it on its own core (`Core::takes_woken`).
            (*prev).on_cpu.store(false, Ordering::Release);
            match (*l).prev_after {
                After::Requeue => (*l).runq.push(prev),
                After::Sleep => {}
                After::Exit => {
                    (*prev).set_state(State::Unused);
                    self.count_typed((*prev).ty, -1);
                    (*l).pool.put((*prev).class as usize, Tcb::block_base(prev));
                    (*l).stats.exited += 1;
                }
                After::Migrate(dst) => {
                    self.push_out(&mut *l, dst, prev);
                    self.flush(&mut *l);
                }
            }
        }
    }
    /// The work of a schedule point, before picking: take in from the exchange slots,
    /// send out, take injected threads, fire timers, publish the load figures.
    /// Returns true if the core must go to its scheduler context (halt).
    #[inline(always)]
    pub(super) fn poll(&self, l: &mut CoreLocal) -> bool {
        self.take_in(l);
        if l.out_mask != 0 {
            self.flush(l);
        }
        if self.doorbell.pending() && self.drain_inject(l) {
            return true;
        }
        if !l.timers.is_empty() {
            self.fire_timers(l, Instant::now());
        }
        self.resched.take();
        if let Some(r) = self.balance.take() {
            self.rebalance(l, r);
        }
        // The core's role: the service core serves system calls, a worker collects
        // their completions (one load when there are none).
        self.role()
            .at_schedule_point(&mut super::CoreCtx::new(self, l));
        let load = l.runq.len() as u32 + u32::from(!l.current.is_null());
        if load != l.load_seen {
            l.load_seen = load;
            self.published.load.store(load, Ordering::Relaxed);
        }
        l.epoch += 1;
        if l.epoch.is_multiple_of(STATS_EVERY) {
            self.publish_stats(l);
        }
        // Release: orders this core's earlier slot offers before the new epoch, for a
        // leaving core that waits on it.
        self.epoch.store(l.epoch, Ordering::Release);
        false
    }
    /// Runs the next runnable thread from the scheduler context, if any; returns when
    /// this OS thread comes back to its scheduler context: with the core (`Ran`), with
    /// nothing run (`Idle`), with the core taken back after a thread of it ran adrift
    /// (`Retook`), or without the core, which another OS thread took while a thread
    /// of it blocked this one in the kernel (`Lost`: see `carrier`).
    ///
    /// # Safety
    ///
    /// Must be called from this core's scheduler context, on the OS thread that holds
    /// the core.
    pub(crate) unsafe fn run_next(&self) -> Next {
        let l = self.local();
        // SAFETY: we are the scheduler context of this core; references are brief.
        unsafe {
            self.finish_switch();
            if self.poll(&mut *l) || self.halt.load(Ordering::Relaxed) {
                return Next::Idle;
            }
            let Some(n) = self.pop_ready(&mut *l) else {
                return Next::Idle;
            };
            self.prepare(n);
            (*l).current = n;
            (*l).stats.switches += 1;
            arch::switch(&raw mut (*l).sched_ctx, (*n).ctx.get());
            // A thread that ran adrift came back to this OS thread (`carrier`).
            let back = super::carrier::take_rejoined();
            if let Some(t) = back
                && !self.back_from_adrift(t)
            {
                return Next::Lost;
            }
            self.finish_switch();
            if back.is_some() {
                return Next::Retook;
            }
        }
        Next::Ran
    }
}
