//! Work requests: how an idle core gets threads from a busy core of its type.
//!
//! A plain spawn stays on the spawner's core (`placement`), so work appears where it is
//! made. An idle core asks for some of it: it leaves a work request in its exchange
//! slot to the busiest core of its type (`exchange`: the request mark, one writer per
//! value as for lists). The busy core finds the request at its next schedule point,
//! when it scans its slots, and answers by sending up to half of its runnable threads
//! that are not bound to it, least urgent and oldest first (`Core::give`), through the
//! slot of the other direction; the requester takes them in like any list, and the
//! doorbell wakes it if it fell asleep meanwhile. The requester asks the victim to
//! reschedule and wakes it if it sleeps, so that a request never waits long in its
//! slot; it asks each victim at most once per idle spell. This is work-requesting with private
//! run queues (Acar, Charguéraud and Rainey, PPoPP 2013): no core ever takes from
//! another's run queue, so the queues stay unsynchronised and the handoff keeps no
//! read-modify-write instruction.
//!
//! Idle cores of a type do not all spin (Go's spinning rule): one at a time holds the
//! type's spinning token (`CoreSet::spinning`, a compare-and-swap on the idle path) and
//! spins, asking for work again each time its request was taken; the others ask once
//! and sleep. A core that queues a new thread while none of its type spins wakes one
//! sleeping sibling, handing it the token (`spin_token`), so that it comes to ask.

use std::sync::atomic::Ordering as StdOrdering;

use super::Core;
use super::core::CoreLocal;
use super::lifecycle::CoreState;
use crate::loom::Ordering;

impl Core {
    /// Answers the work request of core `from` (taken from its slot by `take_in`):
    /// queues up to half of this core's unbound runnable threads for it, or refuses.
    /// The caller's schedule point flushes them.
    #[cold]
    #[inline(never)]
    pub(super) fn answer(&self, l: &mut CoreLocal, from: usize) {
        let given = if self.state() == CoreState::Active {
            self.give(l, from, l.runq.len().div_ceil(2), true)
        } else {
            0
        };
        if given == 0 {
            l.stats.requests_refused += 1;
        } else {
            l.stats.requests_answered += 1;
            l.stats.stolen_out += given as u64;
        }
    }

    /// Asks the busiest active core of this core's type for threads, unless the last
    /// request is still pending. Called by an idle core, in its scheduler context.
    pub(super) fn ask_for_work(&self, l: &mut CoreLocal) {
        let set = self.set();
        if let Some(v) = l.asked {
            if !set.slots.is_free(self.id, v) {
                return;
            }
            l.asked = None;
        }
        let ty = self.ty.load(Ordering::Relaxed);
        let n = set.hwm.load(Ordering::Acquire);
        let mut best: Option<(u32, usize)> = None;
        for k in 0..n {
            let id = (l.victim_start + k) % n;
            let c = &set.cores[id];
            if id == self.id
                || l.spell_asked & (1 << id) != 0
                || c.ty.load(Ordering::Relaxed) != ty
                || c.state() != CoreState::Active
            {
                continue;
            }
            // A core with a thread running and at least one waiting has one to give.
            let load = c.published.load.load(Ordering::Relaxed);
            if load >= 2 && best.is_none_or(|(b, _)| load > b) {
                best = Some((load, id));
            }
        }
        l.victim_start = l.victim_start.wrapping_add(1);
        let Some((_, victim)) = best else {
            return;
        };
        // The victim's state was read just above, with no schedule point since: a
        // leaving core's grace period covers this offer like any other (`lifecycle`).
        if set.slots.request(self.id, victim) {
            l.asked = Some(victim);
            l.spell_asked |= 1 << victim;
            l.stats.requests_sent += 1;
            // No request waits long in the victim's slot: it would hold back our next
            // list to it. A running victim is asked to reschedule, so it answers at
            // its next `preempt_point` or runtime call too, not only at its next
            // switch (release: the request is in the slot before the flag is seen).
            let v = &set.cores[victim];
            v.resched.ask();
            // A sleeping victim looks at its slots after announcing sleep, and this
            // wake pairs with that (the doorbell's Dekker pattern), so either it sees
            // the request or it is woken to take it.
            v.doorbell.wake_if_sleeping();
        }
    }

    /// After a thread was queued here by a spawn: if threads now wait here while no
    /// core of this type looks for work and one sleeps, wakes one with the spinning
    /// token so that it comes to ask. Two relaxed loads when there is nothing to do.
    #[inline]
    pub(super) fn share_new_work(&self, l: &mut CoreLocal) {
        let set = self.set();
        let ty = self.ty.load(Ordering::Relaxed);
        if l.runq.len() == 0
            || set.sleeping[ty].load(StdOrdering::Relaxed) == 0
            || set.spinning[ty].load(StdOrdering::Relaxed) != 0
        {
            return;
        }
        self.wake_sibling(l, ty);
    }

