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
pub(crate) mod exchange;
pub(crate) mod lifecycle;
pub(crate) mod runq;

use std::cell::UnsafeCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU32, AtomicU64, AtomicUsize};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::arch::{self, Context};
use crate::loom::Ordering;
use crate::runtime::Shared;
use crate::stack::StackPool;
use crate::task::slot::{Channel, Slot, Wake, table};
use crate::task::tcb::{State, Tcb};
use doorbell::Doorbell;
pub(crate) use lifecycle::CoreState;
use runq::RunQueue;

/// Free stack blocks per size class a core keeps resident when it goes idle; the
/// memory of the rest is released (the blocks stay pooled).
const POOL_KEEP: usize = 256;

/// Most cores a runtime can have over its lifetime (retired cores are reused by
/// `add_core` of the same type). One bit per core in a `u64` mask.
pub(crate) const MAX_CORES: usize = 64;

/// Most core types a runtime can have.
pub(crate) const MAX_TYPES: usize = 16;

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

/// A pending timer: wake `(index, generation)` on `chan` at `deadline`.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Timer {
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
    /// Threads spawned onto this core from this core.
    pub spawned: u64,
    /// Threads that finished on this core.
    pub exited: u64,
    /// Times the core slept in the kernel because nothing was runnable.
    pub idle_sleeps: u64,
    /// Threads this core took in from other cores' exchange slots.
    pub taken_in: u64,
    /// Threads this core handed to other cores through exchange slots.
    pub sent_out: u64,
    /// Threads handed to this core by OS threads through its injection queue.
    pub injected: u64,
    /// Threads this core sent to another core at the balancer's request.
    pub balanced_out: u64,
    /// Lazily created threads (remote and named spawns) whose stack block this core
    /// took from its own pool and set up, the first time it ran them.
    pub built: u64,
    /// Preemption signals the tick sent this core (its thread did not honour a
    /// reschedule request within a tick, or the watchdog asked for its name).
    pub preempt_signals: u64,
    /// Asynchronous preemptions on this core: signals whose handler rewrote the
    /// interrupted context so that the thread yielded. Only preemptible threads are
    /// ever preempted this way.
    pub async_preemptions: u64,
}

/// A core's outgoing list for one destination (its dispatcher list): touched by the
/// core alone, linked through the TCBs' `next`.
#[derive(Clone, Copy)]
pub(crate) struct OutList {
    head: *mut Tcb,
    tail: *mut Tcb,
    len: u32,
    /// Most urgent level in the list (to ask the destination to reschedule).
    min_level: u8,
}

impl OutList {
    const EMPTY: OutList = OutList {
        head: std::ptr::null_mut(),
        tail: std::ptr::null_mut(),
        len: 0,
        min_level: IDLE_LEVEL,
    };
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
    /// Dispatcher lists, one per destination core, and the mask of non-empty ones.
    out: Box<[OutList]>,
    out_mask: u64,
    /// Last values stored to the published load figures (to store only on change).
    load_seen: u32,
    level_seen: u8,
    epoch: u64,
    pub(crate) stats: CoreStats,
}

/// What other OS threads hand a core through its injection queue.
#[derive(Default)]
struct Inbox {
    threads: Vec<TcbPtr>,
    timers: Vec<Timer>,
    /// Set by a leaving core once it stopped taking injections.
    closed: bool,
}

/// Figures a core publishes for placement, with relaxed stores (single writer), each
/// on its own cache line: `load` changes whenever the core goes idle or gets work,
/// while `level` is read by every sender (the preemption check of `send_out`) and
/// changes only when a thread of another level starts running.
#[derive(Default)]
pub(crate) struct Published {
    /// Runnable threads, plus one if a thread is running.
    pub(crate) load: CachePadded<AtomicU32>,
    /// Level of the thread running, or of the last one that ran if the core is idle
    /// (`load` 0): not rewritten when the core goes idle, so that a core handing
    /// threads back and forth does not move this line at every hop. `IDLE_LEVEL`
    /// before the first thread.
    pub(crate) level: CachePadded<AtomicU8>,
}

