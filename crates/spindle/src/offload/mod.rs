//! Exception-less system calls: a spindle thread hands its system call to
//! the hypercore through shared memory and sleeps; its core runs other threads.
//!
//! - Each worker core has a [`Region`] of [`SLOTS`] request slots (`slot.rs`: the
//!   state machine FREE → CLAIMED → READY → DONE → FREE, one writer per transition,
//!   no RMW). A request and its answer each move one cache line: the slot's.
//! - The **service loop** ([`Service::serve`]) runs on the service core's OS thread:
//!   at each of its schedule points (between maintenance threads) and in its idle
//!   loop. A pass reads the state of every slot of every started worker (lines it
//!   holds shared until a worker writes one). With io_uring (the `ring` backend,
//!   `ring.rs`), it queues every READY request its caller marked [`ring::RING`] as
//!   one operation and submits the whole batch with one `io_uring_enter`, then
//!   completes the slots from the completions, now or at a later pass (an operation
//!   that waits, for a socket or a disk, waits in the kernel). Unmarked requests, and
//!   every request of the `epoll` backend, run as plain system calls there.
//! - **Readiness** of `net`'s descriptors (`crate::io`) is dispatched by the same
//!   loop: the ring polls the epoll set; without a ring, a pass reads the set while
//!   threads wait on it.
//! - **Sleep in one place**: the idle service core sleeps in `io_uring_enter` (or in
//!   `epoll_wait` on the poller's set) until a completion, readiness, a request (the
//!   doorbell writes the set's eventfd) or its next timer. On a CPU with a user-mode
//!   wait it waits with that instead while nothing waits in the kernel.
//! - A worker **collects** at each schedule point ([`at_schedule_point`]), and only
//!   when it has requests in flight (a core-local mask): it wakes the threads whose
//!   slot left READY (or all, if the service died). An idle worker counts such a slot
//!   as work before it sleeps, and the service's doorbell ring wakes it.
//! - **Cancellation**: a caller that stops waiting (a timeout, an unwind) sets its
//!   slot's cancel flag and rings the service; the service cancels the operation in
//!   the ring, and the slot is completed from the operation's own completion. The
//!   caller waits for DONE either way, so nothing it lent is freed while the kernel
//!   may still use it.
//! - **Full slots**: a caller that finds every slot of its core taken sleeps in the
//!   core's queue of slot waiters (counted in [`ServiceStats::slot_waits`]); the core
//!   wakes one waiter per FREE slot at its schedule points (a ring request's slot is
//!   freed by the service, which then rings the core). Waiting callers take no CPU:
//!   where a worker shares its CPU with its service core, a caller that spun there
//!   would hold the CPU that core needs to free a slot.
//! - **Failure**: if the service loop panics or is stopped, it cancels what is in the
//!   ring and waits for it, publishes `dead` after its last slot access and rings
//!   every worker. Pending calls are woken and run directly by their own threads; new
//!   calls run directly. A warning is printed once and [`ServiceStats::failed`] says
//!   so.

pub(crate) mod cancel;
pub(crate) mod ring;
pub(crate) mod slot;
pub(crate) mod wait;

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

use crate::io::Poller;
use crate::os::raw_syscall;
use crate::sched::role::CoreRole;
use crate::sched::{Core, CoreCtx, CoreSet, CoreState, MAX_CORES};
use crate::task::id::ThreadId;
use ring::{Done, RING, Ring};
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
    /// The [`Pending`] record of each slot's ring request (its address; written by
    /// the claimer before READY, read by the service when it takes the request).
    pub(crate) pending: [AtomicU64; SLOTS],
    /// Calls of this core its server took (single writer: the server; read by the
    /// stats page).
    pub(crate) served: AtomicU64,
    /// Touched only by the worker core's OS thread.
    pub(crate) local: CachePadded<UnsafeCell<WorkerSide>>,
}