    #[cold]
    #[inline(never)]
    fn wake_sibling(&self, l: &mut CoreLocal, ty: usize) {
        let set = self.set();
        // Take the token on the sibling's behalf: no second waker, no second spinner.
        if set.spinning[ty]
            .compare_exchange(0, 1, StdOrdering::Relaxed, StdOrdering::Relaxed)
            .is_err()
        {
            return;
        }
        // Start after this core, so that wakes spread over the sleeping siblings.
        let cores = set.started();
        let n = cores.len();
        for k in 1..=n {
            let c = &cores[(self.id + k) % n];
            if c.id == self.id
                || c.ty.load(Ordering::Relaxed) != ty
                || c.state() != CoreState::Active
                || c.spin_token.load(StdOrdering::Relaxed)
            {
                continue;
            }
            c.spin_token.store(true, StdOrdering::Relaxed);
            if c.doorbell.wake_if_sleeping() {
                l.stats.sibling_wakes += 1;
                return;
            }
            // Awake after all: it will not look at the token soon; take it back.
            if c.spin_token.swap(false, StdOrdering::Relaxed) {
                continue;
            }
            // It did take the token (it is in its idle loop): it spins now.
            return;
        }
        set.spinning[ty].store(0, StdOrdering::Relaxed);
    }

    /// Takes the type's spinning token for this idle core, or the one a waker handed
    /// it. Returns whether this core may spin.
    pub(super) fn start_spinning(&self) -> bool {
        if self.spin_token.swap(false, StdOrdering::Relaxed) {
            return true;
        }
        let ty = self.ty.load(Ordering::Relaxed);
        self.set().spinning[ty]
            .compare_exchange(0, 1, StdOrdering::Relaxed, StdOrdering::Relaxed)
            .is_ok()
    }

    /// Gives the type's spinning token back.
    pub(super) fn stop_spinning(&self) {
        let ty = self.ty.load(Ordering::Relaxed);
        self.set().spinning[ty].store(0, StdOrdering::Relaxed);
    }

    /// Gives back a token a waker handed this core after its last idle loop (a core
    /// that stops, or that got work before it idled again). Out of line: the swap
    /// stays out of `take_in`, which has no read-modify-write instruction.
    #[cold]
    #[inline(never)]
    pub(crate) fn drop_spin_token(&self) {
        if self.spin_token.swap(false, StdOrdering::Relaxed) {
            self.stop_spinning();
        }
    }
}

#[cfg(all(test, loom))]
mod loom_steal {
    //! A work request against the victim going to sleep, and the answer against the
    //! requester going to sleep: no request waits in a sleeping core's slot, and no
    //! answer waits in a sleeping requester's slot.
    use loom::sync::Arc;
    use loom::thread;

    use crate::sched::doorbell::Doorbell;
    use crate::sched::exchange::Slots;

    /// Requester and victim core ids.
    const R: usize = 0;
    const V: usize = 1;

    /// The victim's answer: take the request from its slot and send its one thread
    /// back through the other slot, then ring the requester. Returns whether it had to
    /// wake the requester.
    fn answer(slots: &Slots<u64>, bell_r: &Doorbell) -> bool {
        let p = slots.take(V, R);
        assert!(
            Slots::is_request(p),
            "the victim found no request to answer"
        );
        assert!(
            slots.offer(V, R, Box::into_raw(Box::new(42u64))),
            "the answer's slot is busy"
        );
        bell_r.wake_if_sleeping()
    }

    #[test]
    fn loom_request_and_answer_vs_sleep() {
        loom::model(|| {
            let slots = Arc::new(Slots::<u64>::new(2));
            let (bell_r, bell_v) = (Arc::new(Doorbell::new()), Arc::new(Doorbell::new()));
            let victim = {
                let (slots, bell_r, bell_v) = (slots.clone(), bell_r.clone(), bell_v.clone());
                thread::spawn(move || {
                    // The victim goes idle: it sleeps unless something is in its slots.
                    let sleeps = bell_v.prepare_sleep(|| slots.any_for(V, 2));
                    let woke_r = (!sleeps).then(|| answer(&slots, &bell_r));
                    (sleeps, woke_r)
                })
            };
            // The requester asks, then rings the victim (`ask_for_work`).
            assert!(slots.request(R, V));
            let woke_v = bell_v.wake_if_sleeping();
            // Then it goes idle itself.
            let r_sleeps = bell_r.prepare_sleep(|| slots.any_for(R, 2));
            let (v_slept, woke_r) = victim.join().unwrap();
            let woke_r = match woke_r {
                Some(w) => w,
                None => {
                    assert!(woke_v, "a request waits in the slot of a sleeping core");
                    // Woken, the victim answers.
                    answer(&slots, &bell_r)
                }
            };
            let _ = v_slept;
            if r_sleeps {
                assert!(
                    woke_r,
                    "an answer waits in the slot of a sleeping requester"
                );
            }
            let p = slots.take(R, V);
            assert!(!p.is_null() && !Slots::is_request(p), "the answer was lost");
            // SAFETY: the model's node, received once.
            drop(unsafe { Box::from_raw(p) });
            assert!(slots.is_free(R, V), "the request was not taken");
        });
    }
}
