//! The life cycle of a core, and where a woken thread goes while its core leaves.
//!
//! ## States and their writers
//!
//! ```text
//! Unused ──start_core──▶ Active ──remove_core──▶ Leaving ──the core itself──▶ Evacuating
//!                          ▲                                                     │
//!                          └───────────start_core (add_core reuses it)─── Retired ◀┘ the core itself
//! ```
//!
//! - `Active`: written by `start_core` (under the admin lock), before the core's OS
//!   thread starts.
//! - `Leaving`: written by `remove_core` (a third party, under the admin lock). It
//!   says "place nothing new here" and nothing else: the core may still be running a
//!   thread, or be half-way through switching one out.
//! - `Evacuating`: written by **the core itself**, in its scheduler context, after the
//!   `finish_switch` of the last thread it ran. From then on none of its threads is on
//!   a CPU or mid-switch.
//! - `Retired`: written by the core itself once it has handed everything over.
//!
//! ## The routing rule
//!
//! A thread that blocks sets its wait bit (`SlotWord::block`) *before* its context is
//! saved: the switch happens later, in `schedule`. A waker that wins the wake CAS owns
//! making the thread runnable, but the thread may still be running on its core `H`.
//! So the waker hands it to `H` — whose schedule point takes it back, and resumes it
//! in place if it had not finished switching out — for as long as `H` is `Active` or
//! `Leaving` ([`CoreState::holds_its_threads`]). Only once `H` itself wrote
//! `Evacuating` may a waker send the thread elsewhere: that store follows `H`'s last
//! switch, so a waker that reads it (SeqCst; x86: a plain load after `H`'s `xchg`)
//! also sees the thread switched out.
//!
//! The same rule guards every route by a core's state: the wake paths
//! (`enqueue_woken_here`, `inject_anywhere`) and the sender's re-check before an
//! exchange-slot offer (`send_out`, which reroutes a list only for a core that no
//! longer holds its threads). An injection tries the home core's inbox first whatever
//! its state: the inbox closes after `Evacuating`, so a refused injection also means
//! the thread is switched out. Evacuation, the balancer and `migrate_to` move only
//! threads that are on a run queue or whose switch has finished, so the rule does not
//! constrain them.
//!
//! ## The grace period
//!
//! After writing `Evacuating`, the core waits until every other core passed a
//! schedule point (its epoch moved). A sender re-checks the destination's state right
//! before each offer, with no schedule point in between, so once the grace period is
//! over no offer to the leaving core can still be in flight, and its last take-in
//! sees everything that was sent to it.

/// Life cycle of a core (see the module docs for who writes each state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum CoreState {
    /// Never started.
    Unused = 0,
    /// Running and eligible for placement.
    Active = 1,
    /// Being removed: placement skips it, but threads it owns are still routed to it
    /// (it may still be switching one out).
    Leaving = 2,
    /// Removed from the core's own scheduler context, after its last switch: it
    /// hands everything it holds to the others, and threads it owned are routed
    /// elsewhere.
    Evacuating = 3,
    /// Removed; its OS thread is gone. `add_core` of its type may restart it.
    Retired = 4,
}

impl CoreState {
    /// The state stored as `byte`.
    #[inline]
    pub(crate) const fn from_byte(byte: u8) -> CoreState {
        match byte {
            1 => CoreState::Active,
            2 => CoreState::Leaving,
            3 => CoreState::Evacuating,
            4 => CoreState::Retired,
            _ => CoreState::Unused,
        }
    }

    /// Whether the core's OS thread runs (and passes schedule points).
    #[inline]
    pub(crate) const fn is_running(self) -> bool {
        matches!(
            self,
            CoreState::Active | CoreState::Leaving | CoreState::Evacuating
        )
    }

    /// Whether a thread whose home is a core in this state must be handed to that
    /// core, rather than to another: the core has not yet passed the switch that
    /// proves its threads are off the CPU (see the module docs).
    #[inline]
    pub(crate) const fn holds_its_threads(self) -> bool {
        matches!(self, CoreState::Active | CoreState::Leaving)
    }
}