#[derive(Default)]
pub(crate) struct WorkerSide {
    /// Slots published from this core and not collected yet.
    pub(super) inflight: u32,
    /// Threads of this core that found every slot taken and sleep until one is free
    /// (their ids, first come first woken): the core wakes one per FREE slot at its
    /// schedule points, and all of them when it leaves.
    pub(crate) slot_waiters: std::collections::VecDeque<u64>,
}

impl Region {
    fn new() -> Region {
        Region {
            slots: std::array::from_fn(|_| ReqSlot::new()),
            waiters: std::array::from_fn(|_| AtomicU64::new(0)),
            pending: std::array::from_fn(|_| AtomicU64::new(0)),
            served: AtomicU64::new(0),
            local: CachePadded::new(UnsafeCell::new(WorkerSide::default())),
        }
    }
}

/// What a test hook asks of the service loop.
const STOP_NONE: u8 = 0;
const STOP_QUIETLY: u8 = 1;
const STOP_PANIC: u8 = 2;

/// The system-call service of one runtime: the request regions of its worker cores,
/// and one [`Server`] per service core.
pub(crate) struct Service {
    pub(super) regions: Box<[Region]>,
    /// Which server serves each worker core's region: written once, before the core
    /// first starts (published by the release store of the set's `hwm`), never
    /// changed, so that one region is only ever read by one server.
    route: Box<[AtomicU8]>,
    pub(crate) servers: Box<[CachePadded<Server>]>,
    strategy: WaitStrategy,
    backend: Backend,
    /// The readiness poller's set, whose events the first server dispatches.
    poller: *const Poller,
}

/// One service core's part of the service.
pub(crate) struct Server {
    /// Set (release) by this service core once it will never touch a slot again.
    pub(crate) dead: AtomicBool,
    /// A test hook's request: stop (1) or panic (2) at the next pass.
    stop: AtomicU8,
    /// Calls served (single writer: this service core).
    served: AtomicU64,
    /// Calls that went through the ring (single writer: this service core).
    batched: AtomicU64,
    /// `io_uring_enter` calls that submitted them (single writer: this service core).
    enters: AtomicU64,
    /// Times a caller of a core served here found every slot of its core taken.
    pub(crate) slot_waits: AtomicU64,
    /// Calls run directly because this server had failed.
    pub(crate) direct_failed: AtomicU64,
    /// Set by owners that gave up on a ring request this server holds (`cancel.rs`).
    pub(crate) cancels: cancel::Word,
    /// The eventfd this service core's ring sleeps on, when it is not the poller's.
    kick: Option<std::os::fd::OwnedFd>,
    /// Touched only by this service core's OS thread.
    side: UnsafeCell<ServiceSide>,
}

/// A service core's own state.
struct ServiceSide {
    ring: Option<Ring>,
    /// The [`Pending`] records whose operation is in the ring, and whether it was
    /// cancelled. A record is dereferenced only while it is here or not taken yet:
    /// its owner waits for DONE.
    in_ring: std::collections::HashMap<u64, bool>,
}

/// How the service makes its calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Batched through an io_uring; calls that wait, wait in the kernel.
    IoUring,
    /// One plain system call per request; readiness from an epoll set.
    Epoll,
}

impl Backend {
    /// The name used in reports: `io_uring` or `epoll`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::IoUring => "io_uring",
            Backend::Epoll => "epoll",
        }
    }
}

// SAFETY: each region's `local` is touched only by its core's OS thread and each server's `side` only by its service core's (see their docs); the poller outlives the service (both are fields of the runtime); everything else is atomic.
unsafe impl Sync for Service {}
// SAFETY: as above.
unsafe impl Send for Service {}

