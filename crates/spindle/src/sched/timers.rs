//! A core's timers: wake a thread on a channel at a deadline, if it still sleeps there.

use std::cmp::Reverse;
use std::time::Instant;

use super::Core;
use super::core::CoreLocal;
use crate::task::slot::{Channel, table};

/// A pending timer: wake `(index, generation)` on `chan` at `deadline`.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Timer {
    pub(super) deadline: Instant,
    index: u32,
    generation: u32,
    park: bool,
}

impl Core {
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
    pub(super) fn fire_timers(&self, l: &mut CoreLocal, now: Instant) {
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
}