#[cfg(all(test, loom))]
mod loom_leaving {
    //! Wake against switch-out against the core leaving. Thread `T` runs on core `H`
    //! and blocks; a waker `W` wins its wake and routes it by `H`'s state while a
    //! remover marks `H` leaving. `T` must never be resumed anywhere while `H` has not
    //! switched it out, and it must not be lost.
    use super::CoreState;
    use crate::task::slot::{Block, Channel, SlotWord, Wake};
    use loom::sync::Arc;
    use loom::sync::atomic::{AtomicBool, AtomicU8, Ordering};
    use loom::thread;

    struct Model {
        /// `H`'s state.
        state: AtomicU8,
        /// `T`'s slot word.
        word: SlotWord,
        /// `T` is on a CPU (the debug check of `Tcb::on_cpu`).
        on_cpu: AtomicBool,
        /// `T` sits in `H`'s incoming slot (stands for the exchange slot and inbox).
        at_home: AtomicBool,
        /// The waker is past its offer (stands for its epoch moving).
        waker_done: AtomicBool,
    }

    /// `T` is resumed by a core other than the one it blocked on.
    fn resume_elsewhere(m: &Model) {
        assert!(
            !m.on_cpu.load(Ordering::Acquire),
            "a thread was resumed elsewhere while its core was still switching it out"
        );
    }

    fn run(rule: fn(CoreState) -> bool) {
        loom::model(move || {
            let m = Arc::new(Model {
                state: AtomicU8::new(CoreState::Active as u8),
                word: SlotWord::new(),
                on_cpu: AtomicBool::new(true),
                at_home: AtomicBool::new(false),
                waker_done: AtomicBool::new(false),
            });
            m.word.activate();
            let g = m.word.generation();
            let remover = {
                let m = m.clone();
                thread::spawn(move || m.state.store(CoreState::Leaving as u8, Ordering::SeqCst))
            };
            let waker = {
                let m = m.clone();
                thread::spawn(move || {
                    if m.word.wake(Channel::Internal, g) == Wake::MustEnqueue {
                        let home = CoreState::from_byte(m.state.load(Ordering::SeqCst));
                        if rule(home) {
                            // The offer, re-checked against the state just read.
                            m.at_home.store(true, Ordering::Release);
                        } else {
                            resume_elsewhere(&m);
                        }
                    }
                    m.waker_done.store(true, Ordering::Release);
                })
            };
            // Core H, running T: T blocks.
            let slept = m.word.block(Channel::Internal, false) == Block::MustSleep;
            // T's schedule point: a wake that arrived already is taken back in place.
            let resumed_in_place = slept && m.at_home.swap(false, Ordering::Acquire);
            if slept && !resumed_in_place {
                // The next context's finish_switch: T is off the CPU.
                m.on_cpu.store(false, Ordering::Release);
                if CoreState::from_byte(m.state.load(Ordering::SeqCst)) == CoreState::Leaving {
                    // H halts and, in its scheduler context, evacuates.
                    m.state.store(CoreState::Evacuating as u8, Ordering::SeqCst);
                    // Grace period: the waker passes a schedule point.
                    while !m.waker_done.load(Ordering::Acquire) {
                        thread::yield_now();
                    }
                    if m.at_home.swap(false, Ordering::Acquire) {
                        // Taken in at the last take-in and evacuated.
                        resume_elsewhere(&m);
                    }
                } else {
                    // Still active: a later schedule point takes T in and runs it.
                    while !m.waker_done.load(Ordering::Acquire) {
                        thread::yield_now();
                    }
                    m.at_home.swap(false, Ordering::Acquire);
                }
            }
            remover.join().unwrap();
            waker.join().unwrap();
            assert!(
                !m.at_home.load(Ordering::Relaxed),
                "a woken thread was left in a slot nobody reads"
            );
        });
    }

    #[test]
    fn loom_wake_vs_switch_out_vs_leaving() {
        run(CoreState::holds_its_threads);
    }

    /// The rule before two-phase leaving ("route home only while Active") resumes the
    /// thread on another core while its own core still switches it out.
    #[test]
    #[should_panic(expected = "still switching it out")]
    fn loom_routing_by_active_alone_runs_a_thread_twice() {
        run(|s| s == CoreState::Active);
    }
}
