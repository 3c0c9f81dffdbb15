//! Handing threads between cores and OS threads: the exchange slots at every schedule
//! point (take in, then send out), the injection queue of OS threads, and waking a
//! thread wherever it lives (see `lifecycle` for where a woken thread of a leaving core
//! goes).

use std::cmp::Reverse;

use super::Core;
use super::core::{CoreLocal, OutList, TcbPtr};
use super::requests::Rebalance;
use super::timers::Timer;
use crate::loom::Ordering;
use crate::task::id::ThreadId;
use crate::task::slot::{Channel, Slot, Wake, table};
use crate::task::tcb::{State, Tcb};

impl Core {
    /// Takes in every list the other cores left in the exchange slots addressed to
    /// this core. No read-modify-write instruction (checked by `tests/no_rmw.rs`).
    #[inline(never)]
    pub(super) fn take_in(&self, l: &mut CoreLocal) {
        let shared = self.set();
        let n = shared.hwm.load(Ordering::Relaxed);
        let stolen = l.stats.stolen_in;
        for src in 0..n {
            if src == self.id {
                // A core never offers to itself.
                continue;
            }
            let mut t = shared.slots.take(self.id, src);
            if crate::sched::exchange::Slots::is_request(t) {
                // An idle core asks for threads (`steal`).
                self.answer(l, src);
                continue;
            }
            while !t.is_null() {
                // SAFETY: `take` handed the list to us: its threads are ours now, and the sender's writes to them are visible (acquire).
                unsafe {
                    let next = (*t).next.get();
                    // Off every list: `next` is null (see `push_out`).
                    (*t).next.set(std::ptr::null_mut());
                    (*t).set_core(self.owner());
                    // Embryos (remote spawns) and runnable threads (migrations) keep
                    // their state; threads woken by another core arrive asleep.
                    if (*t).state() == State::Sleeping {
                        (*t).set_state(State::Runnable);
                    }
                    if (*t).stolen.replace(false) {
                        l.stats.stolen_in += 1;
                    }
                    l.runq.push(t);
                    l.stats.taken_in += 1;
                    t = next;
                }
            }
        }
        if l.stats.stolen_in != stolen {
            // This core has work now: a spinning token a waker handed it while it
            // slept goes back (it would otherwise stay until this core idles again,
            // and no sleeping sibling would be woken meanwhile). Then the work given
            // to it may be more than it can run: pass the word on (Go's rule: a
            // spinner that found work wakes the next one).
            self.drop_spin_token();
            self.share_new_work(l);
        }
    }
    /// Appends `t` to the dispatcher list for core `dst`.
    ///
    /// # Safety
    ///
    /// `t` is a runnable (or embryo) thread that this core owns and that is on no list.
    #[inline]
    pub(super) unsafe fn push_out(&self, l: &mut CoreLocal, dst: usize, t: *mut Tcb) {
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
    pub(super) unsafe fn push_out_at(&self, l: &mut CoreLocal, dst: usize, t: *mut Tcb, level: u8) {
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
    pub(super) fn send_out(&self, l: &mut CoreLocal) -> u64 {
        let shared = self.set();
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
                    to.resched.ask();
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
    pub(super) fn flush(&self, l: &mut CoreLocal) {
        let sent = self.send_out(l);
        if sent != 0 {
            self.ring_sent(sent);
        }
    }
    /// Wakes the cores in `mask` that sleep in the kernel (the doorbell protocol, with
    /// its full fence: outside the slot functions).
    #[inline(never)]
    pub(super) fn ring_sent(&self, mut mask: u64) {
        let shared = self.set();
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
    pub(super) fn reroute(&self, l: &mut CoreLocal, dst: usize) -> u64 {
        let list = std::mem::replace(&mut l.out[dst], OutList::EMPTY);
        l.out_mask &= !(1 << dst);
        let mut t = list.head;
        while !t.is_null() {
            // SAFETY: the threads of our dispatcher list are ours.
            unsafe {
                let next = (*t).next.get();
                (*t).next.set(std::ptr::null_mut());
                let to = self.set().place_woken((*t).ty, Some(self.id));
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
    pub(super) fn rebalance(&self, l: &mut CoreLocal, r: Rebalance) {
        let (dst, count) = (r.to, usize::from(r.count));
        let moved = self.give(l, dst, count, false);
        l.stats.balanced_out += moved as u64;
        self.flush(l);
    }
    /// Queues up to `count` runnable threads that are not bound to this core for core
    /// `dst` of this core's type, least urgent first and oldest first within a level,
    /// and returns how many. `stolen` marks them for the receiver's count. The caller
    /// flushes.
    pub(super) fn give(&self, l: &mut CoreLocal, dst: usize, count: usize, stolen: bool) -> usize {
        let ok = self
            .set()
            .active_core(dst)
            .is_some_and(|c| c.ty.load(Ordering::Relaxed) == self.ty.load(Ordering::Relaxed));
        if !ok || dst == self.id || count == 0 {
            return 0;
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
        // The thread switching out, if this runs inside its `schedule`, may be on the
        // run queue already (woken before it left) while its context is not saved yet:
        // it is never given away (another core would run it twice at once).
        let current = l.current;
        // SAFETY: the run queue's threads are ours, runnable and on no other list.
        let moved = unsafe {
            l.runq.take_least_urgent(count, |t| {
                t != current && !(*t).bound.get() && (*t).level >= running
            })
        };
        let n = moved.len();
        for t in moved {
            // SAFETY: `t` was just unlinked from our run queue; it is ours until sent.
            unsafe {
                (*t).stolen.set(stolen);
                self.push_out(l, dst, t);
            }
        }
        n
    }
    /// Takes injected threads and timers. Returns true if the core is asked to halt.
    #[cold]
    pub(super) fn drain_inject(&self, l: &mut CoreLocal) -> bool {
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
    /// Makes a thread whose wake this core won runnable: here if it lives here, else
    /// through the exchange slot of the core it lives on.
    ///
    /// # Safety
    ///
    /// As for [`make_runnable`], except that `t` may live on any core of this runtime.
    pub(super) unsafe fn enqueue_woken_here(&self, l: &mut CoreLocal, slot: &Slot) {
        // SAFETY: the thread is asleep and ours to enqueue (caller); its core is stable and alive.
        unsafe {
            let t = *slot.tcb.get();
            let level = slot.level.load(Ordering::Relaxed);
            let home = Core::from_owner(slot.home.load(Ordering::Relaxed));
            // A leaving core may still be switching the thread out: it goes home
            // until the core itself wrote `Evacuating` (see `lifecycle`).
            let to = if std::ptr::eq(home, self) {
                self.id
            } else if !slot.bound.load(Ordering::Relaxed) && self.takes_woken(l, home, t) {
                l.stats.woken_here += 1;
                self.id
            } else if home.state().holds_its_threads() {
                home.id
            } else {
                self.set().place_woken((*t).ty, Some(self.id))
            };
            if to == self.id {
                make_runnable(self, l, t);
            } else {
                self.push_out_at(l, to, t, level);
                self.flush(l);
            }
        }
    }
    /// Whether an unbound thread of core `home` that a thread of this core woke runs
    /// here rather than at home (wake affinity: its waker's data is in this cache, and
    /// a chain of wakes — a ring, a ping-pong, a fan-in — stays on one core instead of
    /// crossing cores at every hop). Only if a thread runs here (the waker: not a timer
    /// or the system-call collector of the scheduler), both cores are active and of
    /// one type, and the thread is off its CPU already. The caller reads `bound` in the
    /// slot, so a bound thread's TCB line stays on its core.
    ///
    /// The last test is what keeps a thread on one core: a thread publishes its wait
    /// before its core has saved its context, and the waker may win the wake in
    /// between. Then `on_cpu` is still set, and the thread goes home as before, where
    /// its own core is the one that runs it again. The acquire pairs with the release
    /// of `finish_switch`: a waker that reads it clear sees the saved context. A waker
    /// never waits for another core's progress.
    ///
    /// # Safety
    ///
    /// The caller won `t`'s wake: `t` is alive and asleep.
    #[inline]
    unsafe fn takes_woken(&self, l: &CoreLocal, home: &Core, t: *mut Tcb) -> bool {
        // SAFETY: per the contract, the TCB is valid and stays so.
        let t = unsafe { &*t };
        !l.current.is_null()
            && home.ty.load(Ordering::Relaxed) == self.ty.load(Ordering::Relaxed)
            && home.state() == super::CoreState::Active
            && self.state() == super::CoreState::Active
            && !t.on_cpu.load(Ordering::Acquire)
    }

    /// Wakes thread `id` if it is blocked on its internal channel, from this core's
    /// schedule point (the system-call collector, `offload`).
    pub(super) fn wake_internal_here(&self, l: &mut CoreLocal, id: ThreadId) {
        if let Some(slot) = table().get(id.index)
            && slot.word.wake(Channel::Internal, id.generation) == Wake::MustEnqueue
        {
            // SAFETY: we won the wake: the thread is alive and asleep, its TCB valid.
            unsafe { self.enqueue_woken_here(l, slot) };
        }
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
    pub(super) fn slots_pending(&self) -> bool {
        let shared = self.set();
        shared
            .slots
            .any_for(self.id, shared.hwm.load(Ordering::Relaxed))
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
pub(super) unsafe fn make_runnable(core: &Core, l: &mut CoreLocal, t: *mut Tcb) {
    // SAFETY: per the contract, `t` is valid and ours to enqueue.
    unsafe {
        (*t).set_core(core.owner());
        // Embryos and runnable threads (rerouted) keep their state.
        if (*t).state() == State::Sleeping {
            (*t).set_state(State::Runnable);
        }
        // A thread given away to a core that left meanwhile arrives rerouted.
        if (*t).stolen.get() {
            (*t).stolen.set(false);
            l.stats.stolen_in += 1;
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
    // SAFETY: the thread is alive and asleep (caller); its home core is stable while it sleeps, and alive.
    let home = unsafe { Core::from_owner(slot.home.load(Ordering::Relaxed)) };
    match super::CoreCtx::current() {
        Some((mut ctx, _)) if std::ptr::eq(ctx.core().set_ptr(), home.set_ptr()) => {
            // SAFETY: as above; the thread is ours to enqueue.
            unsafe { ctx.enqueue_woken(slot) }
        }
        // SAFETY: as above, the TCB is valid and ours to enqueue.
        _ => inject_anywhere(unsafe { *slot.tcb.get() }, home),
    }
}
/// Hands `t` to `home` through its injection queue, or, once `home` has closed it
/// (after its last switch: see `lifecycle`), to another core of its type.
pub(super) fn inject_anywhere(mut t: *mut Tcb, home: &Core) {
    let shared = home.set();
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
/// Wakes thread `id` on `chan`; returns true if this woke a sleeping thread (false
/// for a thread that was awake, or has finished).
pub(crate) fn wake(id: ThreadId, chan: Channel) -> bool {
    let Some(slot) = table().get(id.index) else {
        return false;
    };
    let _g = crate::sched::guard::PreemptGuard::new();
    if super::trace::ON.load(std::sync::atomic::Ordering::Relaxed) {
        let by = crate::task::current::current_tcb()
            // SAFETY: the running thread's TCB.
            .map_or(0, |t| unsafe { (*t).id_u64() });
        super::trace::here(super::trace::Kind::Wake, id.as_u64(), by);
    }
    if slot.word.wake(chan, id.generation) == Wake::MustEnqueue {
        // SAFETY: our CAS cleared BLOCKED, so the thread is alive, asleep, and ours alone to enqueue.
        unsafe { enqueue_woken(slot) };
        true
    } else {
        false
    }
}

#[cfg(all(test, loom))]
mod loom_affinity {
    //! Wake affinity against switch-out. Thread `T` runs on core `H` and blocks; a
    //! waker on another core wins its wake and runs `T` on its own core only if it
    //! reads `T`'s `on_cpu` clear (`Core::takes_woken`), else hands it home. `T` must
    //! never be resumed while `H` has not saved its context, must be resumed exactly
    //! once, and the waker must see the saved context.
    use crate::task::slot::{Block, Channel, SlotWord, Wake};
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;
    use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use loom::thread;

    struct Model {
        /// `T`'s slot word.
        word: SlotWord,
        /// `T` is on a CPU (`Tcb::on_cpu`).
        on_cpu: AtomicBool,
        /// `T`'s saved context, written by `H`'s switch.
        context: UnsafeCell<u32>,
        /// `T` was handed home (stands for the exchange slot).
        at_home: AtomicBool,
        /// Times `T` was resumed.
        resumed: AtomicU32,
    }

    fn run(check: Ordering) {
        loom::model(move || {
            let m = Arc::new(Model {
                word: SlotWord::new(),
                on_cpu: AtomicBool::new(false),
                context: UnsafeCell::new(0),
                at_home: AtomicBool::new(false),
                resumed: AtomicU32::new(0),
            });
            m.word.activate();
            let g = m.word.generation();
            // Core H prepares T to run.
            m.on_cpu.store(true, Ordering::Relaxed);
            let waker = {
                let m = m.clone();
                thread::spawn(move || {
                    if m.word.wake(Channel::Internal, g) == Wake::MustEnqueue {
                        if !m.on_cpu.load(check) {
                            // Runs T here: restores its saved context.
                            // SAFETY: H wrote the context before clearing `on_cpu`.
                            let saved = m.context.with(|c| unsafe { *c });
                            assert_eq!(saved, 1, "resumed T from an unsaved context");
                            m.resumed.fetch_add(1, Ordering::Relaxed);
                        } else {
                            m.at_home.store(true, Ordering::Release);
                        }
                    }
                })
            };
            // T blocks on core H.
            match m.word.block(Channel::Internal, false) {
                Block::MustSleep => {
                    // H's switch saves T's context, then the next context's
                    // finish_switch clears `on_cpu`.
                    // SAFETY: only H writes the context, before clearing `on_cpu`.
                    m.context.with_mut(|c| unsafe { *c = 1 });
                    m.on_cpu.store(false, Ordering::Release);
                }
                // Woken before it slept: T runs on.
                _ => {
                    m.resumed.fetch_add(1, Ordering::Relaxed);
                }
            }
            waker.join().unwrap();
            if m.at_home.load(Ordering::Acquire) {
                // H takes T in at a later schedule point and runs it.
                m.resumed.fetch_add(1, Ordering::Relaxed);
            }
            assert_eq!(
                m.resumed.load(Ordering::Relaxed),
                1,
                "T resumed other than once"
            );
        });
    }

    #[test]
    fn loom_wake_affinity_vs_switch_out() {
        run(Ordering::Acquire);
    }

    /// Without the acquire, the waker may read `on_cpu` clear without seeing the
    /// context: loom reports the unsynchronised read.
    #[test]
    #[should_panic(expected = "Causality violation")]
    fn loom_wake_affinity_needs_the_acquire() {
        run(Ordering::Relaxed);
    }
}
