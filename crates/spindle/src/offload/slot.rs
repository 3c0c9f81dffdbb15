//! One request slot: a cache line shared by the threads of one worker core and the
//! service loop on the hypercore.
//!
//! ```text
//!          claim (worker core's OS thread: load FREE, store CLAIMED)
//!   FREE ────────────────────────────────────────────────▶ CLAIMED
//!    ▲                                                        │ publish: number and
//!    │ release (the waiting thread, after                     │ arguments (relaxed),
//!    │ reading the result; or after seeing                    │ then READY (release)
//!    │ READY with the service dead)                           ▼
//!   DONE ◀──────────────────────────────────────────────── READY
//!          complete (service loop: result (relaxed), then DONE (release))
//! ```
//!
//! Each transition has one writer, so no read-modify-write instruction is needed: the
//! worker core's OS thread claims and publishes (threads of one core never run at the
//! same time, and nothing between the load of FREE and the store of CLAIMED is a
//! schedule point), the service loop completes, the waiting thread releases. The
//! release/acquire pairs carry the payload: READY carries number and arguments to the
//! service, DONE carries the result back, FREE carries "the previous owner is done
//! reading" to the next claimer.
//!
//! A ring request (its number marked `RING`, `offload::ring`) skips DONE: the
//! service loop, once it has read the number and arguments, stores FREE (release)
//! itself — READY → FREE, whose one writer for such a request is the service — and
//! answers in the caller's `Pending` record instead. The caller never writes FREE
//! for it unless the service died without taking it (then the slot is still READY
//! and the service never touches it again).
//!
//! The service never touches a slot once it has published that it is dead (see
//! `Service::die`), so a thread that sees READY after it saw the service dead may take
//! the slot back and run the call itself: the call runs exactly once.

use crate::loom::{AtomicU32, AtomicU64, Ordering};

pub(crate) const FREE: u32 = 0;
pub(crate) const CLAIMED: u32 = 1;
pub(crate) const READY: u32 = 2;
pub(crate) const DONE: u32 = 3;

/// A request slot: state, call number, six arguments, result — 64 bytes.
#[repr(C, align(64))]
pub(crate) struct ReqSlot {
    state: AtomicU32,
    nr: AtomicU32,
    args: [AtomicU64; 6],
    result: AtomicU64,
}

#[cfg(not(loom))]
const _: () = assert!(size_of::<ReqSlot>() == 64);

impl ReqSlot {
    pub(crate) fn new() -> ReqSlot {
        ReqSlot {
            state: AtomicU32::new(FREE),
            nr: AtomicU32::new(0),
            args: std::array::from_fn(|_| AtomicU64::new(0)),
            result: AtomicU64::new(0),
        }
    }

    /// The state, as the owner or the service reads it (acquire: the payload of the
    /// transition into it is visible).
    #[inline]
    pub(crate) fn state(&self) -> u32 {
        self.state.load(Ordering::Acquire)
    }

    /// Claims the slot if it is free. Only the OS thread of the slot's worker core
    /// calls this (one writer of CLAIMED), with no schedule point before `publish`.
    #[inline]
    pub(crate) fn try_claim(&self) -> bool {
        // Acquire: pairs with the release of FREE, so the previous owner's reads of the
        // result are done before we overwrite the slot.
        if self.state.load(Ordering::Acquire) != FREE {
            return false;
        }
        self.state.store(CLAIMED, Ordering::Relaxed);
        true
    }

    /// Writes the request and makes it visible to the service (CLAIMED → READY).
    #[inline]
    pub(crate) fn publish(&self, nr: u32, args: [u64; 6]) {
        self.nr.store(nr, Ordering::Relaxed);
        for (a, v) in self.args.iter().zip(args) {
            a.store(v, Ordering::Relaxed);
        }
        // Release: the number and arguments travel with READY.
        self.state.store(READY, Ordering::Release);
    }

    /// The service's read of a ready request: its number and arguments.
    #[inline]
    pub(crate) fn take_ready(&self) -> Option<(u32, [u64; 6])> {
        if self.state() != READY {
            return None;
        }
        let args = std::array::from_fn(|i| self.args[i].load(Ordering::Relaxed));
        Some((self.nr.load(Ordering::Relaxed), args))
    }

    /// The service's completion (READY → DONE): the raw kernel result.
    #[inline]
    pub(crate) fn complete(&self, result: i64) {
        self.result.store(result as u64, Ordering::Relaxed);
        // Release: the result travels with DONE.
        self.state.store(DONE, Ordering::Release);
    }

    /// The owner's read of a completed request; `None` while it is not done.
    #[inline]
    pub(crate) fn result(&self) -> Option<i64> {
        if self.state() != DONE {
            return None;
        }
        Some(self.result.load(Ordering::Relaxed) as i64)
    }

    /// The owner gives the slot back (DONE, or READY with the service dead → FREE).
    #[inline]
    pub(crate) fn release(&self) {
        self.state.store(FREE, Ordering::Release);
    }
}

#[cfg(all(test, loom))]
mod loom_offload {
    use super::*;
    use crate::loom::{Arc, AtomicBool};
    use crate::sched::doorbell::Doorbell;
    use loom::thread;

