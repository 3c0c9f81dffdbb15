//! Trace events: each core's ring of what happened on it, for the trace export
//! (`runtime::trace`, `SPINDLE_TRACE=out.json`).
//!
//! Protocol: one ring per core, single producer (the core's OS thread, or a thread
//! running on the core: they take turns on it), single consumer (the drainer, a
//! maintenance thread). The producer writes an event's words, then publishes it with
//! a release store of `head`; the consumer reads `head` (acquire), copies the events,
//! then frees them with a release store of `tail`, which the producer reads (acquire)
//! before it reuses a slot. A full ring drops the event and counts it.
//!
//! Off, a core's ring pointer is null: a switch pays one relaxed load of it
//! ([`Core::trace_switch`]), and the other events one relaxed load of [`ON`].

use std::cell::Cell;
use std::sync::atomic::AtomicBool;

use crate::loom::{AtomicU64, Ordering};
use std::time::Instant;

use super::core::CoreLocal;
use super::{After, Core};

/// Whether some runtime of the process traces (the other events' first check).
pub(crate) static ON: AtomicBool = AtomicBool::new(false);

/// What an event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    /// The thread starts running on the core.
    In = 1,
    /// The thread stops running; `arg`: why (`OUT_*`, with the wait kind above).
    Out,
    /// The thread was spawned; `arg`: its spawner, or 0.
    Spawn,
    /// The thread was woken; `arg`: its waker, or 0 (an OS thread, a timer).
    Wake,
    /// An offloaded system call begins; `arg`: its number.
    SyscallBegin,
    /// It ended; `arg`: its number.
    SyscallEnd,
    /// The thread was preempted by its time slice.
    Preempt,
}

impl Kind {
    pub(crate) fn from_u8(k: u8) -> Option<Kind> {
        Some(match k {
            1 => Kind::In,
            2 => Kind::Out,
            3 => Kind::Spawn,
            4 => Kind::Wake,
            5 => Kind::SyscallBegin,
            6 => Kind::SyscallEnd,
            7 => Kind::Preempt,
            _ => return None,
        })
    }
}

/// Why a thread stopped running (`Kind::Out`'s argument, low byte; a wait's kind in
/// the next byte).
pub(crate) const OUT_YIELD: u64 = 0;
pub(crate) const OUT_WAIT: u64 = 1;
pub(crate) const OUT_EXIT: u64 = 2;
pub(crate) const OUT_MIGRATE: u64 = 3;

/// One event as the consumer sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Event {
    /// Nanoseconds since the trace's epoch.
    pub(crate) t: u64,
    pub(crate) kind: Kind,
    pub(crate) thread: u64,
    pub(crate) arg: u64,
}

const WORDS: usize = 4;

/// A core's ring of events.
pub(crate) struct Ring {
    buf: Box<[AtomicU64]>,
    cap: usize,
    head: AtomicU64,
    tail: AtomicU64,
    /// Events dropped because the ring was full.
    pub(crate) dropped: AtomicU64,
    epoch: Instant,
    /// The thread whose `In` was recorded last and that has not gone out (producer
    /// only).
    running: Cell<u64>,
}

// SAFETY: `running` is touched only by the producer side (the core's OS thread); everything else is atomic.
unsafe impl Sync for Ring {}

impl Ring {
    /// A ring of `cap` events, timed from `epoch`.
    pub(crate) fn new(cap: usize, epoch: Instant) -> Ring {
        Ring {
            buf: (0..cap * WORDS).map(|_| AtomicU64::new(0)).collect(),
            cap,
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            epoch,
            running: Cell::new(0),
        }
    }

