//! Exchange slots: how threads cross from one core to another.
//!
//! Every ordered pair of cores `(src, dst)` has one slot: a pointer to a list of
//! threads that `src` hands to `dst`, or null. The protocol has no read-modify-write
//! instruction, because each slot has exactly one writer of each kind of value:
//!
//! - only `src` writes a non-null list, and only while the slot is null ([`Slots::offer`]:
//!   acquire load sees null, then a release store of the list head);
//! - only `dst` writes null, and only while the slot holds a list ([`Slots::take`]:
//!   acquire load sees a list, then a release store of null).
//!
//! The release store of the list publishes the TCBs' `next` links and everything the
//! sender wrote into those threads; the receiver's acquire load makes them visible.
//! Null is the hand-back: once `src` sees it again, `dst` owns every thread of the
//! previous list. A sender whose slot is still full keeps the threads in its local
//! dispatcher list (touched by that core alone) and offers them again at its next
//! schedule point.
//!
//! ## Work requests
//!
//! An idle core `src` asks a busy core `dst` of its type for threads by leaving the
//! request mark ([`Slots::request`]: a non-null value that is no list) in its own slot
//! to `dst`, under the same rule as a list: only `src` writes it, only while the slot
//! is null. `dst` takes it like a list at its next schedule point ([`Slots::take`],
//! then [`Slots::is_request`]) and answers through the slot of the other direction,
//! `(dst, src)`, with the threads it gives, or not at all. The requester sees its
//! request taken when its slot is null again ([`Slots::is_free`]). So a request adds
//! no writer and no instruction to the protocol, and the receiver's scan that finds
//! lists finds requests too.
//!
//! Waking a destination that sleeps in the kernel is a separate protocol
//! ([`Doorbell::wake_if_sleeping`](super::doorbell::Doorbell::wake_if_sleeping)), with
//! a full fence; it is outside these functions, which a test checks on the compiled
//! code (`tests/no_rmw.rs`).

use crossbeam_utils::CachePadded;

use crate::loom::{AtomicPtr, Ordering};

/// The exchange slots of a runtime of up to `cap` cores. The slot of `(src, dst)` is
/// `cells[dst * cap + src]`, so a receiver scans the slots addressed to it in one run
/// of memory; each slot has its own cache line, shared by its two cores only.
pub(crate) struct Slots<T> {
    cap: usize,
    cells: Box<[CachePadded<AtomicPtr<T>>]>,
}

impl<T> Slots<T> {
    /// Empty slots for `cap` cores.
    pub(crate) fn new(cap: usize) -> Slots<T> {
        Slots {
            cap,
            cells: (0..cap * cap)
                .map(|_| CachePadded::new(AtomicPtr::new(std::ptr::null_mut())))
                .collect(),
        }
    }

    /// The receiver's half: takes the list `src` left for `dst`, or returns null.
    /// Only `dst` may call this.
    #[inline(never)]
    pub(crate) fn take(&self, dst: usize, src: usize) -> *mut T {
        let cell = &self.cells[dst * self.cap + src];
        // Acquire: pairs with the release in `offer`; the list's links and contents
        // are visible from here on.
        let head = cell.load(Ordering::Acquire);
        if !head.is_null() {
            // Release: hands the slot back; the sender's acquire in `offer` orders our
            // reads of the old list before its next writes.
            cell.store(std::ptr::null_mut(), Ordering::Release);
        }
        head
    }

    /// The sender's half: publishes the list `head` from `src` to `dst` if the slot
    /// is free, and returns whether it did. Only `src` may call this.
    #[inline(never)]
    pub(crate) fn offer(&self, src: usize, dst: usize, head: *mut T) -> bool {
        let cell = &self.cells[dst * self.cap + src];
        // Acquire: pairs with the release in `take`.
        if !cell.load(Ordering::Acquire).is_null() {
            return false;
        }
        // Release: publishes the list (see the module docs).
        cell.store(head, Ordering::Release);
        true
    }

    /// The request mark (see the module docs): an address no list can have.
    #[inline(always)]
    fn mark() -> *mut T {
        std::ptr::without_provenance_mut(1)
    }

    /// The requester's half of a work request: leaves the request mark in the slot
    /// from `src` to `dst` if it is free, and returns whether it did. Only `src` may
    /// call this.
    pub(crate) fn request(&self, src: usize, dst: usize) -> bool {
        self.offer(src, dst, Self::mark())
    }

    /// Whether a value [`Slots::take`] returned is a work request, not a list.
    #[inline(always)]
    pub(crate) fn is_request(p: *mut T) -> bool {
        p == Self::mark()
    }

    /// Whether the slot from `src` to `dst` is empty: a request `src` left there has
    /// been taken. Relaxed: a look by `src`, which acts on it only through `offer`.
    pub(crate) fn is_free(&self, src: usize, dst: usize) -> bool {
        self.cells[dst * self.cap + src]
            .load(Ordering::Relaxed)
            .is_null()
    }

    /// Whether any of the first `n` cores left something for `dst` (a relaxed peek for
    /// the idle loop; the taking is done by [`Slots::take`]).
    pub(crate) fn any_for(&self, dst: usize, n: usize) -> bool {
        let row = &self.cells[dst * self.cap..dst * self.cap + n.min(self.cap)];
        row.iter().any(|c| !c.load(Ordering::Relaxed).is_null())
    }
}

#[cfg(all(test, loom))]
mod loom_exchange {
    //! The slot protocol between 2 and 3 cores: every node sent arrives exactly once,
    //! and a node's contents written before sending are seen by the receiver.
    use super::*;
    use crate::sched::doorbell::Doorbell;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;
    use loom::thread;

