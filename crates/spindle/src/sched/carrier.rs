//! Handoff: a core whose OS thread is stuck in the kernel goes to another OS thread.
//!
//! A core (its run queue, core-local state, exchange slots, stack pool) is held by one
//! OS thread at a time, its *carrier*. A thread that makes an ordinary blocking call
//! (`std::thread::sleep`, a `read` on a pipe or a cold file, a `std::sync::Mutex`
//! held elsewhere) blocks its carrier in the kernel; every other thread of the core
//! would wait. So the core is handed to a spare OS thread, and the blocked thread runs
//! on, *adrift*, on its old carrier, until its next runtime call rejoins a core.
//!
//! ## Who may let a core go
//!
//! The core's state belongs to its carrier, which touches it only inside the
//! runtime's critical sections: with its running thread's preempt count above zero
//! (`PreemptGuard`). So the core may be taken from a carrier whose thread has the
//! count at zero — if the carrier learns it before its next critical section. Two
//! ways give that, both started by the tick (`preempt::stuck`) for a core whose
//! thread has passed no schedule point for N ticks while its carrier sleeps in the
//! kernel:
//!
//! 1. **From the tick, with an asymmetric fence** (`Core::take_stuck`; where
//!    `membarrier(2)` is available). The tick marks the thread `PENDING`, runs
//!    `membarrier` (a full barrier on every running thread of the process), then reads
//!    the thread's preempt count. The thread's side, at every count 0 → 1
//!    (`PreemptGuard::of`), stores the count, then (compiler fence only) reads its
//!    mark. So either the tick reads the raised count and withdraws, or the thread
//!    reads the mark and waits for the tick's verdict ([`settle`]): it never enters a
//!    critical section on a core being taken. Works whatever the kernel does with
//!    signals (a cold file's `read` is not interrupted by them).
//! 2. **From the carrier's signal handler** (`Core::let_go`; the fallback). The tick
//!    marks the core `ASKED` and sends the preemption signal; the handler runs on the
//!    carrier itself, so its decision cannot race the carrier's use of the core. It
//!    lets go only if it interrupted the core's running thread with the count at zero.
//!
//! ## The carrier word (`Carrier`), and the one writer of each transition
//!
//! ```text
//!   HELD ──tick (CAS)──▶ TAKING ──tick──▶ RELEASED ──taker (CAS)──▶ HELD
//!     │                    └──tick: count raised, or the core moved──▶ HELD
//!     └──tick──▶ ASKED ──handler on the carrier──▶ RELEASED
//!                  └────handler: stale ask (the core moved)──▶ HELD
//! ```
//!
//! - HELD → TAKING, TAKING → HELD or RELEASED: the tick. HELD → ASKED: the tick, which
//!   is also the only writer of `asked_at`. ASKED → HELD or RELEASED: the carrier's
//!   signal handler. RELEASED → HELD: the taker, by CAS (acquire), since two may try:
//!   a spare OS thread the service gave the core to, and the old carrier when its
//!   thread comes back first. Exactly one wins and runs the core's scheduler.
//! - RELEASED is stored with release after the last write to the core-local state by
//!   whoever let the core go (the carrier's `HOME`, `current`, the published load, the
//!   clock), so the taker sees it all.
//!
//! ## The adrift mark (`Tcb::adrift`)
//!
//! `NONE` → `PENDING` (tick) → `NONE` (tick, withdrawn) or `ADRIFT` (tick, release,
//! after RELEASED); `NONE` → `ADRIFT` (the handler, on the thread's own OS thread);
//! `ADRIFT` → `NONE` (the old carrier, once the thread rejoined it).
//!
//! ## Return
//!
//! An adrift thread rejoins at its next runtime call ([`settle`], then [`rejoin`]):
//! it saves its context and switches to its carrier's scheduler context (the carrier's
//! thread-local [`HOME`], copied from the core when it was let go: a carrier has at
//! most one thread adrift, the one it ran), leaving itself in the carrier's
//! [`REJOINED`] cell. The carrier, back on its own stack (`run_next`), takes its old
//! core back if it is still released, and requeues the thread there; else it clears
//! the thread's `on_cpu`, injects it into the core's new carrier (or another core of
//! its type if that one left) and becomes a spare itself.
//!
//! So a thread runs on one OS thread at a time: while adrift it is on no run queue and
//! in no core's `current`, and it cannot be woken (it is running; a wake only leaves a
//! token), so no core can pick it until its carrier, off its stack, hands it over.
//! Loom: `loom_take_vs_critical_section`, `loom_handoff_vs_return`.

