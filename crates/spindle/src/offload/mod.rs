//! Exception-less system calls: a spindle thread hands its system call to
//! the hypercore through shared memory and sleeps; its core runs other threads.
//!
//! - Each worker core has a [`Region`] of [`SLOTS`] request slots (`slot.rs`: the
//!   state machine FREE → CLAIMED → READY → DONE → FREE, one writer per transition,
//!   no RMW). A request and its answer each move one cache line: the slot's.
//! - The **service loop** ([`Service::serve`]) runs on the hypercore's OS thread: at
//!   each of its schedule points (between maintenance threads) and in its idle loop.
//!   It reads the state of every slot of every started worker (lines it holds shared
//!   until a worker writes one), runs every READY one (a batch), marks them DONE, and
//!   rings the doorbell of each worker it completed for, if that worker sleeps.
//! - A worker **collects** at each schedule point ([`at_schedule_point`]), and only
//!   when it has requests in flight (a core-local mask): it wakes the threads whose
//!   slot left READY (or all, if the service died). An idle worker counts such a slot
//!   as work before it sleeps, and the service's doorbell ring wakes it.
//! - **Full slots**: a call that finds every slot of its core taken runs directly on
//!   its own core (counted in [`ServiceStats::direct_full`]); it never waits.
//! - **Failure**: if the service loop panics or is stopped, it publishes `dead` after
//!   its last slot access and rings every worker. Pending calls are woken and run
//!   directly by their own threads; new calls run directly. A warning is printed once
//!   and [`ServiceStats::failed`] says so.

pub(crate) mod slot;
pub(crate) mod wait;

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

use crate::os::raw_syscall;
use crate::sched::role::CoreRole;
use crate::sched::{Core, CoreCtx, CoreSet, CoreState, MAX_CORES};
use crate::task::id::ThreadId;
use slot::{READY, ReqSlot};
pub use wait::WaitStrategy;

/// Request slots per worker core.
pub const SLOTS: usize = 16;

/// Pauses a caller whose core has nothing else to run polls its slot before it
/// sleeps (~10–40 µs, about the idle loop's spin).
pub(crate) const POLL_SPINS: u32 = 512;

/// The requests of one worker core.
pub(crate) struct Region {
    pub(super) slots: [ReqSlot; SLOTS],
    /// The waiting thread of each slot, `index << 32 | generation` (written by the
    /// claimer before READY; read by the collector, or by the service when the core
    /// is gone).
    pub(super) waiters: [AtomicU64; SLOTS],
    /// Touched only by the worker core's OS thread.
    pub(super) local: CachePadded<UnsafeCell<WorkerSide>>,
}

#[derive(Default)]
pub(super) struct WorkerSide {
    /// Slots published from this core and not collected yet.
    pub(super) inflight: u32,
}

impl Region {
    fn new() -> Region {
        Region {
            slots: std::array::from_fn(|_| ReqSlot::new()),
            waiters: std::array::from_fn(|_| AtomicU64::new(0)),
            local: CachePadded::new(UnsafeCell::new(WorkerSide::default())),
        }
    }
}

/// What a test hook asks of the service loop.
const STOP_NONE: u8 = 0;
const STOP_QUIETLY: u8 = 1;
const STOP_PANIC: u8 = 2;

/// The system-call service of one runtime.
pub(crate) struct Service {
    pub(super) regions: Box<[Region]>,
    /// Set (release) by the service loop once it will never touch a slot again.
    pub(super) dead: AtomicBool,
    /// A test hook's request: stop (1) or panic (2) at the next pass.
    stop: AtomicU8,
    /// Calls served (single writer: the hypercore).
    served: AtomicU64,
    /// Calls run directly because the slots of their core were all taken.
    pub(super) direct_full: AtomicU64,
    /// Calls run directly because the service had failed.
    pub(super) direct_failed: AtomicU64,
    strategy: WaitStrategy,
}

// SAFETY: each region's `local` is touched only by its core's OS thread (see its docs); everything else is atomic.
unsafe impl Sync for Service {}
// SAFETY: as above.
unsafe impl Send for Service {}

/// Figures of a runtime's system-call service (see [`crate::sys::service_stats`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceStats {
    /// Calls the service loop ran for the worker cores.
    pub served: u64,
    /// Calls run directly because every request slot of their core was taken.
    pub direct_full: u64,
    /// Calls run directly because the service loop had failed or was stopped.
    pub direct_failed: u64,
    /// Whether the service loop has failed (panicked) or was stopped.
    pub failed: bool,
    /// How the idle service loop waits.
    pub strategy: WaitStrategy,
}

