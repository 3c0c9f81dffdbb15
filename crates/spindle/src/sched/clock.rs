//! What a core publishes for the tick: its schedule points, when the running thread's
//! run began, and which thread runs with which slice (see `preempt` for the tick).

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicU64, AtomicUsize};

use crate::loom::Ordering;

/// What a core publishes for the tick, and the signal handler's hand-offs. One cache
/// line group per core; the core's own fields have one writer (the core's OS thread).
#[derive(Default)]
pub(crate) struct CoreClock {
    /// The tick counter, copied here by the tick (so a switch reads its own line).
    pub(crate) now: AtomicU64,
    /// Schedule points passed: bumped at every switch and every yield that keeps
    /// running (release: the fields below are written first).
    pub(crate) points: AtomicU64,
    /// Tick at which the running thread's current run began.
    pub(crate) start: AtomicU64,
    /// The running thread's `run` word (`RUN_*`), 0 while the core is idle.
    pub(crate) run: AtomicU64,
    /// The running thread's id (`Tcb::id_u64`).
    pub(crate) id: AtomicU64,
    /// The running thread's TCB address (on its stack block, which stays mapped):
    /// what the tick's handoff marks (`carrier`).
    pub(crate) tcb: AtomicUsize,
    /// The core's OS thread id, 0 while it is not running.
    pub(crate) tid: AtomicI32,
    /// Preemption signals the tick sent this core (written by the tick).
    pub(crate) sent: AtomicU64,
    /// Contexts the signal handler rewrote on this core (written by the handler, on
    /// the core's OS thread).
    pub(crate) preemptions: AtomicU64,
    /// The tick asks the handler for the running thread's name.
    pub(crate) want_name: AtomicBool,
    /// Name hand-off: set (release) by the handler once `name_*` hold a reference to
    /// the name of thread `name_id`; cleared by the tick after taking it.
    pub(crate) name_ready: AtomicBool,
    pub(crate) name_tag: AtomicU8,
    pub(crate) name_ptr: AtomicUsize,
    pub(crate) name_len: AtomicUsize,
    pub(crate) name_id: AtomicU64,
}

impl CoreClock {
    /// Records the calling OS thread as the core's (called first thing by the core's
    /// OS thread), so the tick can signal it.
    pub(crate) fn started(&self) {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        self.tid.store(tid, Ordering::Relaxed);
    }

    /// Forgets the core's OS thread (called by that thread before it ends).
    pub(crate) fn stopped(&self) {
        self.tid.store(0, Ordering::Relaxed);
    }

    #[inline(always)]
    pub(crate) fn bump(&self) {
        // Single writer: load + store, no read-modify-write instruction.
        self.points
            .store(self.points.load(Ordering::Relaxed) + 1, Ordering::Release);
    }

    /// A switch to the thread with `run` word `run`, id `id` and TCB at `tcb`.
    #[inline(always)]
    pub(crate) fn switched_to(&self, run: u64, id: u64, tcb: usize) {
        self.start
            .store(self.now.load(Ordering::Relaxed), Ordering::Relaxed);
        self.run.store(run, Ordering::Relaxed);
        self.id.store(id, Ordering::Relaxed);
        self.tcb.store(tcb, Ordering::Relaxed);
        self.bump();
    }

    /// A yield that kept the same thread running: a new run (and slice) begins.
    #[inline(always)]
    pub(crate) fn kept(&self) {
        self.start
            .store(self.now.load(Ordering::Relaxed), Ordering::Relaxed);
        self.bump();
    }

    /// The core went to its scheduler context.
    #[inline(always)]
    pub(crate) fn idle(&self) {
        self.run.store(0, Ordering::Relaxed);
        self.id.store(0, Ordering::Relaxed);
        self.bump();
    }

    /// Preemption signals sent to this core so far.
    pub(crate) fn signals_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Contexts rewritten (asynchronous preemptions) on this core so far.
    pub(crate) fn preemptions(&self) -> u64 {
        self.preemptions.load(Ordering::Relaxed)
    }
}
