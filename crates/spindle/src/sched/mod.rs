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

pub(crate) mod doorbell;
pub(crate) mod runq;

use std::cell::UnsafeCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::arch::{self, Context};
use crate::runtime::Shared;
use crate::stack::StackPool;
use crate::thread::slot::{Channel, Wake, table};
use crate::thread::tcb::{State, Tcb};
use doorbell::Doorbell;
use runq::RunQueue;

/// Free stack blocks per size class a core keeps resident when it goes idle; the
/// memory of the rest is released (the blocks stay pooled).
const POOL_KEEP: usize = 256;

/// What the next context does with the thread that switched out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum After {
    /// It yielded: put it at the back of its run-queue level.
    Requeue,
    /// It blocked: leave it; a waker will make it runnable.
    Sleep,
    /// It exited: return its stack block to the pool.
    Exit,
}

/// A pending timer: wake `(index, generation)` on `chan` at `deadline`.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    deadline: Instant,
    index: u32,
    generation: u32,
    park: bool,
}

/// Counters a core keeps about itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct CoreStats {
    /// Context switches made by this core.
    pub switches: u64,
    /// Threads spawned onto this core.
    pub spawned: u64,
    /// Threads that finished on this core.
    pub exited: u64,
    /// Times the core slept in the kernel because nothing was runnable.
    pub idle_sleeps: u64,
}

/// State touched only by the core's own OS thread.
pub(crate) struct CoreLocal {
    pub(crate) runq: RunQueue,
    timers: BinaryHeap<Reverse<Timer>>,
    /// The scheduler context: the OS thread's own stack.
    sched_ctx: Context,
    /// Running thread, or null while in the scheduler context.
    pub(crate) current: *mut Tcb,
    /// The thread that switched out last, and what to do with it.
    prev: *mut Tcb,
    prev_after: After,
    pub(crate) pool: StackPool,
    pub(crate) free_slots: Vec<u32>,
    /// Threads owned by this core that have not exited.
    pub(crate) live: usize,
    pub(crate) stats: CoreStats,
}

/// One core: a scheduler bound to one OS thread.
pub(crate) struct Core {
    pub(crate) id: usize,
    shared: *const Shared,
    local: UnsafeCell<CoreLocal>,
    /// Threads handed to this core by other OS threads.
    inject: Mutex<Vec<TcbPtr>>,
    doorbell: Doorbell,
    /// How long the idle loop spins before sleeping in the kernel.
    spin: Duration,
}

/// A TCB pointer in transit to its core's injection queue.
struct TcbPtr(*mut Tcb);
// SAFETY: the pointer is only dereferenced by the core that owns the TCB, after it
// took it out of the queue (the queue's mutex orders the hand-off).
unsafe impl Send for TcbPtr {}

// SAFETY: `local` is only accessed by the core's own OS thread (see `local`); the
// other fields are synchronised (mutex, atomics) or immutable.
unsafe impl Sync for Core {}
// SAFETY: as above; a core is created on one thread and handed to its OS thread.
unsafe impl Send for Core {}

impl Core {
    pub(crate) fn new(id: usize, shared: *const Shared, spin: Duration) -> Core {
        Core {
            id,
            shared,
            local: UnsafeCell::new(CoreLocal {
                runq: RunQueue::default(),
                timers: BinaryHeap::new(),
                sched_ctx: Context::default(),
                current: std::ptr::null_mut(),
                prev: std::ptr::null_mut(),
                prev_after: After::Sleep,
                pool: StackPool::default(),
                free_slots: Vec::new(),
                live: 0,
                stats: CoreStats::default(),
            }),
            inject: Mutex::new(Vec::new()),
            doorbell: Doorbell::new(),
            spin,
        }
    }

    /// Address of the runtime this core belongs to.
    pub(crate) fn shared_ptr(&self) -> *const Shared {
        self.shared
    }

    /// The core-local state.
    ///
    /// Only the core's own OS thread may call this (a spindle thread running on the
    /// core, or the core's scheduler context), and no reference obtained from it may
    /// be held across a context switch. Callers dereference it in short, non-
    /// overlapping scopes.
    #[inline(always)]
    pub(crate) fn local(&self) -> *mut CoreLocal {
        self.local.get()
    }