impl Service {
    pub(crate) fn new() -> Service {
        Service {
            regions: (0..MAX_CORES).map(|_| Region::new()).collect(),
            dead: AtomicBool::new(false),
            stop: AtomicU8::new(STOP_NONE),
            served: AtomicU64::new(0),
            direct_full: AtomicU64::new(0),
            direct_failed: AtomicU64::new(0),
            strategy: wait::detect(),
        }
    }

    pub(crate) fn stats(&self) -> ServiceStats {
        ServiceStats {
            served: self.served.load(Ordering::Relaxed),
            direct_full: self.direct_full.load(Ordering::Relaxed),
            direct_failed: self.direct_failed.load(Ordering::Relaxed),
            failed: self.dead.load(Ordering::Acquire),
            strategy: self.strategy,
        }
    }

    /// Asks the service loop to stop (or panic) at its next pass (test hook).
    pub(crate) fn request_stop(&self, panic: bool) {
        let how = if panic { STOP_PANIC } else { STOP_QUIETLY };
        self.stop.store(how, Ordering::Release);
    }

    /// One pass of the service loop: runs every READY request of every started
    /// worker. Returns the number of calls run. Only the hypercore's OS
    /// thread calls this.
    pub(crate) fn serve(&self, shared: &CoreSet) -> usize {
        if self.dead.load(Ordering::Relaxed) {
            return 0;
        }
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.pass(shared))) {
            Ok(Some(n)) => n,
            Ok(None) => {
                self.die(shared, "it was stopped");
                0
            }
            Err(_) => {
                self.die(shared, "it panicked");
                0
            }
        }
    }

    /// The body of [`Service::serve`]; `None` if asked to stop.
    fn pass(&self, shared: &CoreSet) -> Option<usize> {
        match self.stop.load(Ordering::Relaxed) {
            STOP_NONE => {}
            STOP_QUIETLY => return None,
            _ => panic!("spindle: the system-call service was told to panic (test hook)"),
        }
        let n = shared.hwm.load(Ordering::Acquire).min(MAX_CORES);
        let mut total = 0;
        for (c, r) in self.regions.iter().enumerate().take(n) {
            if shared.is_service(c) {
                continue;
            }
            let mut done = 0u64;
            let mut mask = 0u32;
            for (i, s) in r.slots.iter().enumerate() {
                if let Some((nr, args)) = s.take_ready() {
                    // SAFETY: the caller of the offloaded call vouched for the arguments (`sys::syscall`'s contract) and sleeps until DONE, so its buffers stay valid.
                    let res = unsafe { raw_syscall(nr, args) };
                    s.complete(res);
                    done += 1;
                    mask |= 1 << i;
                }
            }
            if done == 0 {
                continue;
            }
            total += done as usize;
            let core = &shared.cores[c];
            // StoreLoad: the DONE stores above before the state load below. Pairs with
            // the SeqCst store of `Leaving` (and the leaving core's later collection in
            // `collect_leaving`): either the core's collection sees DONE, or we see it
            // is no longer active and wake the waiters here.
            std::sync::atomic::fence(Ordering::SeqCst);
            if core.state() == CoreState::Active {
                core.doorbell.wake_if_sleeping();
            } else {
                // The core left (or is leaving): nobody may collect there, so wake
                // the waiters here; a double wake only leaves a spare token.
                wake_waiters(r, mask);
            }
        }
        self.served.store(
            self.served.load(Ordering::Relaxed) + total as u64,
            Ordering::Relaxed,
        );
        Some(total)
    }

    /// Whether a worker has a READY request (the hypercore's check before sleeping).
    fn has_posted(&self, shared: &CoreSet) -> bool {
        let n = shared.hwm.load(Ordering::Acquire).min(MAX_CORES);
        self.regions[..n]
            .iter()
            .any(|r| r.slots.iter().any(|s| s.state() == READY))
    }

    /// The service loop stops for good: publish it, wake every worker and every
    /// waiter so that the pending calls run directly.
    #[cold]
    fn die(&self, shared: &CoreSet, why: &str) {
        // Release: every slot access of the service happened before.
        self.dead.store(true, Ordering::Release);
        eprintln!(
            "spindle: warning: the system-call service on the hypercore stopped ({why}); \
             system calls now run directly on the calling cores"
        );
        tracing::warn!(reason = why, "spindle system-call service stopped");
        for (c, r) in self
            .regions
            .iter()
            .enumerate()
            .take(shared.hwm.load(Ordering::Acquire))
        {
            let core = &shared.cores[c];
            if core.state() == CoreState::Active {
                core.doorbell.wake_if_sleeping();
            } else {
                wake_waiters(r, u32::MAX >> (32 - SLOTS));
            }
        }
    }

    /// Whether worker core `id` has completions to collect (its idle loop's check).
    fn worker_pending(&self, id: usize) -> bool {
        let r = &self.regions[id];
        // SAFETY: called on core `id`'s OS thread.
        let mut bits = unsafe { (*r.local.get()).inflight };
        if bits == 0 {
            return false;
        }
        if self.dead.load(Ordering::Acquire) {
            return true;
        }
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if r.slots[i].state() != READY {
                return true;
            }
        }
        false
    }

    /// Wakes the threads of core `core` whose request left READY (or all, if the
    /// service died). Called at the core's schedule points when it has requests in
    /// flight.
    #[cold]
    #[inline(never)]
    fn collect(&self, ctx: &mut CoreCtx<'_>) {
        let r = &self.regions[ctx.core().id];
        // SAFETY: called on the core's OS thread.
        let w = unsafe { &mut *r.local.get() };
        let dead = self.dead.load(Ordering::Acquire);
        let mut bits = w.inflight;
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if dead || r.slots[i].state() != READY {
                w.inflight &= !(1 << i);
                ctx.wake_internal(ThreadId::from_u64(r.waiters[i].load(Ordering::Relaxed)));
            }
        }
    }
}

