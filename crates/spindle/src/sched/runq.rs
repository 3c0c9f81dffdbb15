//! The O(1) run queue: 64 priority levels, a `u64` bitmap of non-empty levels and an
//! intrusive FIFO per level (the shape of Linux's `rt_prio_array`). Picking is
//! `trailing_zeros` of the bitmap: level 0 is the most urgent. Within a level threads
//! take turns in FIFO order. Owned by one core; no synchronisation.

use std::ptr;

use crate::task::tcb::Tcb;

/// Number of priority levels.
pub(crate) const LEVELS: usize = 64;

pub(crate) struct RunQueue {
    /// Bit `l` set iff level `l` is non-empty.
    bitmap: u64,
    heads: [*mut Tcb; LEVELS],
    tails: [*mut Tcb; LEVELS],
    len: usize,
}

impl Default for RunQueue {
    fn default() -> Self {
        RunQueue {
            bitmap: 0,
            heads: [ptr::null_mut(); LEVELS],
            tails: [ptr::null_mut(); LEVELS],
            len: 0,
        }
    }
}

impl RunQueue {
    /// Appends `t` at the back of its level.
    ///
    /// # Safety
    ///
    /// `t` must be a valid TCB owned by this queue's core and on no run queue.
    #[inline]
    pub(crate) unsafe fn push(&mut self, t: *mut Tcb) {
        // SAFETY: the caller guarantees `t` is valid and owned by us.
        let tcb = unsafe { &*t };
        let l = tcb.level as usize;
        tcb.next.set(ptr::null_mut());
        if self.heads[l].is_null() {
            self.heads[l] = t;
            self.bitmap |= 1 << l;
        } else {
            // SAFETY: a non-empty level's tail is a valid queued TCB.
            unsafe { (*self.tails[l]).next.set(t) };
        }
        self.tails[l] = t;
        self.len += 1;
    }

    /// Removes and returns the front thread of the most urgent non-empty level.
    #[inline]
    pub(crate) fn pop(&mut self) -> Option<*mut Tcb> {
        if self.bitmap == 0 {
            return None;
        }
        let l = self.bitmap.trailing_zeros() as usize;
        let t = self.heads[l];
        // SAFETY: a set bit means the level's head is a valid queued TCB.
        let next = unsafe { (*t).next.get() };
        // Off the queue, `next` is null: dispatcher lists rely on it (`Core::push_out_at`).
        // SAFETY: as above.
        unsafe { (*t).next.set(ptr::null_mut()) };
        self.heads[l] = next;
        if next.is_null() {
            self.tails[l] = ptr::null_mut();
            self.bitmap &= !(1 << l);
        }
        self.len -= 1;
        Some(t)
    }

    /// The most urgent non-empty level, if any.
    /// Unlinks up to `max` threads for which `movable` holds, from the least urgent
    /// level up, oldest first within a level. O(threads looked at); for the balancer.
    ///
    /// # Safety
    ///
    /// The queued TCBs are valid (they are, while queued).
    pub(crate) unsafe fn take_least_urgent(
        &mut self,
        max: usize,
        movable: impl Fn(*mut Tcb) -> bool,
    ) -> Vec<*mut Tcb> {
        let mut out = Vec::new();
        let mut levels = self.bitmap;
        while levels != 0 && out.len() < max {
            let l = 63 - levels.leading_zeros() as usize;
            levels &= !(1 << l);
            // Rebuild level `l`'s list without the threads taken.
            let mut t = self.heads[l];
            let (mut head, mut tail): (*mut Tcb, *mut Tcb) = (ptr::null_mut(), ptr::null_mut());
            while !t.is_null() {
                if out.len() == max {
                    // Enough: the rest of the level stays as it is, linked after the
                    // threads kept so far (O(threads looked at), not O(level)).
                    if head.is_null() {
                        head = t;
                    } else {
                        // SAFETY: as below.
                        unsafe { (*tail).next.set(t) };
                    }
                    tail = self.tails[l];
                    break;
                }
                // SAFETY: queued TCBs are valid (contract).
                let next = unsafe { (*t).next.get() };
                if movable(t) {
                    // SAFETY: as above.
                    unsafe { (*t).next.set(ptr::null_mut()) };
                    out.push(t);
                    self.len -= 1;
                } else {
                    // SAFETY: as above.
                    unsafe { (*t).next.set(ptr::null_mut()) };
                    if head.is_null() {
                        head = t;
                    } else {
                        // SAFETY: as above.
                        unsafe { (*tail).next.set(t) };
                    }
                    tail = t;
                }
                t = next;
            }
            self.heads[l] = head;
            self.tails[l] = tail;
            if head.is_null() {
                self.bitmap &= !(1 << l);
            }
        }
        out
    }

    #[inline]
    pub(crate) fn top_level(&self) -> Option<u8> {
        (self.bitmap != 0).then(|| self.bitmap.trailing_zeros() as u8)
    }

    /// Number of queued threads.
    #[inline(always)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::tcb::Tcb;

    unsafe extern "C" fn never(_: usize) -> ! {
        unreachable!()
    }