/// One core: a scheduler bound to one OS thread.
pub(crate) struct Core {
    pub(crate) id: usize,
    shared: *const Shared,
    /// On cache lines of its own: the core writes it all the time, and the fields
    /// other cores read (state, doorbell, flags) must not share a line with it.
    local: CachePadded<UnsafeCell<CoreLocal>>,
    /// Threads and timers handed to this core by OS threads that are not its peers.
    inject: Mutex<Inbox>,
    pub(crate) doorbell: Doorbell,
    /// How long the idle loop spins before sleeping in the kernel.
    spin: Duration,
    /// `CoreState` as a byte.
    state: AtomicU8,
    /// The core's type index (set before the core first starts).
    pub(crate) ty: AtomicUsize,
    /// The CPU it is pinned to, `usize::MAX` if unpinned.
    pub(crate) cpu: AtomicUsize,
    /// Asks the core to go to its scheduler context at its next schedule point
    /// (shutdown, or removal).
    pub(crate) halt: AtomicBool,
    /// A reschedule request: a more urgent thread was sent to this core.
    pub(crate) resched: AtomicBool,
    /// A balancing request from the balancer: `(destination + 1) << 16 | count`, 0 if
    /// none. Written by the balancer, cleared by this core (a lost request is simply
    /// made again on the next pass).
    pub(crate) balance: AtomicUsize,
    /// Smoothed load (runnable threads, ×256), kept by the stats maintenance thread.
    pub(crate) load_avg: AtomicU32,
    pub(crate) published: Published,
    /// Bumped at every schedule point and idle-loop round; a leaving core waits for
    /// every other core's epoch to move (see `runtime`).
    pub(crate) epoch: CachePadded<AtomicU64>,
    /// Live threads per type counted on this core: spawned here minus exited here
    /// (single writer; the sum over all cores is the live count of a type).
    pub(crate) typed: [AtomicI64; MAX_TYPES],
    /// The OS thread running this core.
    pub(crate) os_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// What the core publishes for the tick (schedule points, slice start, running
    /// thread) and the preemption signal's counters.
    pub(crate) clock: CachePadded<crate::preempt::CoreClock>,
}

/// A TCB pointer in transit to its core's injection queue.
struct TcbPtr(*mut Tcb);
// SAFETY: the pointer is only dereferenced by the core that owns the TCB, after it took it out of the queue (the queue's mutex orders the hand-off).
unsafe impl Send for TcbPtr {}

// SAFETY: `local` is only accessed by the core's own OS thread (see `local`); the other fields are synchronised (mutex, atomics) or immutable.
unsafe impl Sync for Core {}
// SAFETY: as above; a core is created on one thread and handed to its OS thread.
unsafe impl Send for Core {}

impl Core {
    pub(crate) fn new(id: usize, shared: *const Shared, spin: Duration) -> Core {
        Core {
            id,
            shared,
            local: CachePadded::new(UnsafeCell::new(CoreLocal {
                runq: RunQueue::default(),
                timers: BinaryHeap::new(),
                sched_ctx: Context::default(),
                current: std::ptr::null_mut(),
                prev: std::ptr::null_mut(),
                prev_after: After::Sleep,
                pool: StackPool::default(),
                free_slots: Vec::new(),
                out: vec![OutList::EMPTY; MAX_CORES].into_boxed_slice(),
                out_mask: 0,
                load_seen: 0,
                level_seen: IDLE_LEVEL,
                epoch: 0,
                stats: CoreStats::default(),
            })),
            inject: Mutex::new(Inbox::default()),
            doorbell: Doorbell::new(),
            spin,
            state: AtomicU8::new(CoreState::Unused as u8),
            ty: AtomicUsize::new(0),
            cpu: AtomicUsize::new(usize::MAX),
            halt: AtomicBool::new(false),
            resched: AtomicBool::new(false),
            balance: AtomicUsize::new(0),
            load_avg: AtomicU32::new(0),
            published: Published {
                load: CachePadded::new(AtomicU32::new(0)),
                level: CachePadded::new(AtomicU8::new(IDLE_LEVEL)),
            },
            epoch: CachePadded::new(AtomicU64::new(0)),
            typed: std::array::from_fn(|_| AtomicI64::new(0)),
            os_thread: Mutex::new(None),
            clock: CachePadded::new(crate::preempt::CoreClock::default()),
        }
    }