    struct Node {
        id: usize,
        /// Written by the sender before the handoff, read by the receiver after it
        /// (loom flags a data race if the slot does not order them).
        payload: UnsafeCell<usize>,
        next: UnsafeCell<*mut Node>,
    }

    /// One core of the model: its local dispatcher lists (one per destination), and
    /// the ids it received.
    struct ModelCore {
        me: usize,
        out: Vec<Vec<*mut Node>>,
        got: Vec<usize>,
    }

    impl ModelCore {
        fn take_in(&mut self, slots: &Slots<Node>, cores: usize) {
            for src in 0..cores {
                let mut p = slots.take(self.me, src);
                while !p.is_null() {
                    // SAFETY: `take` handed us the list; its nodes are ours now.
                    let (id, payload, next) = unsafe {
                        let n = &*p;
                        (n.id, n.payload.with(|v| *v), n.next.with(|v| *v))
                    };
                    assert_eq!(payload, id * 10, "payload written before send not seen");
                    self.got.push(id);
                    // SAFETY: nodes were leaked from boxes by the model and are received once; we free them here.
                    drop(unsafe { Box::from_raw(p) });
                    p = next;
                }
            }
        }

        /// Offers every non-empty dispatcher list; returns the destinations served.
        fn send_out(&mut self, slots: &Slots<Node>) -> Vec<usize> {
            let mut sent = Vec::new();
            for dst in 0..self.out.len() {
                if self.out[dst].is_empty() {
                    continue;
                }
                // Link the list (sender-local writes, published by `offer`).
                let list = &self.out[dst];
                for w in list.windows(2) {
                    // SAFETY: the nodes are ours until offered.
                    unsafe { (*w[0]).next.with_mut(|v| *v = w[1]) };
                }
                // SAFETY: as above.
                unsafe {
                    (*list[list.len() - 1])
                        .next
                        .with_mut(|v| *v = std::ptr::null_mut())
                };
                if slots.offer(self.me, dst, list[0]) {
                    self.out[dst].clear();
                    sent.push(dst);
                }
            }
            sent
        }
    }

    fn node(id: usize) -> *mut Node {
        Box::into_raw(Box::new(Node {
            id,
            payload: UnsafeCell::new(id * 10),
            next: UnsafeCell::new(std::ptr::null_mut()),
        }))
    }

    /// Each core sends `plan[me]` = [(dst, ids)] in schedule points, takes in until it
    /// has received `expect[me]` ids, and returns them.
    fn run_model(cores: usize, plan: Vec<Vec<(usize, usize)>>, expect: Vec<Vec<usize>>) {
        let mut model = loom::model::Builder::new();
        // The take-in/send-out loop spins until everything arrived: allow the branches.
        model.max_branches = 100_000;
        model.check(move || {
            let slots = Arc::new(Slots::<Node>::new(cores));
            let handles: Vec<_> = (0..cores)
                .map(|me| {
                    let slots = slots.clone();
                    let plan = plan[me].clone();
                    let mut want = expect[me].clone();
                    thread::spawn(move || {
                        let mut c = ModelCore {
                            me,
                            out: vec![Vec::new(); cores],
                            got: Vec::new(),
                        };
                        for (dst, id) in plan {
                            c.out[dst].push(node(id));
                            // A schedule point: take in, then send out.
                            c.take_in(&slots, cores);
                            c.send_out(&slots);
                        }
                        while c.got.len() < want.len() || c.out.iter().any(|o| !o.is_empty()) {
                            c.take_in(&slots, cores);
                            c.send_out(&slots);
                            thread::yield_now();
                        }
                        let mut got = c.got;
                        got.sort_unstable();
                        want.sort_unstable();
                        assert_eq!(got, want, "core {me}: lost or duplicated threads");
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
        });
    }

    #[test]
    fn loom_two_cores_batches_both_ways() {
        // Core 0 sends 1 and 2 to core 1 (possibly as one list or two); core 1 sends 3
        // to core 0.
        run_model(
            2,
            vec![vec![(1, 1), (1, 2)], vec![(0, 3)]],
            vec![vec![3], vec![1, 2]],
        );
    }

    #[test]
    fn loom_three_cores_two_senders_one_destination() {
        // 0 → 2 and 1 → 2 (two senders share destination 2), 2 → 0.
        run_model(
            3,
            vec![vec![(2, 1)], vec![(2, 2)], vec![(0, 3)]],
            vec![vec![3], vec![], vec![1, 2]],
        );
    }

    /// A sender publishing into a slot races the destination going to sleep: the
    /// destination either sees the list before sleeping or is woken.
    #[test]
    fn loom_offer_vs_sleep_no_lost_wakeup() {
        loom::model(|| {
            let slots = Arc::new(Slots::<Node>::new(2));
            let bell = Arc::new(Doorbell::new());
            let sender = {
                let (slots, bell) = (slots.clone(), bell.clone());
                thread::spawn(move || {
                    assert!(slots.offer(0, 1, node(7)));
                    bell.wake_if_sleeping()
                })
            };
            let sleeps = bell.prepare_sleep(|| slots.any_for(1, 2));
            let woke = sender.join().unwrap();
            if sleeps {
                assert!(
                    woke,
                    "core 1 sleeps with a list in its slot and nobody wakes it"
                );
            }
            let p = slots.take(1, 0);
            assert!(!p.is_null());
            // SAFETY: the model's node, received once.
            drop(unsafe { Box::from_raw(p) });
        });
    }
}