use std::cell::{Cell, UnsafeCell};
use std::sync::atomic::{AtomicU8 as StdAtomicU8, Ordering as StdOrdering, compiler_fence};

use super::{After, Core};
use crate::arch::{self, Context};
use crate::loom::{AtomicU8, AtomicU64, Ordering};
use crate::task::tcb::{State, Tcb};

/// An OS thread runs the core.
const HELD: u8 = 0;
/// The tick asked the carrier's signal handler to let the core go.
const ASKED: u8 = 1;
/// No OS thread runs the core; the next taker gets it.
const RELEASED: u8 = 2;
/// The tick is taking the core from its carrier.
const TAKING: u8 = 3;

/// `Tcb::adrift`: the thread runs on its core.
pub(crate) const NONE: u8 = 0;
/// `Tcb::adrift`: the tick is deciding whether to take the thread's core.
pub(crate) const PENDING: u8 = 1;
/// `Tcb::adrift`: the thread's core went to another OS thread.
pub(crate) const ADRIFT: u8 = 2;

/// A core's carrier word, and the schedule-point count the tick saw when it asked
/// (see the module docs).
#[derive(Default)]
pub(crate) struct Carrier {
    state: AtomicU8,
    asked_at: AtomicU64,
}

impl Carrier {
    /// The tick: asks the carrier's signal handler to let go of a core stuck at
    /// schedule point `points`. Returns false if the core is not held (asked already,
    /// or released).
    pub(crate) fn ask(&self, points: u64) -> bool {
        match self.state.load(Ordering::Relaxed) {
            HELD => {
                self.asked_at.store(points, Ordering::Relaxed);
                // Release: the handler that reads ASKED sees `asked_at`.
                self.state.store(ASKED, Ordering::Release);
                true
            }
            ASKED => {
                // The tick is the only writer of `asked_at`: refresh it, so a stale
                // ask made before the core last moved does not stop the release.
                self.asked_at.store(points, Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    /// The handler's check, on the carrier: whether the tick asked for the core while
    /// it stood at schedule point `points` (as now). A stale ask is withdrawn.
    fn asked_at(&self, points: u64) -> bool {
        // Acquire: pairs with the tick's release, for `asked_at`.
        if self.state.load(Ordering::Acquire) != ASKED {
            return false;
        }
        if self.asked_at.load(Ordering::Relaxed) != points {
            self.state.store(HELD, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Whoever let the core go, last: no OS thread runs the core from now on.
    fn release(&self) {
        self.release_with(Ordering::Release);
    }

    /// `release`, with the store's ordering as a parameter for the loom model.
    fn release_with(&self, order: Ordering) {
        self.state.store(RELEASED, order);
    }

    /// Whether no OS thread runs the core (it waits for a taker).
    pub(crate) fn is_released(&self) -> bool {
        self.state.load(Ordering::Relaxed) == RELEASED
    }

    /// Takes a released core: true for the one taker that wins.
    pub(crate) fn take(&self) -> bool {
        // Acquire: pairs with the release of whoever let the core go, so the taker
        // sees the core-local state as its last carrier left it.
        self.state
            .compare_exchange(RELEASED, HELD, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }
}

thread_local! {
    /// The thread that just rejoined this OS thread's scheduler context, for the
    /// scheduler loop to hand over (`Core::back_from_adrift`).
    static REJOINED: Cell<*mut Tcb> = const { Cell::new(std::ptr::null_mut()) };
    /// This OS thread's scheduler context as its core had saved it when the core was
    /// let go: where its adrift thread switches to rejoin. Written through
    /// `Core::carrier_home` by whoever let the core go.
    static HOME: UnsafeCell<Context> = const { UnsafeCell::new(Context::ZERO) };
}

/// Takes the thread that rejoined this OS thread, if one did.
#[inline(always)]
pub(super) fn take_rejoined() -> Option<*mut Tcb> {
    let t = REJOINED.replace(std::ptr::null_mut());
    (!t.is_null()).then_some(t)
}

impl Core {
    /// The calling OS thread starts to carry this core: the tick may signal it, and a
    /// thread let go adrift returns to its scheduler context.
    pub(crate) fn start_carrying(&self) {
        self.clock.started();
        self.carrier_home
            .store(HOME.with(UnsafeCell::get), StdOrdering::Relaxed);
    }

    /// The tick's way to let a stuck core go (see the module docs): takes the core
    /// from its carrier if its running thread `t` (whose id the clock published) has
    /// its preempt count at zero and the core is still at schedule point `points`.
    /// Returns whether it did. Needs `os::membarrier_ready()`.
    ///
    /// # Safety
    ///
    /// `t` is the TCB of the thread this core published as running, alive; the caller
    /// is the tick (the one writer of HELD → TAKING).
    pub(crate) unsafe fn take_stuck(&self, t: *mut Tcb, points: u64) -> bool {
        let c = &self.carrier;
        if c.state
            .compare_exchange(HELD, TAKING, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        // SAFETY: `t` is alive (contract); its adrift mark is atomic.
        let mark = unsafe { &(*t).adrift };
        if mark.load(StdOrdering::Relaxed) != NONE {
            c.state.store(HELD, Ordering::Relaxed);
            return false;
        }
        mark.store(PENDING, StdOrdering::Relaxed);
        // The heavy side of the fence: the thread's count store and mark load are
        // ordered against our mark store and count load.
        crate::os::membarrier();
        // SAFETY: as above; the count is atomic.
        let count = unsafe { (*t).preempt_count.load(StdOrdering::Relaxed) };
        let still = self.clock.points.load(Ordering::Relaxed) == points
            // SAFETY: as above.
            && self.clock.id.load(Ordering::Relaxed) == unsafe { (*t).id_u64() };
        if count != 0 || !still {
            // Withdrawn: a thread waiting in `settle` goes on with its core.
            mark.store(NONE, StdOrdering::Release);
            c.state.store(HELD, Ordering::Relaxed);
            return false;
        }
        // From here the carrier does not touch the core (count zero, and its next
        // critical section waits for the mark), and every store it made before is
        // visible (the barrier).
        // SAFETY: as just said, the core-local state is ours until we release it.
        unsafe { self.leave_adrift() };
        c.release();
        // Release: the thread reads its carrier's `HOME` after it sees the mark.
        mark.store(ADRIFT, StdOrdering::Release);
        true
    }

    /// The signal handler's way to let a core go, on this core's carrier: lets go if
    /// the tick asked and the interrupted thread `me` may be left adrift (see the
    /// module docs); returns whether it did. Async-signal-safe: loads, stores, one
    /// atomic add.
    ///
    /// # Safety
    ///
    /// Called by the preemption signal handler on this core's carrier, which
    /// interrupted `me`, this core's running thread (`clock.id`), with its preempt
    /// count zero.
    pub(crate) unsafe fn let_go(&self, me: *mut Tcb) -> bool {
        let c = &self.carrier;
        if !c.asked_at(self.clock.points.load(Ordering::Relaxed)) {
            return false;
        }
        let l = self.local();
        // SAFETY: we are the core's carrier and interrupted its running thread outside the runtime's critical sections (contract), so no reference to the core-local state is live.
        if unsafe { (*l).current != me || !(*l).prev.is_null() } {
            return false;
        }
        // SAFETY: as above; the mark is the thread's own, on its OS thread.
        unsafe {
            self.leave_adrift();
            (*me).adrift.store(ADRIFT, StdOrdering::Relaxed);
        }
        c.release();
        true
    }

    /// The core's side of letting its running thread go adrift: the carrier's
    /// scheduler context is kept in its `HOME` for the thread to return to, and the
    /// core runs nothing and has no OS thread.
    ///
    /// # Safety
    ///
    /// The caller owns the core-local state (its carrier does not touch it), and the
    /// core's running thread is the one going adrift.
    unsafe fn leave_adrift(&self) {
        let l = self.local();
        // SAFETY: per the contract.
        unsafe {
            // The carrier wrote the pointer when it took the core: this is the
            // carrier itself (the handler), or the tick after its barrier.
            *self.carrier_home.load(StdOrdering::Relaxed) = (*l).sched_ctx;
            (*l).current = std::ptr::null_mut();
            let load = (*l).runq.len() as u32;
            (*l).load_seen = load;
            self.published.load.store(load, Ordering::Relaxed);
            (*l).stats.handed_off += 1;
        }
        self.clock.idle();
        self.clock.stopped();
        self.set().adrift.fetch_add(1, StdOrdering::Relaxed);
    }

    /// The carrier's half of a return: `t` rejoined this OS thread's scheduler
    /// context (its context is saved). Takes this core back if it is still released,
    /// and requeues `t` here; else hands `t` to the core's new carrier (or another
    /// core of its type) and returns false: this OS thread no longer holds a core.
    ///
    /// # Safety
    ///
    /// Called in the scheduler context of this OS thread, which was this core's
    /// carrier, right after `t` switched into it from [`rejoin`].
    pub(super) unsafe fn back_from_adrift(&self, t: *mut Tcb) -> bool {
        self.set().adrift.fetch_sub(1, StdOrdering::Relaxed);
        // SAFETY: `t` switched out on this OS thread (contract) and is on no list: it is ours to hand over.
        unsafe { (*t).adrift.store(NONE, StdOrdering::Relaxed) };
        if self.carrier.take() {
            // Ours again: the switch is finished like a yield.
            self.start_carrying();
            let l = self.local();
            // SAFETY: we hold the core again (the CAS), in its scheduler context.
            unsafe {
                (*l).prev = t;
                (*l).prev_after = After::Requeue;
            }
            return true;
        }
        // Release: the context is saved before the new core may resume the thread
        // (`Core::prepare` asserts the flag clear).
        // SAFETY: as above.
        unsafe { (*t).on_cpu.store(false, Ordering::Release) };
        super::handoff::inject_anywhere(t, self);
        false
    }
}

/// The cold side of `PreemptGuard::of` for a thread whose adrift mark is set: waits
/// out the tick's decision (`PENDING`), and rejoins a core if its own was let go.
///
/// # Safety
///
/// `me` is the running thread, on its own stack, its preempt count just raised from
/// zero (so its next access to a core comes after this).
#[cold]
#[inline(never)]
pub(crate) unsafe fn settle(me: *mut Tcb) {
    // SAFETY: the running thread's own TCB (contract).
    let mark: &StdAtomicU8 = unsafe { &(*me).adrift };
    loop {
        // Acquire: pairs with the tick's release of ADRIFT (the `HOME` it wrote) or
        // of NONE.
        match mark.load(StdOrdering::Acquire) {
            PENDING => std::hint::spin_loop(),
            ADRIFT => {
                // SAFETY: per the contract.
                unsafe { rejoin(me) };
                return;
            }
            _ => return,
        }
    }
}

/// The adrift thread `me`'s return: switches to its carrier's scheduler context, which
/// hands it to a core (`Core::back_from_adrift`); returns when that core runs it.
///
/// # Safety
///
/// `me` is the running thread, adrift, on its own stack, its preempt count raised.
unsafe fn rejoin(me: *mut Tcb) {
    // The handler that let the core go wrote `HOME` on this OS thread, before.
    compiler_fence(StdOrdering::SeqCst);
    // SAFETY: per the contract `me` runs here, off every core: its cells are ours.
    unsafe {
        (*me).set_state(State::Runnable);
        crate::task::panic_count::take_off(me);
        REJOINED.set(me);
        arch::switch((*me).ctx.get(), HOME.with(UnsafeCell::get));
        // Resumed by the core that took us in (`Core::prepare` set us Running).
        Core::of(me).finish_switch();
        crate::task::panic_count::put_back(me);
    }
}

#[cfg(all(test, loom))]
mod loom_handoff {
    //! The two sides of a handoff.
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;
    use loom::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering, fence};
    use loom::thread;

    use super::{ADRIFT, Carrier, NONE, PENDING};

    /// The tick's take against the carrier entering critical sections. The carrier
    /// raises its thread's count, then reads the mark (its fence is a compiler fence;
    /// `membarrier` on the tick's side makes it a full one, which the model writes as
    /// a SeqCst fence on both sides, and it also publishes what the carrier wrote
    /// before it, which the model writes as release and acquire on the count). The
    /// core-local state must never be touched by the carrier and by the taker at
    /// once.
    fn take_vs_critical_section(thread_fence: bool) {
        loom::model(move || {
            let count = Arc::new(AtomicU32::new(0));
            let mark = Arc::new(AtomicU8::new(NONE));
            let carrier = Arc::new(Carrier::default());
            let local = Arc::new(UnsafeCell::new(0u32));
            let thread_side = {
                let (count, mark, local) = (count.clone(), mark.clone(), local.clone());
                thread::spawn(move || {
                    // Two runtime calls in a row; each is a `PreemptGuard::of`,
                    // count 0 → 1, then the critical section on the core.
                    let mut entered = 0;
                    for _ in 0..2 {
                        count.store(1, Ordering::Relaxed);
                        if thread_fence {
                            fence(Ordering::SeqCst);
                        }
                        loop {
                            match mark.load(Ordering::Acquire) {
                                PENDING => thread::yield_now(),
                                ADRIFT => return entered,
                                _ => break,
                            }
                        }
                        // SAFETY: the model's claim: nobody else touches it now.
                        local.with_mut(|l| unsafe { *l += 1 });
                        entered += 1;
                        count.store(0, Ordering::Release);
                    }
                    entered
                })
            };
            // The tick's `take_stuck`.
            assert!(
                carrier
                    .state
                    .compare_exchange(
                        super::HELD,
                        super::TAKING,
                        Ordering::Relaxed,
                        Ordering::Relaxed
                    )
                    .is_ok()
            );
            mark.store(PENDING, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            let took = if count.load(Ordering::Acquire) != 0 {
                mark.store(NONE, Ordering::Release);
                false
            } else {
                // The taker writes the core-local state (`leave_adrift`).
                // SAFETY: the model's claim, as above.
                local.with_mut(|l| unsafe { *l += 10 });
                carrier.release();
                mark.store(ADRIFT, Ordering::Release);
                true
            };
            let entered = thread_side.join().unwrap();
            // Unless the tick took the core, the thread kept it for both calls
            // (and loom checks that no access to it ever overlapped).
            assert!(
                took || entered == 2,
                "the core was withdrawn but the thread lost it"
            );
        });
    }

    #[test]
    fn loom_take_vs_critical_section() {
        take_vs_critical_section(true);
    }

    /// Without the barrier on the carrier's side (what `membarrier` provides), the
    /// tick may read the old count while the carrier reads the old mark: both then
    /// touch the core.
    #[test]
    #[should_panic(expected = "Causality violation")]
    fn loom_take_needs_the_barrier() {
        take_vs_critical_section(false);
    }

    struct Model {
        carrier: Carrier,
        /// The core-local state: the times `T` was queued on the core.
        local: UnsafeCell<u32>,
        /// `T` was handed to another core (stands for the injection).
        injected: AtomicBool,
    }

    /// The signal handler's release against a spare and the returning thread. Carrier
    /// `A` runs `T` on a core stuck at schedule point 7; the tick asks (and asks
    /// again, refreshing its point); `A`'s handler lets the core go; a spare `B` and
    /// `A` itself (when `T` comes back) race to take it. `T` must end up queued
    /// exactly once.
    fn release_then_return(release: Ordering) {
        loom::model(move || {
            let m = Arc::new(Model {
                carrier: Carrier::default(),
                local: UnsafeCell::new(0),
                injected: AtomicBool::new(false),
            });
            assert!(m.carrier.ask(7));
            let tick = {
                let m = m.clone();
                thread::spawn(move || {
                    m.carrier.ask(7);
                })
            };
            let spare = {
                let m = m.clone();
                thread::spawn(move || {
                    if m.carrier.take() {
                        // B runs the core's scheduler: it reads what A left.
                        // SAFETY: the CAS made B the carrier.
                        m.local.with_mut(|q| unsafe { *q += 0 });
                    }
                })
            };
            // A's handler: T is outside the runtime, the core still at point 7.
            if m.carrier.asked_at(7) {
                // SAFETY: A is the carrier until it releases.
                m.local.with_mut(|q| unsafe { *q += 0 });
                m.carrier.release_with(release);
                // T comes back on A: take the core back and requeue T, or hand T over.
                if m.carrier.take() {
                    // SAFETY: the CAS made A the carrier again.
                    m.local.with_mut(|q| unsafe { *q += 1 });
                } else {
                    m.injected.store(true, Ordering::Release);
                }
            } else {
                // Still A's: T runs on and yields there.
                // SAFETY: A never let go.
                m.local.with_mut(|q| unsafe { *q += 1 });
            }
            tick.join().unwrap();
            spare.join().unwrap();
            // SAFETY: every thread is joined.
            let queued = m.local.with(|q| unsafe { *q });
            let injected = u32::from(m.injected.load(Ordering::Acquire));
            assert_eq!(queued + injected, 1, "T queued other than once");
        });
    }

    #[test]
    fn loom_handoff_vs_return() {
        release_then_return(Ordering::Release);
    }

    /// Without the release, the spare may run the core without seeing what its last
    /// carrier wrote: loom reports the unsynchronised access.
    #[test]
    #[should_panic(expected = "Causality violation")]
    fn loom_handoff_needs_the_release() {
        release_then_return(Ordering::Relaxed);
    }
}