/// Figures of a runtime's system-call service (see [`crate::sys::service_stats`]), or
/// of one of its service cores ([`crate::sys::service_core_stats`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceStats {
    /// Service cores counted here.
    pub service_cores: usize,
    /// Calls the service loop ran for the worker cores.
    pub served: u64,
    /// Of `served`, the calls that went through the io_uring.
    pub batched: u64,
    /// `io_uring_enter` calls that submitted them (`batched / enters` is the mean
    /// batch).
    pub enters: u64,
    /// Times a caller found every request slot of its core taken and yielded until
    /// one was free.
    pub slot_waits: u64,
    /// Calls run directly because the service loop had failed or was stopped.
    pub direct_failed: u64,
    /// Whether a service loop has failed (panicked) or was stopped.
    pub failed: bool,
    /// How the idle service loop waits when nothing waits in the kernel.
    pub strategy: WaitStrategy,
    /// How the calls are made: io_uring, or plain calls and epoll.
    pub backend: Backend,
}

impl Server {
    fn new(ring: Option<Ring>, kick: Option<std::os::fd::OwnedFd>) -> Server {
        Server {
            dead: AtomicBool::new(false),
            stop: AtomicU8::new(STOP_NONE),
            served: AtomicU64::new(0),
            batched: AtomicU64::new(0),
            enters: AtomicU64::new(0),
            slot_waits: AtomicU64::new(0),
            direct_failed: AtomicU64::new(0),
            cancels: cancel::Word::new(),
            kick,
            side: UnsafeCell::new(ServiceSide {
                ring,
                in_ring: std::collections::HashMap::new(),
            }),
        }
    }

    /// Adds `n` to a counter this service core alone writes.
    fn count(counter: &AtomicU64, n: u64) {
        if n != 0 {
            counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
        }
    }

    /// This service core's own state.
    ///
    /// # Safety
    ///
    /// Only this service core's OS thread calls this, and holds no other reference
    /// from it at the time.
    #[allow(clippy::mut_from_ref)]
    unsafe fn side(&self) -> &mut ServiceSide {
        // SAFETY: the caller's contract: one thread, one reference at a time.
        unsafe { &mut *self.side.get() }
    }
}

impl Service {
    /// The service of a runtime whose readiness set is `poller`, with `servers`
    /// service cores (0 without a hypercore). `ring`: make an io_uring per service
    /// core (used only if every one can have its ring). `poller_at` is where `poller`
    /// will live in the runtime (it outlives the service there).
    pub(crate) fn new(
        poller: &Poller,
        poller_at: *const Poller,
        ring: bool,
        servers: usize,
    ) -> Service {
        let n = servers.max(1);
        let mut rings = Vec::new();
        if ring && servers > 0 {
            for k in 0..n {
                // The first service core sleeps on the poller's eventfd and watches
                // its set; the others sleep on their own.
                let kick = if k == 0 {
                    None
                } else {
                    match crate::os::eventfd() {
                        Ok(fd) => Some(fd),
                        Err(_) => break,
                    }
                };
                let fd = kick
                    .as_ref()
                    .map_or(poller.kick_fd(), std::os::fd::AsRawFd::as_raw_fd);
                let Some(mut r) = Ring::new(fd) else { break };
                if k == 0 {
                    r.watch(poller.epfd());
                }
                rings.push((r, kick));
            }
        }
        let backend = if rings.len() == n && ring && servers > 0 {
            Backend::IoUring
        } else {
            rings.clear();
            Backend::Epoll
        };
        let mut rings = rings.into_iter();
        Service {
            regions: (0..MAX_CORES).map(|_| Region::new()).collect(),
            route: (0..MAX_CORES).map(|_| AtomicU8::new(0)).collect(),
            servers: (0..n)
                .map(|_| {
                    let (ring, kick) = rings.next().map_or((None, None), |(r, k)| (Some(r), k));
                    CachePadded::new(Server::new(ring, kick))
                })
                .collect(),
            strategy: wait::detect(),
            backend,
            poller: poller_at,
        }
    }

    /// Whether requests marked [`RING`] are taken: the io_uring backend.
    pub(crate) fn rings(&self) -> bool {
        self.backend == Backend::IoUring
    }

