//! The wait node and wait list every `sync` type is built on.
//!
//! A blocked caller is represented by a [`Node`]: a reference-counted record of *who*
//! waits (a spindle thread, by its [`Waiter`] id, or an OS thread) and a `state` word
//! that is 0 while it waits and the notification value once it has been notified.
//! Nodes sit in [`WaitList`]s kept inside each primitive's small internal lock.
//!
//! Protocol (see the module docs of `sync` for why no wakeup is lost):
//!
//! 1. The waiter, holding the primitive's internal lock, checks its condition, pushes
//!    a fresh node and releases the lock; then [`Node::wait`]s until `state != 0`.
//! 2. The waker, holding the same lock, changes the primitive's state, pops the node
//!    and stores the notification value with release ordering ([`Notify::new`]); after
//!    releasing the lock it wakes the waiter ([`Notify::wake`]): `Waiter::wake` for a
//!    spindle thread, `futex_wake` on `state` for an OS thread.
//! 3. A waiter whose deadline passes takes the lock again and looks at `state`: it is
//!    only ever written under that lock, so either the waiter is still in the list (it
//!    removes itself and reports a timeout) or it was notified (it acts on the
//!    notification as if it had come in time). A notification is therefore never
//!    dropped by a racing timeout.
//!
//! A select waits on several lists at once: each of its operations queues an entry
//! naming the select's one [`Group`] and the operation, and the group's `chosen` word
//! is 0 until a notifier claims it. Step 2 for such an entry is a CAS of `chosen` from
//! 0 to the operation + 1, made under the entry's list lock; a notifier whose CAS fails
//! found a select that another list (or its own deadline) already decided, drops the
//! entry and notifies the next waiter of its list instead, so no wakeup is spent on a
//! select that will not act on it. Step 3 for a select is its own CAS of `chosen` from
//! 0 to [`CLOSED`]: it either closes the group (no notifier will claim it) or learns
//! which operation won. The entries of a decided select are not taken out one by one
//! (that would lock every list of the select again): any notifier drops them, a list
//! drops those at its front when a select queues, and sweeps them all whenever it has
//! doubled since its last sweep, so a list holds at most twice its live waiters, plus
//! a few.
//!
//! The node is heap-allocated (an `Arc`) rather than on the waiter's stack: the waker
//! holds its own reference while it wakes, so the waiter may return and go away the
//! moment it sees `state != 0`; and a spindle thread that is abandoned by its runtime
//! while blocked (its stack reclaimed without unwinding) leaves a valid node behind,
//! whose later wake is a harmless stale id.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::loom::{Arc, AtomicU32, Mutex, MutexGuard, Ordering};
use crate::sched::guard::PreemptGuard;
use crate::sched::wait::Waiter;
use crate::task::dump::WaitReason;

/// How a node's owner blocks.
#[derive(Clone, Copy, Debug)]
enum Who {
    /// A spindle thread: blocks in `block_internal`, woken by `Waiter::wake`.
    Spindle(Waiter),
    /// An OS thread: blocks in `futex_wait` on the node's state word.
    Os,
}

/// Spins (checking the state word) this many times before an OS thread sleeps in the
/// kernel. Spindle threads do not spin: their waker often runs on the same core.
const OS_SPIN: u32 = 64;

/// One blocked caller. See the module docs.
#[derive(Debug)]
pub(crate) struct Node {
    /// 0 while waiting; the notification value (never 0) once notified. Written only
    /// under the owning primitive's internal lock.
    state: AtomicU32,
    who: Who,
    /// Immutable per-wait data for the waker (e.g. "hand the mutex over to me").
    tag: u32,
}

/// `Group::chosen` once the select closed it itself (timeout, unwind, or an operation
/// found ready while it registered): no notifier may claim it any more.
pub(crate) const CLOSED: u32 = u32::MAX;

/// The decision of one blocked select, named by the list entries of its operations.
#[derive(Debug)]
pub(crate) struct Group {
    /// 0 while open; `op + 1` once a notifier claimed operation `op`; [`CLOSED`] once
    /// the select closed it. Leaves 0 exactly once, by CAS (the claim's, or `close`'s).
    chosen: AtomicU32,
    who: Who,
}

impl Group {
    /// An open group for the calling thread.
    pub(crate) fn new() -> Arc<Group> {
        Arc::new(Group {
            chosen: AtomicU32::new(0),
            who: Who::current(),
        })
    }