    /// # Safety
    ///
    /// None: a test stub that touches nothing.
    unsafe fn nop_closure(_: *mut u8) {}
    /// # Safety
    ///
    /// None: a test stub that touches nothing.
    unsafe fn nop_result(_: *mut crate::task::slot::ResultBuf) {}
    /// # Safety
    ///
    /// None: a test stub that touches nothing.
    unsafe fn nop_error(_: *mut crate::task::slot::ResultBuf, _: Box<dyn std::any::Any + Send>) {}
    /// # Safety
    ///
    /// None: a test stub that touches nothing.
    unsafe fn no_block(
        _: *mut Tcb,
        _: &mut crate::stack::StackPool,
    ) -> Result<*mut Tcb, crate::stack::StackError> {
        Err(crate::stack::StackError::Os(libc::ENOMEM))
    }
    static VT: crate::task::tcb::ThreadVtable = crate::task::tcb::ThreadVtable {
        drop_closure: nop_closure,
        write_abandoned: nop_result,
        write_error: nop_error,
        materialize: no_block,
        free_record: nop_record,
    };
    /// # Safety
    ///
    /// None: a test stub that touches nothing.
    unsafe fn nop_record(_: *mut Tcb) {}

    fn tcbs(levels: &[u8]) -> Vec<Tcb> {
        levels
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                Tcb::init(crate::task::tcb::TcbInit {
                    slot: ptr::null(),
                    index: i as u32,
                    generation: 0,
                    level: l,
                    class: 0,
                    ty: 0,
                    entry: never,
                    name: None,
                    vtable: &VT,
                    main: false,
                    bound: false,
                    run_word: 0,
                    preemptible: false,
                })
            })
            .collect()
    }

    #[test]
    fn take_least_urgent_skips_unmovable_and_keeps_order() {
        let mut ts = tcbs(&[5, 3, 5, 63, 0, 63]);
        let mut q = RunQueue::default();
        for t in ts.iter_mut() {
            // SAFETY: the TCBs outlive the queue and are on no other list.
            unsafe { q.push(t) };
        }
        let p: Vec<*mut Tcb> = ts.iter_mut().map(|t| t as *mut Tcb).collect();
        // Thread 5 (level 63) is bound; take three of the rest, least urgent first.
        // SAFETY: the queued TCBs are alive.
        let taken = unsafe { q.take_least_urgent(3, |t| t != p[5]) };
        assert_eq!(taken, vec![p[3], p[0], p[2]]);
        assert_eq!(q.len(), 3);
        let rest: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(rest, vec![p[4], p[1], p[5]]);
    }

    #[test]
    fn take_least_urgent_leaves_the_rest_of_a_level_linked() {
        let mut ts = tcbs(&[9, 9, 9, 9, 9, 9]);
        let p: Vec<*mut Tcb> = ts.iter_mut().map(|t| t as *mut Tcb).collect();
        let mut q = RunQueue::default();
        for &t in &p[..5] {
            // SAFETY: the TCBs outlive the queue and are on no other list.
            unsafe { q.push(t) };
        }
        // Thread 1 stays; threads 0 and 2 go; 3 and 4 are never looked at.
        // SAFETY: the queued TCBs are alive.
        let taken = unsafe { q.take_least_urgent(2, |t| t != p[1]) };
        assert_eq!(taken, vec![p[0], p[2]]);
        // The level's tail is still right: a push lands after thread 4.
        // SAFETY: as above; thread 5 is on no list.
        unsafe { q.push(p[5]) };
        let rest: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(rest, vec![p[1], p[3], p[4], p[5]]);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn most_urgent_level_first_fifo_within() {
        let mut ts = tcbs(&[5, 3, 5, 63, 0, 3]);
        let mut q = RunQueue::default();
        for t in ts.iter_mut() {
            // SAFETY: the TCBs outlive the queue, do not move, and are queued once.
            unsafe { q.push(t) };
        }
        assert_eq!(q.len(), 6);
        assert_eq!(q.top_level(), Some(0));
        let order: Vec<u32> = std::iter::from_fn(|| q.pop())
            // SAFETY: popped pointers are the TCBs above.
            .map(|t| unsafe { (*t).index })
            .collect();
        assert_eq!(order, vec![4, 1, 5, 0, 2, 3]);
        assert_eq!(q.top_level(), None);
        assert!(q.pop().is_none());
    }

    #[test]
    fn round_robin_within_a_level() {
        let mut ts = tcbs(&[7, 7, 7]);
        let mut q = RunQueue::default();
        for t in ts.iter_mut() {
            // SAFETY: the TCBs outlive the queue, do not move, and are queued once.
            unsafe { q.push(t) };
        }
        let mut seen = Vec::new();
        for _ in 0..6 {
            let t = q.pop().unwrap();
            // SAFETY: popped TCBs are the live ones above, re-pushed once after each pop.
            unsafe {
                seen.push((*t).index);
                q.push(t);
            }
        }
        assert_eq!(seen, vec![0, 1, 2, 0, 1, 2]);
    }
}