    /// The index of the server of worker core `core`.
    #[inline]
    pub(crate) fn route(&self, core: usize) -> usize {
        usize::from(self.route[core].load(Ordering::Relaxed))
    }

    /// Sets the server of worker core `core`, before it first starts.
    pub(crate) fn set_route(&self, core: usize, server: usize) {
        let k = u8::try_from(server.min(self.servers.len() - 1)).unwrap_or(0);
        self.route[core].store(k, Ordering::Relaxed);
    }

    /// The eventfd the `k`th service core's doorbell writes, if it sleeps in a ring
    /// of its own.
    pub(crate) fn own_kick(&self, k: usize) -> Option<i32> {
        self.servers[k]
            .kick
            .as_ref()
            .map(std::os::fd::AsRawFd::as_raw_fd)
    }

    /// The figures of the whole service.
    pub(crate) fn stats(&self) -> ServiceStats {
        let mut s = self.server_stats(0);
        for k in 1..self.servers.len() {
            let o = self.server_stats(k);
            s.served += o.served;
            s.batched += o.batched;
            s.enters += o.enters;
            s.slot_waits += o.slot_waits;
            s.direct_failed += o.direct_failed;
            s.failed |= o.failed;
        }
        s.service_cores = self.servers.len();
        s
    }

    /// The figures of the `k`th service core.
    pub(crate) fn server_stats(&self, k: usize) -> ServiceStats {
        let v = &self.servers[k];
        ServiceStats {
            service_cores: 1,
            served: v.served.load(Ordering::Relaxed),
            batched: v.batched.load(Ordering::Relaxed),
            enters: v.enters.load(Ordering::Relaxed),
            slot_waits: v.slot_waits.load(Ordering::Relaxed),
            direct_failed: v.direct_failed.load(Ordering::Relaxed),
            failed: v.dead.load(Ordering::Acquire),
            strategy: self.strategy,
            backend: self.backend,
        }
    }

    fn poller(&self) -> &Poller {
        // SAFETY: the poller and the service are fields of one runtime, made together; the poller is declared after the service, so it is dropped after it.
        unsafe { &*self.poller }
    }

    /// Asks every service loop to stop (or panic) at its next pass (test hook).
    pub(crate) fn request_stop(&self, panic: bool) {
        let how = if panic { STOP_PANIC } else { STOP_QUIETLY };
        for v in &*self.servers {
            v.stop.store(how, Ordering::Release);
        }
    }

