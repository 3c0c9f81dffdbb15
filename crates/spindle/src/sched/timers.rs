//! A core's timers: wake a thread on a channel at a deadline, if it still sleeps there.

use std::cmp::Reverse;
use std::time::Instant;

use super::Core;
use super::core::CoreLocal;
use crate::task::id::ThreadId;
use crate::task::slot::{Channel, table};

/// A pending timer: wake `thread` on its park channel (`park`) or its internal one at
/// `deadline`.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Timer {
    pub(super) deadline: Instant,
    thread: ThreadId,
    park: bool,
}

impl Timer {
    /// A timer that wakes `thread` on `chan` at `deadline`.
    pub(super) fn new(deadline: Instant, thread: ThreadId, chan: Channel) -> Timer {
        Timer {
            deadline,
            thread,
            park: chan == Channel::Park,
        }
    }
}

impl Core {
    pub(super) fn fire_timers(&self, l: &mut CoreLocal, now: Instant) {
        while let Some(Reverse(t)) = l.timers.peek() {
            if t.deadline > now {
                break;
            }
            let Reverse(t) = l.timers.pop().expect("peeked timer");
            let Some(slot) = table().get(t.thread.index) else {
                continue;
            };
            let chan = if t.park {
                Channel::Park
            } else {
                Channel::Internal
            };
            // A timer never leaves a token: it only wakes a thread still blocked.
            if slot.word.cancel_block(chan, t.thread.generation) {
                // SAFETY: we cleared BLOCKED, so the thread is alive, asleep, and ours to enqueue.
                unsafe { self.enqueue_woken_here(l, slot) };
            }
        }
    }
}
