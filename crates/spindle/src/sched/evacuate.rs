//! A leaving core hands everything it holds to the others (see `lifecycle`).

use std::cmp::Reverse;

use super::timers::Timer;
use super::{Core, IDLE_LEVEL};
use crate::loom::Ordering;
use crate::task::slot::table;

impl Core {
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
        let shared = self.set();
        // SAFETY: scheduler context of this core (caller): `l` is ours; the threads on our run queue are ours.
        unsafe {
            self.finish_switch();
            self.take_in(&mut *l);
            self.drain_inject(&mut *l);
            // Completions of offloaded calls the core did not collect before it halted:
            // their threads sleep with this core as home, so wake them onto the run
            // queue now (calls still in flight are woken by the service itself).
            self.role().on_leave(&mut super::CoreCtx::new(self, l));
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