    /// A request travels worker → service → worker: the service sees the arguments
    /// the worker wrote, the worker sees the result, and after release the next
    /// claimer finds the slot free.
    #[test]
    fn loom_slot_round_trip() {
        loom::model(|| {
            let slot = Arc::new(ReqSlot::new());
            let service = {
                let slot = slot.clone();
                thread::spawn(move || {
                    // One pass of the service loop over this slot.
                    let Some((nr, args)) = slot.take_ready() else {
                        return false;
                    };
                    assert_eq!((nr, args), (39, [1, 2, 3, 4, 5, 6]));
                    slot.complete(args.iter().sum::<u64>() as i64);
                    true
                })
            };
            assert!(slot.try_claim());
            slot.publish(39, [1, 2, 3, 4, 5, 6]);
            let served = service.join().unwrap();
            if served {
                assert_eq!(slot.result(), Some(21));
                slot.release();
                assert!(
                    slot.try_claim(),
                    "a released slot is free for the next call"
                );
            } else {
                assert_eq!(slot.state(), READY);
                assert_eq!(slot.result(), None);
            }
        });
    }

    /// The service dies while a request is in flight: the call runs exactly once,
    /// either by the service (the owner sees DONE) or by the owner (it sees READY
    /// after it saw the service dead, and takes the slot back).
    #[test]
    fn loom_slot_service_death_runs_once() {
        loom::model(|| {
            let slot = Arc::new(ReqSlot::new());
            let dead = Arc::new(AtomicBool::new(false));
            let runs = Arc::new(AtomicU32::new(0));
            let service = {
                let (slot, dead, runs) = (slot.clone(), dead.clone(), runs.clone());
                thread::spawn(move || {
                    if slot.take_ready().is_some() {
                        runs.store(runs.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                        slot.complete(0);
                    }
                    // Dies after its pass: it never touches a slot again.
                    dead.store(true, Ordering::Release);
                })
            };
            assert!(slot.try_claim());
            slot.publish(39, [0; 6]);
            // The owner waits as `offload` does: `dead` first, then the state.
            let ran_here = loop {
                let is_dead = dead.load(Ordering::Acquire);
                if slot.result().is_some() {
                    break false;
                }
                if is_dead {
                    break true;
                }
                thread::yield_now();
            };
            service.join().unwrap();
            let total = runs.load(Ordering::Relaxed) + u32::from(ran_here);
            assert_eq!(total, 1, "the call ran {total} times");
        });
    }

    /// A caller publishing while the service goes to sleep: the service either sees
    /// the READY slot or is woken (the doorbell's Dekker handshake).
    #[test]
    fn loom_service_doorbell_no_lost_wakeup() {
        loom::model(|| {
            let bell = Arc::new(Doorbell::new());
            let slot = Arc::new(ReqSlot::new());
            let caller = {
                let (bell, slot) = (bell.clone(), slot.clone());
                thread::spawn(move || {
                    assert!(slot.try_claim());
                    slot.publish(39, [0; 6]);
                    bell.wake_if_sleeping()
                })
            };
            let sleeps = bell.prepare_sleep(|| slot.state() == READY);
            let woke = caller.join().unwrap();
            if sleeps {
                assert!(
                    woke,
                    "the service sleeps with a request posted and nobody to wake it"
                );
            }
        });
    }

    /// The service core going to sleep in its ring (or `epoll_wait`) while a caller
    /// publishes: the service either sees the READY slot before it sleeps, or the
    /// caller's doorbell ring writes the eventfd the ring's read (or the epoll set)
    /// waits on, which ends the sleep. The eventfd is modelled by its counter: the
    /// sleep ends when it is above zero.
    #[test]
    fn loom_ring_sleep_vs_request() {
        loom::model(|| {
            let bell = Arc::new(Doorbell::new());
            let slot = Arc::new(ReqSlot::new());
            let eventfd = Arc::new(AtomicU64::new(0));
            let caller = {
                let (bell, slot, eventfd) = (bell.clone(), slot.clone(), eventfd.clone());
                thread::spawn(move || {
                    assert!(slot.try_claim());
                    slot.publish(45, [0; 6]);
                    // `Doorbell::wake` of a core with a kick eventfd: a write to it.
                    if bell.wake_if_sleeping() {
                        eventfd.fetch_add(1, Ordering::Release);
                    }
                })
            };
            // The service's idle loop: announce the kernel sleep (mark 1), then look.
            let sleeps = bell.prepare_sleep_as(1, || slot.state() == READY);
            caller.join().unwrap();
            if sleeps {
                assert!(
                    eventfd.load(Ordering::Acquire) > 0,
                    "the service sleeps in its ring with a request posted and no kick"
                );
            }
        });
    }

    /// The service completing while the worker core goes to sleep: the worker either
    /// sees its slot leave READY or is woken.
    #[test]
    fn loom_completion_wakes_idle_worker() {
        loom::model(|| {
            let bell = Arc::new(Doorbell::new());
            let slot = Arc::new(ReqSlot::new());
            assert!(slot.try_claim());
            slot.publish(39, [0; 6]);
            let service = {
                let (bell, slot) = (bell.clone(), slot.clone());
                thread::spawn(move || {
                    slot.complete(7);
                    bell.wake_if_sleeping()
                })
            };
            let sleeps = bell.prepare_sleep(|| slot.state() != READY);
            let woke = service.join().unwrap();
            if sleeps {
                assert!(
                    woke,
                    "the worker sleeps with a completion nobody told it about"
                );
            } else {
                assert_eq!(slot.result(), Some(7));
            }
        });
    }
}