    /// The runtime this core belongs to.
    #[inline(always)]
    pub(crate) fn shared(&self) -> &Shared {
        // SAFETY: a core lives inside its `Shared`, which outlives it.
        unsafe { &*self.shared }
    }

    /// Address of the runtime this core belongs to.
    pub(crate) fn shared_ptr(&self) -> *const Shared {
        self.shared
    }

    /// The core's life-cycle state.
    #[inline]
    pub(crate) fn state(&self) -> CoreState {
        // SeqCst: the removal protocol orders this load against the leaving core's
        // store (see `lifecycle`); on x86 it is a plain load.
        CoreState::from_byte(self.state.load(Ordering::SeqCst))
    }

    pub(crate) fn set_state(&self, s: CoreState) {
        self.state.store(s as u8, Ordering::SeqCst);
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

    /// Counts a thread of type `ty` born (+1) or gone (-1) on this core. Only the
    /// core's own OS thread calls this (single writer: load + store, no RMW).
    #[inline]
    pub(crate) fn count_typed(&self, ty: u8, delta: i64) {
        let c = &self.typed[ty as usize];
        c.store(c.load(Ordering::Relaxed) + delta, Ordering::Relaxed);
    }

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
    unsafe fn switch_out(&self, me: *mut Tcb, after: After, to: *const Context) {
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
            (*(*me).core.get()).finish_switch();
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
    unsafe fn pop_ready(&self, l: &mut CoreLocal) -> Option<*mut Tcb> {
        loop {
            let n = l.runq.pop()?;
            // SAFETY: `n` was on our run queue, so it is ours.
            if !unsafe { (*n).lazy } {
                return Some(n);
            }
            // SAFETY: as above; `l` is this core's local state.
            if let Some(t) = unsafe { crate::thread::materialize(self, l, n) } {
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
    unsafe fn prepare(&self, n: *mut Tcb) {
        // SAFETY: `n` is ours and not running; its stack top and entry were set at spawn.
        unsafe {
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
            self.clock.switched_to((*n).run_word, (*n).id_u64());
        }
    }

    #[inline(always)]
    fn publish_level(&self, l: &mut CoreLocal, level: u8) {
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
            if prev.is_null() {
                return;
            }
            (*l).prev = std::ptr::null_mut();
            // Its context is saved: it is off the CPU.
            #[cfg(debug_assertions)]
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
    fn poll(&self, l: &mut CoreLocal) -> bool {
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
        if self.resched.load(Ordering::Relaxed) {
            self.resched.store(false, Ordering::Relaxed);
        }
        let req = self.balance.load(Ordering::Relaxed);
        if req != 0 {
            self.balance.store(0, Ordering::Relaxed);
            self.rebalance(l, req);
        }
        // Exception-less system calls: the hypercore serves requests, a worker with
        // requests in flight collects completions (one load when there are none).
        crate::offload::at_schedule_point(self, l);
        let load = l.runq.len() as u32 + u32::from(!l.current.is_null());
        if load != l.load_seen {
            l.load_seen = load;
            self.published.load.store(load, Ordering::Relaxed);
        }
        l.epoch += 1;
        // Release: orders this core's earlier slot offers before the new epoch, for a
        // leaving core that waits on it.
        self.epoch.store(l.epoch, Ordering::Release);
        false
    }

    /// Takes in every list the other cores left in the exchange slots addressed to
    /// this core. No read-modify-write instruction (checked by `tests/no_rmw.rs`).
    #[inline(never)]
    pub(crate) fn take_in(&self, l: &mut CoreLocal) {
        let shared = self.shared();
        let n = shared.hwm.load(Ordering::Relaxed);
        for src in 0..n {
            if src == self.id {
                // A core never offers to itself.
                continue;
            }
            let mut t = shared.slots.take(self.id, src);
            while !t.is_null() {
                // SAFETY: `take` handed the list to us: its threads are ours now, and the sender's writes to them are visible (acquire).
                unsafe {
                    let next = (*t).next.get();
                    // Off every list: `next` is null (see `push_out`).
                    (*t).next.set(std::ptr::null_mut());
                    (*t).set_core(self);
                    // Embryos (remote spawns) and runnable threads (migrations) keep
                    // their state; threads woken by another core arrive asleep.
                    if (*t).state() == State::Sleeping {
                        (*t).set_state(State::Runnable);
                    }
                    l.runq.push(t);
                    l.stats.taken_in += 1;
                    t = next;
                }
            }
        }
    }

    /// Appends `t` to the dispatcher list for core `dst`.
    ///
    /// # Safety
    ///
    /// `t` is a runnable (or embryo) thread that this core owns and that is on no list.
    #[inline]
    pub(crate) unsafe fn push_out(&self, l: &mut CoreLocal, dst: usize, t: *mut Tcb) {
        // SAFETY: per the contract.
        unsafe { self.push_out_at(l, dst, t, (*t).level) }
    }

    /// [`Core::push_out`] for a thread of level `level`. The first thread of a list is
    /// not written to at all: a TCB that is on no list has a null `next` (every
    /// list's taker clears it), so a woken thread's TCB line stays on its own core.
    ///
    /// # Safety
    ///
    /// As for [`Core::push_out`]; `level` is `t`'s level.
    #[inline]
    pub(crate) unsafe fn push_out_at(&self, l: &mut CoreLocal, dst: usize, t: *mut Tcb, level: u8) {
        let list = &mut l.out[dst];
        #[cfg(debug_assertions)]
        {
            // SAFETY: `t` is valid (contract); debug builds check the null-`next` invariant.
            let next = unsafe { (*t).next.get() };
            assert!(next.is_null(), "a thread on two lists");
        }
        if list.head.is_null() {
            list.head = t;
        } else {
            // SAFETY: a non-empty list's tail is ours (we queued it).
            unsafe { (*list.tail).next.set(t) };
        }
        list.min_level = list.min_level.min(level);
        list.tail = t;
        list.len += 1;
        l.out_mask |= 1 << dst;
    }

    /// Offers every non-empty dispatcher list to its destination's exchange slot and
    /// returns the mask of destinations that got one. Lists whose slot is still full
    /// stay local. No read-modify-write instruction (checked by `tests/no_rmw.rs`).
    #[inline(never)]
    pub(crate) fn send_out(&self, l: &mut CoreLocal) -> u64 {
        let shared = self.shared();
        let mut pending = l.out_mask;
        let mut sent = 0;
        while pending != 0 {
            let dst = pending.trailing_zeros() as usize;
            pending &= pending - 1;
            let to = &shared.cores[dst];
            if !to.state().holds_its_threads() {
                // Past its last switch, or gone: the list goes elsewhere (cold path;
                // see `lifecycle`).
                sent |= self.reroute(l, dst);
                continue;
            }
            let list = l.out[dst];
            if shared.slots.offer(self.id, dst, list.head) {
                if list.min_level < to.published.level.load(Ordering::Relaxed) {
                    // Release: the list is visible to whoever sees the request.
                    to.resched.store(true, Ordering::Release);
                }
                l.stats.sent_out += u64::from(list.len);
                l.out[dst] = OutList::EMPTY;
                l.out_mask &= !(1 << dst);
                sent |= 1 << dst;
            }
        }
        sent
    }

    /// Sends out what can be sent, then wakes the destinations that sleep.
    #[inline]
    pub(crate) fn flush(&self, l: &mut CoreLocal) {
        let sent = self.send_out(l);
        if sent != 0 {
            self.ring_sent(sent);
        }
    }

    /// Wakes the cores in `mask` that sleep in the kernel (the doorbell protocol, with
    /// its full fence: outside the slot functions).
    #[inline(never)]
    fn ring_sent(&self, mut mask: u64) {
        let shared = self.shared();
        while mask != 0 {
            let dst = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            shared.cores[dst].doorbell.wake_if_sleeping();
        }
    }

    /// Moves the dispatcher list for a core that is no longer active to other cores
    /// of its threads' types. Returns 0 (nothing was published).
    #[cold]
    #[inline(never)]
    fn reroute(&self, l: &mut CoreLocal, dst: usize) -> u64 {
        let list = std::mem::replace(&mut l.out[dst], OutList::EMPTY);
        l.out_mask &= !(1 << dst);
        let mut t = list.head;
        while !t.is_null() {
            // SAFETY: the threads of our dispatcher list are ours.
            unsafe {
                let next = (*t).next.get();
                (*t).next.set(std::ptr::null_mut());
                let to = self.shared().place_woken((*t).ty, Some(self.id));
                if to == self.id {
                    make_runnable(self, l, t);
                } else {
                    self.push_out(l, to, t);
                }
                t = next;
            }
        }
        0
    }

    /// Honours a balancing request: sends up to the requested number of runnable
    /// threads that are not bound to this core, least urgent first, to the requested
    /// core through its exchange slot.
    #[cold]
    #[inline(never)]
    fn rebalance(&self, l: &mut CoreLocal, req: usize) {
        let (dst, count) = ((req >> 16) - 1, req & 0xffff);
        let ok = self
            .shared()
            .active_core(dst)
            .is_some_and(|c| c.ty.load(Ordering::Relaxed) == self.ty.load(Ordering::Relaxed));
        if !ok || dst == self.id {
            return;
        }
        // Threads more urgent than the one running here run at this very schedule
        // point or the next: sending them away would only delay them (an urgent
        // spawn placed here, for instance).
        let running = if l.current.is_null() {
            0
        } else {
            // SAFETY: the current thread's TCB is valid while it is current.
            unsafe { (*l.current).level }
        };
        // SAFETY: the run queue's threads are ours, runnable and on no other list.
        let moved = unsafe {
            l.runq
                .take_least_urgent(count, |t| !(*t).bound.get() && (*t).level >= running)
        };
        for t in moved {
            // SAFETY: `t` was just unlinked from our run queue.
            unsafe { self.push_out(l, dst, t) };
            l.stats.balanced_out += 1;
        }
        self.flush(l);
    }

    /// Takes injected threads and timers. Returns true if the core is asked to halt.
    #[cold]
    fn drain_inject(&self, l: &mut CoreLocal) -> bool {
        let (threads, timers) = {
            let mut q = self.inject.lock().unwrap_or_else(|e| e.into_inner());
            self.doorbell.clear();
            (
                std::mem::take(&mut q.threads),
                std::mem::take(&mut q.timers),
            )
        };
        for TcbPtr(t) in threads {
            l.stats.injected += 1;
            // SAFETY: injected TCBs were handed to this core (a won wake, or a spawn) and nobody else enqueues them.
            unsafe { make_runnable(self, l, t) };
        }
        l.timers.extend(timers.into_iter().map(Reverse));
        self.halt.load(Ordering::Acquire)
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
                // SAFETY: we cleared BLOCKED, so the thread is alive, asleep, and ours to enqueue.
                unsafe { self.enqueue_woken_here(l, slot) };
            }
        }
    }

    /// Makes a thread whose wake this core won runnable: here if it lives here, else
    /// through the exchange slot of the core it lives on.
    ///
    /// # Safety
    ///
    /// As for [`make_runnable`], except that `t` may live on any core of this runtime.
    unsafe fn enqueue_woken_here(&self, l: &mut CoreLocal, slot: &Slot) {
        // SAFETY: the thread is asleep and ours to enqueue (caller); its core is stable and alive.
        unsafe {
            let t = *slot.tcb.get();
            let level = slot.level.load(Ordering::Relaxed);
            let home = &*slot.home.load(Ordering::Relaxed);
            // A leaving core may still be switching the thread out: it goes home
            // until the core itself wrote `Evacuating` (see `lifecycle`).
            let to = if std::ptr::eq(home, self) {
                self.id
            } else if home.state().holds_its_threads() {
                home.id
            } else {
                self.shared().place_woken((*t).ty, Some(self.id))
            };
            if to == self.id {
                make_runnable(self, l, t);
            } else {
                self.push_out_at(l, to, t, level);
                self.flush(l);
            }
        }
    }

    /// Wakes thread `(index, generation)` if it is blocked on its internal channel,
    /// from this core's schedule point (the system-call collector, `offload`).
    pub(crate) fn wake_internal_here(&self, l: &mut CoreLocal, index: u32, generation: u32) {
        if let Some(slot) = table().get(index)
            && slot.word.wake(Channel::Internal, generation) == Wake::MustEnqueue
        {
            // SAFETY: we won the wake: the thread is alive and asleep, its TCB valid.
            unsafe { self.enqueue_woken_here(l, slot) };
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

    /// Hands a thread to this core from an OS thread that is not one of its peers
    /// (a foreign thread, or a core of another runtime). Returns the thread back if
    /// this core no longer takes injections (it is leaving).
    pub(crate) fn inject(&self, t: *mut Tcb) -> Result<(), *mut Tcb> {
        {
            let mut q = self.inject.lock().unwrap_or_else(|e| e.into_inner());
            if q.closed {
                return Err(t);
            }
            q.threads.push(TcbPtr(t));
        }
        if self.doorbell.ring() {
            self.doorbell.wake();
        }
        Ok(())
    }

    /// Hands timers to this core (from a leaving core). Returns them if it is leaving too.
    pub(crate) fn inject_timers(&self, timers: Vec<Timer>) -> Result<(), Vec<Timer>> {
        {
            let mut q = self.inject.lock().unwrap_or_else(|e| e.into_inner());
            if q.closed {
                return Err(timers);
            }
            q.timers.extend(timers);
        }
        if self.doorbell.ring() {
            self.doorbell.wake();
        }
        Ok(())
    }

    /// Whether the core's OS thread is still running (started and not ended).
    pub(crate) fn os_thread_running(&self) -> bool {
        self.os_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|h| !h.is_finished())
    }

    /// Rings the doorbell: the core looks at its inbox and halt flag soon, waking if
    /// it sleeps.
    pub(crate) fn nudge(&self) {
        if self.doorbell.ring() {
            self.doorbell.wake();
        }
    }

    /// Whether another OS thread or core handed this core work (injection queue or
    /// an exchange slot): a caller polling its system-call slot stops then.
    #[inline]
    pub(crate) fn has_incoming(&self) -> bool {
        self.doorbell.pending() || self.slots_pending()
    }

    /// Whether anything addressed to this core waits in an exchange slot.
    fn slots_pending(&self) -> bool {
        let shared = self.shared();
        shared
            .slots
            .any_for(self.id, shared.hwm.load(Ordering::Relaxed))
    }

    /// Bumps the epoch from the scheduler context (idle rounds, removal waits).
    pub(crate) fn bump_epoch(&self) {
        let l = self.local();
        // SAFETY: called on this core's OS thread, in its scheduler context.
        unsafe {
            (*l).epoch += 1;
            self.epoch.store((*l).epoch, Ordering::Release);
        }
    }

    /// The idle wait of the scheduler context: spin a bounded while, then sleep in the
    /// kernel until woken or the next timer is due.
    pub(crate) fn idle(&self) {
        let l = self.local();
        // SAFETY: called from this core's scheduler context.
        let next_deadline = unsafe { (*l).timers.peek().map(|Reverse(t)| t.deadline) };
        // SAFETY: as above.
        let sending = unsafe { (*l).out_mask != 0 };
        let start = Instant::now();
        loop {
            if self.doorbell.pending() || self.slots_pending() || crate::offload::idle_work(self) {
                return;
            }
            if sending {
                // SAFETY: as above.
                let done = unsafe {
                    self.flush(&mut *l);
                    (*l).out_mask == 0
                };
                if done {
                    return;
                }
            }
            let now = Instant::now();
            if next_deadline.is_some_and(|d| d <= now) {
                return;
            }
            if now.duration_since(start) >= self.spin {
                break;
            }
            self.bump_epoch();
            // Look for work after every pause (a sender's offer is seen within one
            // pause, ~40 ns on this kind of CPU), and at the clock only every 64.
            for _ in 0..64 {
                std::hint::spin_loop();
                if self.doorbell.pending()
                    || self.slots_pending()
                    || crate::offload::idle_work(self)
                {
                    return;
                }
            }
        }
        // About to sleep in the kernel, so not on a hot path: give back the memory of
        // stack blocks this core has not needed recently.
        // SAFETY: as above.
        unsafe {
            if (*l).pool.len() > POOL_KEEP {
                // The reaper (a maintenance thread) releases their memory.
                (*l).pool.hand_surplus(POOL_KEEP);
            }
        }
        let mark = crate::offload::sleep_mark(self);
        if self.doorbell.prepare_sleep_as(mark, || {
            self.slots_pending() || crate::offload::idle_work(self)
        }) {
            let mut timeout = next_deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if sending {
                // A destination's slot is still full: look again soon.
                let retry = Duration::from_micros(200);
                timeout = Some(timeout.map_or(retry, |t| t.min(retry)));
            }
            if timeout != Some(Duration::ZERO) {
                // A futex sleep, or the hypercore's monitored wait (`offload::wait`).
                crate::offload::idle_sleep(self, timeout);
            }
            self.doorbell.end_sleep();
            // SAFETY: as above.
            unsafe { (*l).stats.idle_sleeps += 1 };
        }
        self.bump_epoch();
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
            if self.poll(&mut *l) || self.halt.load(Ordering::Relaxed) {
                return false;
            }
            let Some(n) = self.pop_ready(&mut *l) else {
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
        // SAFETY: only this core's OS thread calls it (it owns `local`); the copy ends the borrow.
        let mut s = unsafe { (*self.local()).stats };
        s.preempt_signals = self.clock.signals_sent();
        s.async_preemptions = self.clock.preemptions();
        s
    }

    /// Closes the injection queue (a leaving core) and takes what is in it.
    ///
    /// # Safety
    ///
    /// Called from this core's scheduler context.
    pub(crate) unsafe fn close_inbox(&self) {
        {
            let mut q = self.inject.lock().unwrap_or_else(|e| e.into_inner());
            q.closed = true;
        }
        let l = self.local();
        // SAFETY: scheduler context of this core (caller).
        unsafe { self.drain_inject(&mut *l) };
    }

    /// Reopens the injection queue (a retired core being restarted).
    pub(crate) fn reopen_inbox(&self) {
        let mut q = self.inject.lock().unwrap_or_else(|e| e.into_inner());
        q.closed = false;
    }

    /// Hands every runnable thread and every timer of this (leaving) core to the
    /// active cores, through the exchange slots (threads) and their inboxes (timers).
    /// Returns when every dispatcher list has been taken by its destination.
    ///
    /// # Safety
    ///
    /// Called from this core's scheduler context, after the removal grace period.
    pub(crate) unsafe fn evacuate(&self) {
        let l = self.local();
        let shared = self.shared();
        // SAFETY: scheduler context of this core (caller): `l` is ours; the threads on our run queue are ours.
        unsafe {
            self.finish_switch();
            self.take_in(&mut *l);
            self.drain_inject(&mut *l);
            // Completions of offloaded calls the core did not collect before it halted:
            // their threads sleep with this core as home, so wake them onto the run
            // queue now (calls still in flight are woken by the service itself).
            crate::offload::collect_leaving(self, &mut *l);
            while let Some(t) = (*l).runq.pop() {
                let to = shared.place_woken((*t).ty, None);
                self.push_out(&mut *l, to, t);
            }
            let timers: Vec<Timer> = std::mem::take(&mut (*l).timers)
                .into_iter()
                .map(|Reverse(t)| t)
                .collect();
            let mut timers = timers;
            while !timers.is_empty() {
                let to = shared.place_woken(self.ty.load(Ordering::Relaxed) as u8, None);
                match shared.cores[to].inject_timers(timers) {
                    Ok(()) => break,
                    Err(back) => {
                        timers = back;
                        std::thread::yield_now();
                    }
                }
            }
            while (*l).out_mask != 0 {
                self.flush(&mut *l);
                self.bump_epoch();
                std::thread::yield_now();
            }
            self.publish_level(&mut *l, IDLE_LEVEL);
            self.published.load.store(0, Ordering::Relaxed);
            (*l).load_seen = 0;
            (*l).pool.drain_to_spare();
            table().give_back(&mut (*l).free_slots);
        }
    }
}

/// Moves a woken, injected or rerouted thread onto `core`'s run queue.
///
/// # Safety
///
/// `t` must be a sleeping thread whose wake the caller won (cleared its `BLOCKED`
/// bit), or an embryo or runnable thread handed to the caller, so no one else
/// enqueues it; and `l` must be `core`'s local state, used on
/// `core`'s OS thread.
#[inline(always)]
pub(crate) unsafe fn make_runnable(core: &Core, l: &mut CoreLocal, t: *mut Tcb) {
    // SAFETY: per the contract, `t` is valid and ours to enqueue.
    unsafe {
        (*t).set_core(core);
        // Embryos and runnable threads (rerouted) keep their state.
        if (*t).state() == State::Sleeping {
            (*t).set_state(State::Runnable);
        }
        l.runq.push(t);
    }
}

/// Makes a thread runnable after a successful wake: on the caller's run queue if the
/// thread lives on the caller's core, through the exchange slot if the caller is a
/// thread on another core of the same runtime, else through the injection queue of the
/// thread's core.
///
/// # Safety
///
/// The caller won the wake of `t` (`Wake::MustEnqueue`), so `t` is alive and asleep.
pub(crate) unsafe fn enqueue_woken(slot: &Slot) {
    // SAFETY: the thread is alive and asleep (caller); its home core is stable while it sleeps.
    let home = unsafe { &*slot.home.load(Ordering::Relaxed) };
    // SAFETY: the running thread's TCB is valid while it runs; we only read its core.
    let here = crate::task::current::current_tcb().map(|me| unsafe { &*(*me).core.get() });
    match here {
        Some(c) if std::ptr::eq(c.shared_ptr(), home.shared_ptr()) => {
            // SAFETY: we run on `c`, so its local state is ours for this call.
            unsafe { c.enqueue_woken_here(&mut *c.local(), slot) }
        }
        // SAFETY: as above, the TCB is valid and ours to enqueue.
        _ => inject_anywhere(unsafe { *slot.tcb.get() }, home),
    }
}

/// Hands `t` to `home` through its injection queue, or, once `home` has closed it
/// (after its last switch: see `lifecycle`), to another core of its type.
fn inject_anywhere(mut t: *mut Tcb, home: &Core) {
    let shared = home.shared();
    let mut to = home.id;
    loop {
        match shared.cores[to].inject(t) {
            Ok(()) => return,
            Err(back) => {
                t = back;
                // SAFETY: as above.
                to = shared.place_woken(unsafe { (*t).ty }, None);
                std::thread::yield_now();
            }
        }
    }
}

/// Wakes `(slot, generation)` on `chan`; returns true if this woke a sleeping thread.
pub(crate) fn wake(slot: &crate::task::slot::Slot, generation: u32, chan: Channel) -> bool {
    let _g = crate::preempt::PreemptGuard::new();
    if slot.word.wake(chan, generation) == Wake::MustEnqueue {
        // SAFETY: our CAS cleared BLOCKED, so the thread is alive, asleep, and ours alone to enqueue.
        unsafe { enqueue_woken(slot) };
        true
    } else {
        false
    }
}