    /// Makes operation `op` the one this select acts on (step 2), with its list's
    /// lock held; false if the select was decided already (another operation, or the
    /// select itself, closed it). AcqRel: publishes the notifier's state change to
    /// the select, which reads `chosen` with acquire (or fails its `close` CAS on it).
    fn claim(&self, op: u32) -> bool {
        self.chosen
            .compare_exchange(0, op + 1, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Whether the select was decided (claimed or closed).
    fn decided(&self) -> bool {
        self.chosen.load(Ordering::Acquire) != 0
    }

    /// Blocks until a notifier claims the group, or `deadline` passes; returns the
    /// claimed `op + 1`, or 0 (a hint only: [`Group::close`] decides).
    pub(crate) fn wait(&self, deadline: Option<Instant>, reason: WaitReason) -> u32 {
        wait_word(&self.chosen, self.who, deadline, reason)
    }

    /// Closes the group unless a notifier claimed it first. `Ok` if closed (no
    /// notification was or will be made for it); `Err(op)` if operation `op` was
    /// claimed, whose notifier spent a wakeup on this select. AcqRel: pairs with the
    /// claim's CAS, so what the notifier wrote before is visible.
    pub(crate) fn close(&self) -> Result<(), u32> {
        match self
            .chosen
            .compare_exchange(0, CLOSED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Ok(()),
            Err(v) => Err(v - 1),
        }
    }
}

impl Who {
    fn current() -> Who {
        #[cfg(not(loom))]
        return match Waiter::current() {
            Some(w) => Who::Spindle(w),
            None => Who::Os,
        };
        #[cfg(loom)]
        Who::Os
    }
}

impl Node {
    /// A node for the calling thread (spindle or OS), waiting, carrying `tag`.
    pub(crate) fn new(tag: u32) -> Arc<Node> {
        Arc::new(Node {
            state: AtomicU32::new(0),
            who: Who::current(),
            tag,
        })
    }

    /// Stores the notification `value` (step 2), with the list's lock held.
    fn claim(&self, value: u32) {
        debug_assert_eq!(self.state.load(Ordering::Relaxed), 0, "node notified twice");
        // Release: the waiter's acquire load of `state` sees everything written
        // before, e.g. the data of a mutex handed over.
        self.state.store(value, Ordering::Release);
    }

    /// The notification value, 0 if not notified yet (acquire: pairs with the release
    /// store of the notifier, so everything it wrote before is visible).
    #[inline]
    pub(crate) fn notified(&self) -> u32 {
        self.state.load(Ordering::Acquire)
    }

    /// Blocks the caller until the node is notified, or `deadline` passes. Returns the
    /// notification value, or 0 if the deadline passed first. A return of 0 is only a
    /// hint: the caller must take the lock and re-read [`Node::notified`] (step 3 of
    /// the module docs).
    /// `reason` is what the thread dump shows while it sleeps.
    pub(crate) fn wait(&self, deadline: Option<Instant>, reason: WaitReason) -> u32 {
        wait_word(&self.state, self.who, deadline, reason)
    }
}

/// Blocks `who` (the caller) until `word` is non-zero or `deadline` passes; returns
/// the word, 0 on the deadline.
fn wait_word(word: &AtomicU32, who: Who, deadline: Option<Instant>, reason: WaitReason) -> u32 {
    match who {
        #[cfg(not(loom))]
        Who::Spindle(_) => loop {
            // Acquire: pairs with the notifier's release store or claiming CAS.
            let v = word.load(Ordering::Acquire);
            if v != 0 {
                return v;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return 0;
            }
            // May return spuriously (stale token, timer): re-checked above.
            crate::sched::wait::block_internal(deadline, reason);
        },
        #[cfg(loom)]
        Who::Spindle(_) => {
            let _ = reason;
            unreachable!("no spindle threads under loom")
        }
        Who::Os => wait_os(word, deadline),
    }
}

#[cfg(not(loom))]
fn wait_os(word: &AtomicU32, deadline: Option<Instant>) -> u32 {
    for _ in 0..OS_SPIN {
        let v = word.load(Ordering::Acquire);
        if v != 0 {
            return v;
        }
        std::hint::spin_loop();
    }
    loop {
        let v = word.load(Ordering::Acquire);
        if v != 0 {
            return v;
        }
        let timeout = match deadline {
            None => None,
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if left > Duration::ZERO => Some(left),
                _ => return 0,
            },
        };
        // Sleeps only while the word is still 0: a notification stored before this
        // call makes it return at once (no lost wakeup).
        crate::os::futex_wait(word, 0, timeout);
    }
}

/// Under loom: a deadline means "check once, then give up" (the model explores
/// notifications landing before and after); no deadline means spin with yields.
#[cfg(loom)]
fn wait_os(word: &AtomicU32, deadline: Option<Instant>) -> u32 {
    let _ = (OS_SPIN, Duration::ZERO);
    loop {
        let v = word.load(Ordering::Acquire);
        if v != 0 || deadline.is_some() {
            return v;
        }
        loom::thread::yield_now();
    }
}

/// A notification that has been published (under the lock) and must still be
/// delivered with [`Notify::wake`] (after the lock is released).
#[must_use = "a notified waiter must be woken"]
pub(crate) enum Notify {
    /// A node's waiter.
    One(Arc<Node>),
    /// A select, claimed for one of its operations.
    Select(Arc<Group>),
}

impl Notify {
    /// Publishes notification `value` (≠ 0) to `node`. Call with the primitive's
    /// internal lock held, after the node was taken out of its list.
    pub(crate) fn new(node: Arc<Node>, value: u32) -> Notify {
        debug_assert!(value != 0);
        node.claim(value);
        Notify::One(node)
    }