/// Wakes the waiters of the slots in `mask` from any context.
fn wake_waiters(r: &Region, mut mask: u32) {
    while mask != 0 {
        let i = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        let w = r.waiters[i].load(Ordering::Relaxed);
        if w != 0 {
            crate::sched::wait::Waiter::of(ThreadId::from_u64(w)).wake();
        }
    }
}

/// The service core's role: at every schedule point and on every spin of its idle
/// loop it serves the requests of the workers; it waits for them with the CPU's
/// monitored wait when there is one.
pub(crate) struct ServeRole {
    /// The runtime's service, which outlives its cores.
    pub(crate) service: *const Service,
}

/// A worker core's role: it collects the completions of its requests.
pub(crate) struct CollectRole {
    /// The runtime's service, which outlives its cores.
    pub(crate) service: *const Service,
}

// SAFETY: the roles only point at the runtime's service (which is Sync), which lives in the same runtime as the roles and outlives them; they are called on their core's OS thread.
unsafe impl Sync for ServeRole {}
// SAFETY: as above.
unsafe impl Sync for CollectRole {}
// SAFETY: as above: the pointer is to state shared by the whole runtime, not owned.
unsafe impl Send for ServeRole {}
// SAFETY: as above.
unsafe impl Send for CollectRole {}

impl ServeRole {
    fn service(&self) -> &Service {
        // SAFETY: the service lives in the runtime, which outlives its cores and their roles.
        unsafe { &*self.service }
    }
}

impl CollectRole {
    fn service(&self) -> &Service {
        // SAFETY: as for `ServeRole::service`.
        unsafe { &*self.service }
    }
}

impl CoreRole for ServeRole {
    #[inline]
    fn at_schedule_point(&self, ctx: &mut CoreCtx<'_>) {
        self.service().serve(ctx.core().set());
    }

    fn idle_work(&self, core: &Core) -> bool {
        let svc = self.service();
        svc.serve(core.set()) > 0 || svc.has_posted(core.set())
    }

    fn sleep_mark(&self, _core: &Core) -> u32 {
        if self.service().strategy != WaitStrategy::Futex {
            2
        } else {
            1
        }
    }

    fn idle_sleep(&self, core: &Core, timeout: Option<std::time::Duration>) {
        let strategy = self.service().strategy;
        if strategy != WaitStrategy::Futex {
            // SAFETY: `strategy` came from CPUID (`wait::detect`) and is not Futex.
            unsafe { wait::monitored_wait(strategy, core.doorbell.word(), 2) };
        } else {
            core.doorbell.sleep(timeout);
        }
    }
}

impl CoreRole for CollectRole {
    /// A worker with requests in flight collects completions: one load when there
    /// are none.
    #[inline]
    fn at_schedule_point(&self, ctx: &mut CoreCtx<'_>) {
        let svc = self.service();
        let r = &svc.regions[ctx.core().id];
        // SAFETY: called on the core's OS thread (the role's contract).
        if unsafe { (*r.local.get()).inflight } != 0 {
            svc.collect(ctx);
        }
    }

    fn idle_work(&self, core: &Core) -> bool {
        self.service().worker_pending(core.id)
    }

    /// A leaving core's last collection, before it evacuates: wakes the threads whose
    /// call completed while the core was still active (the service rang its doorbell
    /// then, and the core halted before collecting). Calls still in flight are
    /// completed and woken by the service, which sees the core is not active any more.
    fn on_leave(&self, ctx: &mut CoreCtx<'_>) {
        self.at_schedule_point(ctx);
    }
}