    /// The worker regions server `k` serves: started, not service cores.
    fn served_by<'a>(
        &'a self,
        shared: &'a CoreSet,
        k: usize,
    ) -> impl Iterator<Item = (usize, &'a Region)> + 'a {
        let n = shared.hwm.load(Ordering::Acquire).min(MAX_CORES);
        self.regions
            .iter()
            .enumerate()
            .take(n)
            .filter(move |&(c, _)| !shared.is_service(c) && self.route(c) == k)
    }

    /// One pass of service core `k`'s loop: runs every READY request of the workers
    /// it serves. Returns the number of calls run. Only that core's OS thread calls
    /// this.
    pub(crate) fn serve(&self, shared: &CoreSet, k: usize) -> usize {
        if self.servers[k].dead.load(Ordering::Relaxed) {
            // The slots are the callers' again; readiness is still the service's.
            return self.readiness(k);
        }
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.pass(shared, k))) {
            Ok(Some(n)) => n,
            Ok(None) => {
                self.die(shared, k, "it was stopped");
                0
            }
            Err(_) => {
                self.die(shared, k, "it panicked");
                0
            }
        }
    }

    /// The body of [`Service::serve`]; `None` if asked to stop.
    fn pass(&self, shared: &CoreSet, k: usize) -> Option<usize> {
        let v = &self.servers[k];
        match v.stop.load(Ordering::Relaxed) {
            STOP_NONE => {}
            STOP_QUIETLY => return None,
            _ => panic!("spindle: the system-call service was told to panic (test hook)"),
        }
        // SAFETY: `serve` runs on service core `k`'s OS thread only.
        let side = unsafe { v.side() };
        let mut total = self.reap(k, side);
        if v.cancels.peek() {
            take_cancels(v, side);
        }
        let mut batched = 0u64;
        let mut plain = 0u64;
        for (c, r) in self.served_by(shared, k) {
            let mut done = 0u32;
            let mut freed = 0u64;
            for (i, s) in r.slots.iter().enumerate() {
                let Some((nr, args)) = s.take_ready() else {
                    continue;
                };
                if nr & RING != 0 {
                    let at = r.pending[i].load(Ordering::Relaxed);
                    // The request was read: the slot is free for the core's next call.
                    s.release();
                    freed += 1;
                    batched += u64::from(take_ring(v, side, nr & !RING, args, at));
                    continue;
                }
                // SAFETY: the caller of the offloaded call vouched for the arguments (`sys::syscall`'s contract) and sleeps until DONE, so its buffers stay valid.
                let res = unsafe { raw_syscall(nr, args) };
                // Counted before DONE: whoever saw the result sees the count.
                Server::count(&v.served, 1);
                s.complete(res);
                done |= 1 << i;
            }
            if done != 0 || freed != 0 {
                plain += u64::from(done.count_ones());
                Server::count(&r.served, u64::from(done.count_ones()) + freed);
                // A freed slot is news for the core's slot waiters too.
                self.notify(shared, c, done);
            }
        }
        total += plain as usize;
        if let Some(ring) = &mut side.ring {
            ring.submit();
            v.enters.store(ring.enters, Ordering::Relaxed);
            // Calls that did not wait completed inside the submit.
            total += self.reap(k, side);
        } else if k == 0 && self.poller().waiting() > 0 {
            total += self.poller().dispatch(0);
        }
        Server::count(&v.batched, batched);
        Some(total)
    }

    /// Completes the records of server `k`'s ring completions and, on the first
    /// server, dispatches readiness. Returns the requests completed and readiness
    /// events handled.
    fn reap(&self, k: usize, side: &mut ServiceSide) -> usize {
        let Some(ring) = &mut side.ring else {
            return 0;
        };
        let mut total = 0;
        let mut readiness = false;
        let in_ring = &mut side.in_ring;
        let served = &self.servers[k].served;
        ring.reap(|d| match d {
            Done::Request(at, res) => {
                in_ring.remove(&at);
                // Counted before DONE: whoever saw the result sees the count.
                Server::count(served, 1);
                // SAFETY: `at` was in the ring, so its owner still waits for DONE.
                unsafe { Pending::complete(at, i64::from(res)) };
                total += 1;
            }
            Done::Readiness => readiness = true,
        });
        if readiness {
            total += self.poller().dispatch(0);
        }
        total
    }

    /// A dead server's pass: readiness only (its ring holds no request any more).
    fn readiness(&self, k: usize) -> usize {
        // SAFETY: `serve` runs on service core `k`'s OS thread only.
        let side = unsafe { self.servers[k].side() };
        if side.ring.is_some() {
            let n = self.reap(k, side);
            if let Some(ring) = &mut side.ring {
                ring.submit();
            }
            n
        } else if k == 0 && self.poller().waiting() > 0 {
            self.poller().dispatch(0)
        } else {
            0
        }
    }

    /// Tells worker `c` that the slots in `mask` are DONE: ring its doorbell, or wake
    /// the waiters here if it left.
    fn notify(&self, shared: &CoreSet, c: usize, mask: u32) {
        let core = &shared.cores[c];
        // StoreLoad: the DONE stores before the state load below. Pairs with the
        // SeqCst store of `Leaving` (and the leaving core's later collection in
        // `collect_leaving`): either the core's collection sees DONE, or we see it
        // is no longer active and wake the waiters here.
        std::sync::atomic::fence(Ordering::SeqCst);
        if core.state() == CoreState::Active {
            core.doorbell.wake_if_sleeping();
        } else {
            // The core left (or is leaving): nobody may collect there, so wake
            // the waiters here; a double wake only leaves a spare token.
            wake_waiters(&self.regions[c], mask);
        }
    }

    /// Requests posted to server `k` and not taken yet (the stats page).
    pub(crate) fn posted(&self, shared: &CoreSet, k: usize) -> usize {
        self.served_by(shared, k)
            .map(|(_, r)| r.slots.iter().filter(|s| s.state() == READY).count())
            .sum()
    }

    /// Calls of worker core `core` its server took (the stats page).
    pub(crate) fn served_for(&self, core: usize) -> u64 {
        self.regions[core].served.load(Ordering::Relaxed)
    }

    /// Whether server `k` has work it has not taken yet: a posted request or a
    /// cancellation (its core's check before it sleeps).
    fn has_posted(&self, shared: &CoreSet, k: usize) -> bool {
        self.servers[k].cancels.peek()
            || self
                .served_by(shared, k)
                .any(|(_, r)| r.slots.iter().any(|s| s.state() == READY))
    }

    /// Whether something waits in the kernel for service core `k`: a request in its
    /// ring, or (the first) a thread waiting for readiness.
    fn kernel_waits(&self, k: usize) -> bool {
        // SAFETY: called on service core `k`'s OS thread (its idle loop).
        let side = unsafe { self.servers[k].side() };
        side.ring.as_ref().is_some_and(|r| r.inflight > 0)
            || (k == 0 && self.poller().waiting() > 0)
    }

    /// Service core `k`'s sleep: in its ring, in `epoll_wait` on the poller's set (the
    /// first, without a ring), or on its doorbell's futex; each ends at its doorbell.
    fn sleep(&self, k: usize, core: &Core, timeout: Option<std::time::Duration>) {
        let v = &self.servers[k];
        // SAFETY: called on service core `k`'s OS thread (its idle loop).
        let side = unsafe { v.side() };
        match &mut side.ring {
            Some(ring) => {
                ring.sleep(timeout);
                v.enters.store(ring.enters, Ordering::Relaxed);
            }
            None if k == 0 => {
                let ms = timeout.map_or(-1, |t| {
                    i32::try_from(t.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
                });
                self.poller().dispatch(ms);
            }
            None => core.doorbell.sleep(timeout),
        }
    }

    /// Server `k`'s ring requests are cancelled and waited for before it dies, so
    /// that every request it took is DONE and every other one is still READY.
    fn drain_ring(&self, k: usize) {
        // SAFETY: `die` runs on service core `k`'s OS thread.
        let side = unsafe { self.servers[k].side() };
        let Some(ring) = &mut side.ring else { return };
        for &at in side.in_ring.keys() {
            ring.cancel(at);
        }
        ring.submit();
        for _ in 0..10_000 {
            if side.ring.as_ref().map_or(0, |r| r.inflight) == 0 {
                return;
            }
            self.reap(k, side);
            if let Some(ring) = &mut side.ring
                && ring.inflight > 0
            {
                ring.sleep(Some(std::time::Duration::from_millis(1)));
            }
        }
    }

    /// Service core `k`'s loop stops for good: publish it, wake every worker it
    /// serves and every waiter, so that their pending calls run directly.
    #[cold]
    fn die(&self, shared: &CoreSet, k: usize, why: &str) {
        self.drain_ring(k);
        // Release: every slot access of this server happened before.
        self.servers[k].dead.store(true, Ordering::Release);
        eprintln!(
            "spindle: warning: the system-call service on service core {k} stopped ({why}); \
             the system calls of its workers now run directly on their cores"
        );
        tracing::warn!(
            reason = why,
            server = k,
            "spindle system-call service stopped"
        );
        for (c, r) in self.served_by(shared, k) {
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
        let w = unsafe { &*r.local.get() };
        if !w.slot_waiters.is_empty() && r.slots.iter().any(|s| s.state() == slot::FREE) {
            return true;
        }
        let mut bits = w.inflight;
        if bits == 0 {
            return false;
        }
        if self.servers[self.route(id)].dead.load(Ordering::Acquire) {
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

    /// Wakes the threads of core `core` whose request left READY (or all, if its
    /// server died). Called at the core's schedule points when it has requests in
    /// flight.
    #[cold]
    #[inline(never)]
    fn collect(&self, ctx: &mut CoreCtx<'_>) {
        let id = ctx.core().id;
        let r = &self.regions[id];
        // SAFETY: called on the core's OS thread.
        let w = unsafe { &mut *r.local.get() };
        let dead = self.servers[self.route(id)].dead.load(Ordering::Acquire);
        let mut bits = w.inflight;
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if dead || r.slots[i].state() != READY {
                w.inflight &= !(1 << i);
                ctx.wake_internal(ThreadId::from_u64(r.waiters[i].load(Ordering::Relaxed)));
            }
        }
        if !w.slot_waiters.is_empty() {
            let free = r.slots.iter().filter(|s| s.state() == slot::FREE).count();
            let all = if dead { usize::MAX } else { free };
            for _ in 0..all {
                let Some(t) = w.slot_waiters.pop_front() else {
                    break;
                };
                ctx.wake_internal(ThreadId::from_u64(t));
            }
        }
    }

    /// Wakes every slot waiter of a leaving core: they retry on the core they are
    /// woken on.
    fn release_slot_waiters(&self, ctx: &mut CoreCtx<'_>) {
        let r = &self.regions[ctx.core().id];
        // SAFETY: called on the core's OS thread.
        let w = unsafe { &mut *r.local.get() };
        while let Some(t) = w.slot_waiters.pop_front() {
            ctx.wake_internal(ThreadId::from_u64(t));
        }
    }
}

/// Takes a ring request whose record is at `at` for server `v`, whose state is `side`:
/// an operation queued in the ring (or run as a plain call if the ring has no
/// operation for it), or completed as cancelled if its owner already gave up.
/// Returns whether it queued one.
fn take_ring(v: &Server, side: &mut ServiceSide, nr: u32, args: [u64; 6], at: u64) -> bool {
    // SAFETY: a record not taken yet is alive: its owner waits for DONE.
    if unsafe { Pending::cancelled(at) } {
        // SAFETY: as above.
        unsafe { Pending::complete(at, -i64::from(libc::ECANCELED)) };
        return false;
    }
    if let Some(ring) = &mut side.ring
        // SAFETY: the caller marked the request for the ring and waits until its record is DONE, even while unwinding (`sys::offload`), so its buffers outlive the operation.
        && unsafe { ring.push(nr, args, at) }
    {
        side.in_ring.insert(at, false);
        return true;
    }
    // SAFETY: the caller vouched for the arguments (`sys::syscall`'s contract) and waits until DONE.
    let res = unsafe { raw_syscall(nr, args) };
    Server::count(&v.served, 1);
    // SAFETY: as above: the record is alive until DONE.
    unsafe { Pending::complete(at, res) };
    false
}

/// Server `v` was told that owners gave up: cancels, in its ring, each operation
/// whose record says so (once; the handshake is `cancel.rs`'s).
fn take_cancels(v: &Server, side: &mut ServiceSide) {
    if !v.cancels.take() {
        return;
    }
    let Some(ring) = &mut side.ring else { return };
    for (&at, cancelled) in &mut side.in_ring {
        // SAFETY: `at` is in the ring, so its owner still waits for DONE.
        if !*cancelled && unsafe { Pending::cancelled(at) } {
            *cancelled = true;
            ring.cancel(at);
        }
    }
}

/// The record of one ring request, on its caller's stack: the caller waits until it
/// is DONE before it returns (or unwinds past it).
///
/// - `cancel`: set by the owner, read by the server when it takes the request and
///   when it looks for cancellations (`cancel.rs`).
/// - `result`, then `done` (release): written once by the service, which reads
///   `waiter` before it stores `done` (after that store the record may be gone) and
///   wakes the owner after.
#[repr(C, align(64))]
pub(crate) struct Pending {
    pub(crate) done: AtomicBool,
    pub(crate) cancel: cancel::Flag,
    pub(crate) result: std::sync::atomic::AtomicI64,
    pub(crate) waiter: u64,
}

impl Pending {
    /// A record for thread `waiter`.
    pub(crate) fn new(waiter: ThreadId) -> Pending {
        Pending {
            done: AtomicBool::new(false),
            cancel: cancel::Flag::new(),
            result: std::sync::atomic::AtomicI64::new(0),
            waiter: waiter.as_u64(),
        }
    }

    /// The owner's read: the result once DONE.
    pub(crate) fn result(&self) -> Option<i64> {
        // Acquire: pairs with the release store of `done` in `complete`.
        self.done
            .load(Ordering::Acquire)
            .then(|| self.result.load(Ordering::Relaxed))
    }

    /// Whether the owner asked for a cancellation.
    ///
    /// # Safety
    ///
    /// `at` is the address of a live record (not DONE: its owner waits).
    unsafe fn cancelled(at: u64) -> bool {
        // SAFETY: the caller's contract.
        let p = unsafe { &*(at as *const Pending) };
        p.cancel.is_set()
    }

    /// Stores the result, publishes DONE and wakes the owner.
    ///
    /// # Safety
    ///
    /// `at` is the address of a live record, not DONE yet.
    unsafe fn complete(at: u64, res: i64) {
        // SAFETY: the caller's contract; the record is not touched after `done`.
        let waiter = unsafe {
            let p = &*(at as *const Pending);
            p.result.store(res, Ordering::Relaxed);
            let w = p.waiter;
            // Release: the result travels with DONE. From here the record may be gone.
            p.done.store(true, Ordering::Release);
            w
        };
        crate::sched::wait::Waiter::of(ThreadId::from_u64(waiter)).wake();
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
    /// Which of its servers this core is.
    pub(crate) server: usize,
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
        self.service().serve(ctx.core().set(), self.server);
    }

    fn idle_work(&self, core: &Core) -> bool {
        let svc = self.service();
        svc.serve(core.set(), self.server) > 0 || svc.has_posted(core.set(), self.server)
    }

    /// 2 (a monitored wait: a waker's write ends it) on a CPU that has one while
    /// nothing waits in the kernel; else 1 (the ring's or epoll's sleep, ended by the
    /// doorbell's eventfd).
    fn sleep_mark(&self, _core: &Core) -> u32 {
        let svc = self.service();
        if svc.strategy != WaitStrategy::Futex && !svc.kernel_waits(self.server) {
            2
        } else {
            1
        }
    }

    fn idle_sleep(&self, core: &Core, timeout: Option<std::time::Duration>) {
        let svc = self.service();
        let word = core.doorbell.word();
        if word.load(Ordering::Relaxed) == 2 {
            // SAFETY: mark 2 is announced only when `strategy` (from CPUID, `wait::detect`) is not Futex.
            unsafe { wait::monitored_wait(svc.strategy, word, 2) };
        } else {
            svc.sleep(self.server, core, timeout);
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
        let w = unsafe { &*r.local.get() };
        if w.inflight != 0 || !w.slot_waiters.is_empty() {
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
    /// Its slot waiters are woken too: they retry on the core they are woken on.
    fn on_leave(&self, ctx: &mut CoreCtx<'_>) {
        self.at_schedule_point(ctx);
        self.service().release_slot_waiters(ctx);
    }
}