    /// Switches from `me` to the next runnable thread, or to the scheduler context.
    /// Returns when `me` runs again (never, for `After::Exit`).
    ///
    /// # Safety
    ///
    /// Must run on `me`'s stack, `me` must be this core's current thread, and its state
    /// must already be `Runnable` (Requeue), `Sleeping` (Sleep) or `Zombie` (Exit).
    pub(crate) unsafe fn schedule(&self, me: *mut Tcb, after: After) {
        let l = self.local();
        // SAFETY: we are this core's current thread (caller), so we own `l`; each
        // reference below ends before the switch.
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
            self.poll(&mut *l);
            if after == After::Requeue && (*l).runq.top_level().is_none_or(|top| top > (*me).level)
            {
                // Nothing at least as urgent is waiting: keep running.
                (*me).set_state(State::Running);
                return;
            }
            let to: *const Context = match (*l).runq.pop() {
                Some(n) if n == me => {
                    // Woken while switching out (injected before we left).
                    (*me).set_state(State::Running);
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

    /// Switches from `me` straight to the scheduler context (the main thread's exit).
    ///
    /// # Safety
    ///
    /// As for [`Core::schedule`].
    pub(crate) unsafe fn schedule_to_scheduler(&self, me: *mut Tcb, after: After) {
        let l = self.local();
        // SAFETY: as in `schedule`.
        unsafe {
            (*l).current = std::ptr::null_mut();
            self.switch_out(me, after, &raw const (*l).sched_ctx);
        }
    }

    /// # Safety
    ///
    /// As for [`Core::schedule`]; `to` is a resumable context of this core.
    #[inline(always)]
    unsafe fn switch_out(&self, me: *mut Tcb, after: After, to: *const Context) {
        let l = self.local();
        // SAFETY: we own `l` (caller); no reference to it survives the switch. `me`
        // stays valid: its block is freed only by `finish_switch` after the switch.
        unsafe {
            (*l).prev = me;
            (*l).prev_after = after;
            (*l).stats.switches += 1;
            arch::switch((*me).ctx.get(), to);
            // Resumed: some context switched back to us, on the core that owns us.
            (*(*me).core.get()).finish_switch();
        }
    }

    /// Makes a picked thread ready to run: builds the first frame of an embryo (on
    /// this core, so the stack is first touched by the CPU that runs it).
    ///
    /// # Safety
    ///
    /// `n` was just popped from this core's run queue.
    #[inline(always)]
    unsafe fn prepare(&self, n: *mut Tcb) {
        // SAFETY: `n` is ours and not running; its stack top and entry were set at spawn.
        unsafe {
            if (*n).state() == State::Embryo {
                arch::init_context(&mut *(*n).ctx.get(), (*n).stack_top, (*n).entry, n as usize);
            }
            (*n).set_state(State::Running);
        }
    }

    /// Completes the switch that just brought this context in: requeues, leaves
    /// asleep, or frees the thread that switched out.
    ///
    /// # Safety
    ///
    /// Must be called by the context that was just switched into on this core, before
    /// anything else touches the scheduler.
    #[inline(always)]
    pub(crate) unsafe fn finish_switch(&self) {
        let l = self.local();
        // SAFETY: we run on this core's OS thread; `prev` switched out completely (we
        // are on another stack now), so its TCB and block are ours to requeue or free.
        unsafe {
            let prev = (*l).prev;
            if prev.is_null() {
                return;
            }
            (*l).prev = std::ptr::null_mut();
            match (*l).prev_after {
                After::Requeue => (*l).runq.push(prev),
                After::Sleep => {}
                After::Exit => {
                    (*prev).set_state(State::Unused);
                    (*l).pool.put((*prev).class as usize, Tcb::block_base(prev));
                    (*l).live -= 1;
                    (*l).stats.exited += 1;
                }
            }
        }
    }

    /// Takes in injected threads and fires due timers.
    #[inline(always)]
    fn poll(&self, l: &mut CoreLocal) {
        if self.doorbell.pending() {
            self.drain_inject(l);
        }
        if !l.timers.is_empty() {
            self.fire_timers(l, Instant::now());
        }
    }

    #[cold]
    fn drain_inject(&self, l: &mut CoreLocal) {
        let batch = {
            let mut q = self.inject.lock().unwrap_or_else(|e| e.into_inner());
            self.doorbell.clear();
            std::mem::take(&mut *q)
        };
        for TcbPtr(t) in batch {
            // SAFETY: injected TCBs are owned by this core and were blocked; the
            // injector won their wake CAS, so nobody else enqueues them.
            unsafe { make_runnable(l, t) };
        }
    }

    fn fire_timers(&self, l: &mut CoreLocal, now: Instant) {
        while let Some(Reverse(t)) = l.timers.peek() {
            if t.deadline > now {
                break;
            }
            let Reverse(t) = l.timers.pop().expect("peeked timer");
            let Some(slot) = table().get(t.index) else {
                continue;
            };
            let chan = if t.park {
                Channel::Park
            } else {
                Channel::Internal
            };
            // A timer never leaves a token: it only wakes a thread still blocked.
            if slot.word.cancel_block(chan, t.generation) {
                // SAFETY: we cleared BLOCKED, so the thread is alive, asleep, owned
                // by this core (timers are core-local), and ours to enqueue.
                unsafe { make_runnable(l, *slot.tcb.get()) };
            }
        }
    }

    /// Arms a timer that wakes thread `(index, generation)` at `deadline` if it is
    /// still blocked on the channel then.
    pub(crate) fn add_timer(&self, deadline: Instant, index: u32, generation: u32, chan: Channel) {
        let l = self.local();
        let park = chan == Channel::Park;
        // SAFETY: called by a thread running on this core; the reference is brief.
        unsafe {
            (*l).timers.push(Reverse(Timer {
                deadline,
                index,
                generation,
                park,
            }))
        };
    }

    /// Hands a woken thread to this core from another OS thread.
    pub(crate) fn inject(&self, t: *mut Tcb) {
        self.inject
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(TcbPtr(t));
        if self.doorbell.ring() {
            self.doorbell.wake();
        }
    }

    /// The idle wait of the scheduler context: spin a bounded while, then sleep in the
    /// kernel until woken or the next timer is due.
    pub(crate) fn idle(&self) {
        let l = self.local();
        // SAFETY: called from this core's scheduler context.
        let next_deadline = unsafe { (*l).timers.peek().map(|Reverse(t)| t.deadline) };
        let start = Instant::now();
        loop {
            if self.doorbell.pending() {
                return;
            }
            let now = Instant::now();
            if next_deadline.is_some_and(|d| d <= now) {
                return;
            }
            if now.duration_since(start) >= self.spin {
                break;
            }
            for _ in 0..64 {
                std::hint::spin_loop();
            }
        }
        // About to sleep in the kernel, so not on a hot path: give back the memory of
        // stack blocks this core has not needed recently.
        // SAFETY: as above.
        unsafe {
            if (*l).pool.len() > POOL_KEEP {
                (*l).pool.trim(POOL_KEEP);
            }
        }
        if self.doorbell.prepare_sleep() {
            let timeout = next_deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if timeout != Some(Duration::ZERO) {
                self.doorbell.sleep(timeout);
            }
            self.doorbell.end_sleep();
            // SAFETY: as above.
            unsafe { (*l).stats.idle_sleeps += 1 };
        }
    }

    /// Runs the next runnable thread from the scheduler context, if any; returns when
    /// this core comes back to the scheduler context. Returns false if nothing ran.
    ///
    /// # Safety
    ///
    /// Must be called from this core's scheduler context.
    pub(crate) unsafe fn run_next(&self) -> bool {
        let l = self.local();
        // SAFETY: we are the scheduler context of this core; references are brief.
        unsafe {
            self.finish_switch();
            self.poll(&mut *l);
            let Some(n) = (*l).runq.pop() else {
                return false;
            };
            self.prepare(n);
            (*l).current = n;
            (*l).stats.switches += 1;
            arch::switch(&raw mut (*l).sched_ctx, (*n).ctx.get());
            self.finish_switch();
        }
        true
    }

    /// Statistics so far.
    pub(crate) fn stats(&self) -> CoreStats {
        // SAFETY: called on this core's OS thread; a plain copy.
        unsafe { (*self.local()).stats }
    }
}

/// Moves a woken thread onto its core's run queue.
///
/// # Safety
///
/// `t` must be a sleeping thread owned by the core of `l`, and the caller must have
/// won the wake (cleared its `BLOCKED` bit) so no one else enqueues it.
#[inline(always)]
pub(crate) unsafe fn make_runnable(l: &mut CoreLocal, t: *mut Tcb) {
    // SAFETY: per the contract, `t` is valid and ours to enqueue.
    unsafe {
        (*t).set_state(State::Runnable);
        l.runq.push(t);
    }
}

/// Makes a thread runnable after a successful wake: on its core's run queue if we run
/// on that core, else through its core's injection queue.
///
/// # Safety
///
/// The caller won the wake of `t` (`Wake::MustEnqueue`), so `t` is alive and asleep.
pub(crate) unsafe fn enqueue_woken(t: *mut Tcb) {
    // SAFETY: `t` is alive (caller); its core pointer is stable while it sleeps.
    let core = unsafe { &*(*t).core.get() };
    // SAFETY: the running thread's TCB is valid while it runs; we only read its core.
    let here = crate::thread::current_tcb().map(|me| unsafe { (*me).core.get() });
    if here.is_some_and(|c| std::ptr::eq(c, core)) {
        // SAFETY: we run on `t`'s core, so we own its local state; the reference is brief.
        unsafe { make_runnable(&mut *core.local(), t) }
    } else {
        core.inject(t);
    }
}

/// Wakes `(slot, generation)` on `chan`; returns true if this woke a sleeping thread.
pub(crate) fn wake(slot: &crate::thread::slot::Slot, generation: u32, chan: Channel) -> bool {
    if slot.word.wake(chan, generation) == Wake::MustEnqueue {
        // SAFETY: we won the wake: the thread is alive and asleep, its TCB valid.
        unsafe { enqueue_woken(*slot.tcb.get()) };
        true
    } else {
        false
    }
}