    /// The producer's write.
    pub(crate) fn push(&self, kind: Kind, thread: u64, arg: u64) {
        let h = self.head.load(Ordering::Relaxed);
        // Acquire: pairs with the consumer's release of `tail`: the slot is free.
        if h - self.tail.load(Ordering::Acquire) >= self.cap as u64 {
            self.dropped
                .store(self.dropped.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            return;
        }
        let t = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let i = (h as usize % self.cap) * WORDS;
        self.buf[i].store(t, Ordering::Relaxed);
        self.buf[i + 1].store(kind as u64, Ordering::Relaxed);
        self.buf[i + 2].store(thread, Ordering::Relaxed);
        self.buf[i + 3].store(arg, Ordering::Relaxed);
        // Release: the words above travel with the new head.
        self.head.store(h + 1, Ordering::Release);
    }

    /// The consumer's read: every published event, oldest first.
    pub(crate) fn drain(&self, out: &mut Vec<Event>) {
        let t0 = self.tail.load(Ordering::Relaxed);
        // Acquire: pairs with the producer's release of `head`.
        let h = self.head.load(Ordering::Acquire);
        for n in t0..h {
            let i = (n as usize % self.cap) * WORDS;
            if let Some(kind) = Kind::from_u8(self.buf[i + 1].load(Ordering::Relaxed) as u8) {
                out.push(Event {
                    t: self.buf[i].load(Ordering::Relaxed),
                    kind,
                    thread: self.buf[i + 2].load(Ordering::Relaxed),
                    arg: self.buf[i + 3].load(Ordering::Relaxed),
                });
            }
        }
        // Release: the copies above are done before the slots are reused.
        self.tail.store(h, Ordering::Release);
    }
}

impl Core {
    /// The trace hook of a switch (`finish_switch`, after its one relaxed load found
    /// the ring): the thread that went out, and the one now running.
    #[cold]
    #[inline(never)]
    pub(super) fn trace_switched(&self, l: &CoreLocal) {
        // SAFETY: a ring, once installed, lives as long as the runtime (`set_trace`).
        let r = unsafe { &*self.trace.load(Ordering::Relaxed) };
        // SAFETY: `prev` and `current` are this core's threads; their TCBs are ours here.
        let (prev, current) = unsafe {
            let prev = (!l.prev.is_null()).then(|| {
                let why = match l.prev_after {
                    After::Requeue => OUT_YIELD,
                    After::Sleep => OUT_WAIT | u64::from((*l.prev).slot().info.wait_kind()) << 8,
                    After::Exit => OUT_EXIT,
                    After::Migrate(_) => OUT_MIGRATE,
                };
                ((*l.prev).id_u64(), why)
            });
            (prev, (!l.current.is_null()).then(|| (*l.current).id_u64()))
        };
        if let Some((id, why)) = prev
            && r.running.get() == id
        {
            r.push(Kind::Out, id, why);
            r.running.set(0);
        }
        if let Some(id) = current
            && r.running.get() != id
        {
            r.push(Kind::In, id, 0);
            r.running.set(id);
        }
    }

    /// Records an event of this core (on its OS thread), if it traces.
    #[inline]
    pub(crate) fn trace(&self, kind: Kind, thread: u64, arg: u64) {
        if !ON.load(Ordering::Relaxed) {
            return;
        }
        let r = self.trace.load(Ordering::Relaxed);
        if !r.is_null() {
            // SAFETY: as in `trace_switch`.
            unsafe { &*r }.push(kind, thread, arg);
        }
    }

    /// Installs this core's ring (before the core first starts).
    ///
    /// # Safety
    ///
    /// `ring` outlives every use of the core (it is owned by the runtime).
    pub(crate) unsafe fn set_trace(&self, ring: *const Ring) {
        self.trace.store(ring.cast_mut(), Ordering::Release);
        ON.store(true, Ordering::Relaxed);
    }
}

/// Records an event on the core of the running spindle thread, if any and if it
/// traces (spawns, wakes, offloaded calls, preemptions).
#[inline]
pub(crate) fn here(kind: Kind, thread: u64, arg: u64) {
    if !ON.load(Ordering::Relaxed) {
        return;
    }
    if let Some((ctx, _)) = super::CoreCtx::current() {
        ctx.core().trace(kind, thread, arg);
    }
}

#[cfg(all(test, loom))]
mod tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// A producer pushes three events into a ring of two while the consumer drains
    /// twice: every event is received once, in order, or counted as dropped.
    #[test]
    fn loom_trace_ring() {
        loom::model(|| {
            let ring = Arc::new(Ring::new(2, Instant::now()));
            let producer = {
                let ring = ring.clone();
                thread::spawn(move || {
                    for i in 1..=3 {
                        ring.push(Kind::Spawn, i, 0);
                    }
                })
            };
            let mut got = Vec::new();
            ring.drain(&mut got);
            producer.join().unwrap();
            ring.drain(&mut got);
            let ids: Vec<u64> = got.iter().map(|e| e.thread).collect();
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "out of order: {ids:?}");
            let dropped = ring.dropped.load(Ordering::Relaxed);
            assert_eq!(ids.len() as u64 + dropped, 3, "{ids:?}, {dropped} dropped");
            assert!(got.iter().all(|e| e.kind == Kind::Spawn));
        });
    }
}