    /// Wakes the waiter. Safe to call after the waiter has returned: we hold our own
    /// reference to its node or group, and a waiter id that went stale only leaves a
    /// token (spindle waits tolerate spurious returns) or does nothing.
    pub(crate) fn wake(self) {
        let (who, word) = match &self {
            Notify::One(n) => (n.who, &n.state),
            Notify::Select(g) => (g.who, &g.chosen),
        };
        match who {
            #[cfg(not(loom))]
            Who::Spindle(w) => w.wake(),
            #[cfg(loom)]
            Who::Spindle(_) => unreachable!("no spindle threads under loom"),
            // An OS thread sleeps on its node's word, or its select's.
            #[cfg(not(loom))]
            Who::Os => crate::os::futex_wake(word, 1),
            #[cfg(loom)]
            Who::Os => {
                let _ = word;
            }
        }
    }
}

/// Wakes every notification in `list` (after the lock is released).
pub(crate) fn wake_all(list: impl IntoIterator<Item = Notify>) {
    for n in list {
        n.wake();
    }
}

/// One waiter in a [`WaitList`].
#[derive(Debug)]
enum Entry {
    /// A node's waiter.
    One(Arc<Node>),
    /// Operation `op` of a select.
    Select(Arc<Group>, u32),
}

/// A FIFO of waiting nodes and selects. Lives inside a primitive's internal lock.
#[derive(Debug, Default)]
pub(crate) struct WaitList(VecDeque<Entry>, usize);

/// The length at which a list first sweeps out the entries of decided selects.
const SWEEP_AT: usize = 16;

impl WaitList {
    pub(crate) const fn new() -> WaitList {
        WaitList(VecDeque::new(), SWEEP_AT)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Queues a new node for the caller at the back (or the front, for a waiter that
    /// was already woken once and lost the race: it keeps its place).
    pub(crate) fn push(&mut self, tag: u32, front: bool) -> Arc<Node> {
        let n = Node::new(tag);
        if front {
            self.0.push_front(Entry::One(n.clone()));
        } else {
            self.0.push_back(Entry::One(n.clone()));
        }
        n
    }

    /// Queues operation `op` of the select `group` at the back, after dropping the
    /// decided selects at the front, and all of them if the list doubled since its
    /// last sweep.
    pub(crate) fn push_select(&mut self, group: &Arc<Group>, op: u32) {
        self.has_live();
        if self.0.len() >= self.1 {
            self.0
                .retain(|e| !matches!(e, Entry::Select(g, _) if g.decided()));
            self.1 = (2 * self.0.len()).max(SWEEP_AT);
        }
        self.0.push_back(Entry::Select(group.clone(), op));
    }

    /// Takes the first waiter that accepts the notification `value` (a select decided
    /// elsewhere does not, and is dropped) and notifies it.
    pub(crate) fn notify_one(&mut self, value: u32) -> Option<Notify> {
        while let Some(e) = self.0.pop_front() {
            if let Some(n) = WaitList::claim(e, value) {
                return Some(n);
            }
        }
        None
    }

    /// Notifies the waiter of `e` (taken out of the list), if it accepts.
    fn claim(e: Entry, value: u32) -> Option<Notify> {
        match e {
            Entry::One(n) => Some(Notify::new(n, value)),
            Entry::Select(g, op) => g.claim(op).then_some(Notify::Select(g)),
        }
    }

    /// Whether a waiter that would accept a notification is queued: drops the
    /// selects at the front that were decided elsewhere, then looks.
    pub(crate) fn has_live(&mut self) -> bool {
        while let Some(e) = self.0.front() {
            match e {
                Entry::Select(g, _) if g.decided() => {
                    self.0.pop_front();
                }
                _ => return true,
            }
        }
        false
    }

    /// The tag of the first node, if the first waiter is one (not a select).
    pub(crate) fn front_tag(&self) -> Option<u32> {
        match self.0.front()? {
            Entry::One(n) => Some(n.tag),
            Entry::Select(..) => None,
        }
    }

    /// Takes every waiter and notifies each that accepts with `value`.
    pub(crate) fn notify_all(&mut self, value: u32) -> Vec<Notify> {
        self.0
            .drain(..)
            .filter_map(|e| WaitList::claim(e, value))
            .collect()
    }

    /// Removes `node` (a waiter that timed out); false if it is not in the list.
    /// O(n) in the number of waiters; only timeouts pay it.
    pub(crate) fn remove(&mut self, node: &Arc<Node>) -> bool {
        self.remove_where(|e| matches!(e, Entry::One(n) if Arc::ptr_eq(n, node)))
    }

    fn remove_where(&mut self, f: impl Fn(&Entry) -> bool) -> bool {
        match self.0.iter().position(f) {
            Some(i) => {
                self.0.remove(i);
                true
            }
            None => false,
        }
    }
}

/// Locks an internal lock. Internal critical sections run no user code and do not
/// panic, so poisoning cannot happen; it is ignored all the same.
///
/// The lock is an OS-thread lock: while a spindle thread holds it, its preempt count
/// is raised, so it is never preempted asynchronously with the lock held (another
/// thread of the same core would deadlock on it).
#[inline]
pub(crate) fn lock<T>(m: &Mutex<T>) -> Locked<'_, T> {
    let preempt = PreemptGuard::new();
    Locked {
        guard: m.lock().unwrap_or_else(|e| e.into_inner()),
        _preempt: preempt,
    }
}

/// A held internal lock (see [`lock`]). Fields drop in order: the lock is released,
/// then the preempt count lowered (and a pending reschedule honoured).
pub(crate) struct Locked<'a, T> {
    guard: MutexGuard<'a, T>,
    _preempt: PreemptGuard,
}

impl<T> std::ops::Deref for Locked<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> std::ops::DerefMut for Locked<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

/// The deadline `timeout` from now; `None` if it is beyond the clock's range (wait
/// forever).
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// Waits on `node` (already in a list under `m`) until it is notified or `deadline`
/// passes. On a timeout, removes it from the list that `list` selects and returns 0,
/// unless a notification won the race, whose value is returned instead. Returns with
/// the lock *released*; `on_removed` runs under the lock after a removal. If the
/// thread unwinds out of the wait, it leaves as [`LeaveOnUnwind`] says, with
/// `pass_on` for a notification it got.
pub(crate) fn wait_or_remove<S>(
    m: &Mutex<S>,
    node: &Arc<Node>,
    deadline: Option<Instant>,
    reason: WaitReason,
    list: impl Fn(&mut S) -> &mut WaitList,
    on_removed: impl Fn(&mut S),
    pass_on: impl FnOnce(u32),
) -> u32 {
    let leave = LeaveOnUnwind::new(m, node, &list, &on_removed, pass_on);
    let v = node.wait(deadline, reason);
    leave.done();
    if v != 0 {
        return v;
    }
    let mut g = lock(m);
    // The state is written only under this lock: this read is final.
    let v = node.notified();
    if v == 0 {
        let removed = list(&mut g).remove(node);
        debug_assert!(removed, "an unnotified node is in its list");
        on_removed(&mut g);
    }
    v
}

/// Leaves a wait cleanly when the waiting thread unwinds out of it (a shutdown
/// abandons it, see `task::abandon`), so the primitive stays usable by everyone
/// else. Made before `Node::wait`, [`done`](LeaveOnUnwind::done) after it. Dropped
/// while still armed, it decides under the primitive's lock, as a timed-out waiter
/// does: a node not yet notified is removed from its list (`on_removed` then runs
/// under the lock); a notified one means a notifier acted for this waiter — handed it
/// a lock or a permit, or spent a wakeup on it — so `pass_on` gets the value after
/// the lock is released, to give the grant back or wake someone else.
pub(crate) struct LeaveOnUnwind<'a, S, L, R, P>
where
    L: Fn(&mut S) -> &mut WaitList,
    R: Fn(&mut S),
    P: FnOnce(u32),
{
    m: &'a Mutex<S>,
    node: &'a Arc<Node>,
    list: L,
    on_removed: R,
    pass_on: Option<P>,
}

impl<'a, S, L, R, P> LeaveOnUnwind<'a, S, L, R, P>
where
    L: Fn(&mut S) -> &mut WaitList,
    R: Fn(&mut S),
    P: FnOnce(u32),
{
    pub(crate) fn new(
        m: &'a Mutex<S>,
        node: &'a Arc<Node>,
        list: L,
        on_removed: R,
        pass_on: P,
    ) -> Self {
        LeaveOnUnwind {
            m,
            node,
            list,
            on_removed,
            pass_on: Some(pass_on),
        }
    }

    /// The wait ended normally: the caller handles its outcome.
    pub(crate) fn done(mut self) {
        self.pass_on = None;
    }
}

impl<S, L, R, P> Drop for LeaveOnUnwind<'_, S, L, R, P>
where
    L: Fn(&mut S) -> &mut WaitList,
    R: Fn(&mut S),
    P: FnOnce(u32),
{
    fn drop(&mut self) {
        let Some(pass_on) = self.pass_on.take() else {
            return;
        };
        let mut g = lock(self.m);
        // Written only under this lock: final.
        let v = self.node.notified();
        if v == 0 {
            (self.list)(&mut g).remove(self.node);
            (self.on_removed)(&mut g);
            drop(g);
        } else {
            drop(g);
            pass_on(v);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A select that leaves its entries behind, round after round, behind a waiter
    /// that never leaves: the list stays bounded, and a notification skips them all
    /// to reach the live waiter.
    #[test]
    fn decided_selects_are_swept_and_skipped() {
        let mut list = WaitList::new();
        let live = list.push(0, false);
        for _ in 0..10_000 {
            let g = Group::new();
            list.push_select(&g, 0);
            list.push_select(&g, 1);
            assert!(g.close().is_ok());
        }
        assert!(list.len() <= 2 * SWEEP_AT, "{} entries", list.len());
        // An open select behind them is claimed once, for its operation.
        let open = Group::new();
        list.push_select(&open, 3);
        let n = list.notify_one(1).expect("the live node");
        assert!(matches!(n, Notify::One(ref x) if Arc::ptr_eq(x, &live)));
        let n = list.notify_one(1).expect("the open select");
        assert!(matches!(n, Notify::Select(_)));
        assert_eq!(open.close(), Err(3));
        assert!(
            list.notify_one(1).is_none(),
            "only decided entries were left"
        );
    }
}

#[cfg(all(test, loom))]
mod loom_waiter {
    use super::*;
    use loom::thread;

    /// `notify_one` racing a waiter whose deadline passes: the notification is either
    /// taken by the waiter (in time or late) or never made (list empty) — never lost —
    /// and the node stays valid for the waker after the waiter returned.
    #[test]
    fn loom_notify_vs_timeout_no_lost_wakeup() {
        loom::model(|| {
            let m = Arc::new(Mutex::new(WaitList::new()));
            let node = lock(&m).push(0, false);
            let waker = {
                let m = m.clone();
                thread::spawn(move || {
                    let n = lock(&m).notify_one(7);
                    let delivered = n.is_some();
                    if let Some(n) = n {
                        n.wake();
                    }
                    delivered
                })
            };
            // A waiter with a deadline (under loom: gives up after one look).
            let got = wait_or_remove(
                &m,
                &node,
                Some(Instant::now()),
                WaitReason::Mutex,
                |l| l,
                |_| {},
                |_| {},
            );
            drop(node);
            let delivered = waker.join().unwrap();
            assert_eq!(delivered, got == 7, "notification lost or invented");
            assert!(lock(&m).is_empty());
        });
    }

    /// Step 1 against step 2 of the protocol: the waiter checks a condition and
    /// queues under the lock; the waker changes it and notifies everyone under the
    /// lock. The waiter either sees the change or is notified (loom reports a
    /// deadlock if it would sleep forever).
    #[test]
    fn loom_check_then_queue_vs_change_then_notify() {
        loom::model(|| {
            let m = Arc::new(Mutex::new((false, WaitList::new())));
            let waiter = {
                let m = m.clone();
                thread::spawn(move || {
                    let mut g = lock(&m);
                    if g.0 {
                        return 0;
                    }
                    let node = g.1.push(0, false);
                    drop(g);
                    node.wait(None, WaitReason::Mutex)
                })
            };
            let mut g = lock(&m);
            g.0 = true;
            let all = g.1.notify_all(3);
            drop(g);
            wake_all(all);
            let got = waiter.join().unwrap();
            assert!(got == 0 || got == 3);
        });
    }
}
