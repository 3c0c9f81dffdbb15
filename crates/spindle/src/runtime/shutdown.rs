//! Stopping a runtime (`Runtime`'s drop), in bounded time, leaving nothing behind.
//!
//! 1. **Refuse new work.** `Shared::shutdown` is set under the admin lock: spawns,
//!    `add_core` and `remove_core` fail from then on.
//! 2. **Unwind the threads.** A scan of the slot table marks every live thread of the
//!    runtime `F_ABANDON`, except the runtime's own maintenance threads (the ticker
//!    keeps preempting meanwhile). Each thread asleep is woken with its TCB's
//!    `abandon` set; each other thread unwinds at its next blocking point
//!    (`task::abandon`). The cores keep running them, so destructors run with the
//!    whole runtime at hand: they may lock, send, join, sleep. Waits until they are
//!    gone, or until no thread has finished for [`STALL`] (the rest spin, or wait in
//!    a destructor), or until the shutdown timeout.
//! 3. **Stop the cores.** `Shared::stopping` ends the maintenance threads (each is
//!    woken); every core is asked to halt, and the preemption signal is sent each
//!    millisecond to every core still running, so a preemptible thread that spins is
//!    stopped at its next safe point. A core that does not stop by the timeout (its
//!    thread neither yields nor can be preempted) is left running, and stderr says
//!    which thread holds it.
//! 4. **Reclaim.** What is left — threads that did not finish unwinding in time,
//!    threads never started — is discarded without unwinding (`Tcb::discard`),
//!    their `join` reports `ABANDONED`, every stack goes back to the process's pool,
//!    and the blocking pool's threads are stopped. When a core was left running,
//!    this waits for it: the last core to stop reclaims (`core_stopped`), since
//!    reclaiming threads that a running core may still touch is not sound.
//!
//! Drop returns after at most about twice the shutdown timeout
//! ([`RuntimeBuilder::shutdown_timeout`](crate::RuntimeBuilder::shutdown_timeout),
//! default [`DEFAULT_SHUTDOWN_TIMEOUT`]).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::runtime::Shared;
use crate::sched::CoreCtx;
use crate::sched::CoreState;
use crate::sched::retire::{FreeTo, retire};
use crate::task::id::ThreadId;
use crate::task::slot::{Channel, table};
use crate::task::tcb::Tcb;

/// Default of [`RuntimeBuilder::shutdown_timeout`](crate::RuntimeBuilder::shutdown_timeout).
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

/// Phase 2 moves on when no thread has finished for this long (or the timeout's
/// quarter, if shorter).
const STALL: Duration = Duration::from_millis(100);

/// How often the shutdown looks at the threads and cores it waits for: from
/// `POLL_MIN` (most waits end within microseconds), doubling to `POLL_MAX`.
const POLL_MIN: Duration = Duration::from_micros(20);
const POLL_MAX: Duration = Duration::from_millis(1);

/// Sleeps between looks at what the shutdown waits for, longer each time.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Backoff {
        Backoff(POLL_MIN)
    }

    fn wait(&mut self) {
        std::thread::sleep(self.0);
        self.0 = (self.0 * 2).min(POLL_MAX);
    }
}

/// Stops the runtime (see the module docs). Called by `Runtime`'s drop, on an OS
/// thread that is not one of the runtime's.
pub(crate) fn shut_down(shared: &Shared) {
    {
        let _g = shared.admin.lock().unwrap_or_else(|e| e.into_inner());
        if shared.shutdown.swap(true, Ordering::AcqRel) {
            return;
        }
    }
    if crate::fork::forked() {
        // The child of a fork: the cores' OS threads do not exist here.
        return;
    }
    let timeout = shared.shutdown_timeout;
    unwind_threads(shared, Instant::now() + timeout, STALL.min(timeout / 4));
    let stuck = stop_cores(shared, Instant::now() + timeout);
    if let Some(e) = shared.trace.as_ref().and_then(|t| t.finish(shared)) {
        eprintln!("spindle: the trace file is incomplete: {e}");
    }
    if stuck.is_empty() {
        claim_reclaim(shared);
        return;
    }
    for line in &stuck {
        eprintln!("spindle: shutdown: {line}");
    }
    // Hand the reclaim to the last core to stop (`core_stopped`), unless it stopped
    // meanwhile.
    shared.deferred.store(true, Ordering::SeqCst);
    if shared.running_cores.load(Ordering::SeqCst) == 0 {
        claim_reclaim(shared);
    }
}

/// Called by a core's OS thread as it ends during a shutdown: the last one reclaims
/// if the shutdown left that to it.
pub(crate) fn core_stopped(shared: &Shared) {
    if shared.running_cores.fetch_sub(1, Ordering::SeqCst) == 1
        && shared.deferred.load(Ordering::SeqCst)
    {
        claim_reclaim(shared);
    }
}

/// Reclaims once, whoever gets here first of the shutdown and the last core.
fn claim_reclaim(shared: &Shared) {
    if !shared.reclaimed.swap(true, Ordering::AcqRel) {
        reclaim(shared);
    }
}

/// Phase 2: marks every live thread of the runtime but its maintenance threads, wakes
/// those asleep to unwind, and waits for them.
fn unwind_threads(shared: &Shared, deadline: Instant, stall: Duration) {
    let internal = shared.maintenance_threads();
    abandon_where(shared, |id| !internal.contains(&id));
    let live = || shared.live_threads() - internal.len() as i64;
    let mut last = live();
    let mut since = Instant::now();
    let mut backoff = Backoff::new();
    while last > 0 {
        backoff.wait();
        let now = Instant::now();
        let n = live();
        if n != last {
            last = n;
            since = now;
        }
        if now >= deadline || now.duration_since(since) >= stall {
            return;
        }
    }
}

/// Marks the live threads of the runtime whose id passes `select` as abandoned, and
/// wakes those that sleep (they unwind as they resume on their core).
fn abandon_where(shared: &Shared, select: impl Fn(ThreadId) -> bool) {
    let me = shared as *const Shared as usize;
    for index in 0..table().allocated() {
        let Some(slot) = table().get(index) else {
            continue;
        };
        let generation = slot.word.generation_now();
        // Relaxed: the owner was written before the thread was published, and a
        // thread of ours that finished meanwhile fails `abandon`'s checks.
        if slot.owner.load(Ordering::Relaxed) != me
            || !select(ThreadId::from_parts(index, generation))
            || !slot.word.abandon(generation)
        {
            continue;
        }
        for chan in [Channel::Internal, Channel::Park] {
            if slot.word.cancel_block(chan, generation) {
                // We won the wake: the thread is asleep and ours to hand back.
                // SAFETY: a thread whose wake we won is alive and asleep: its TCB is valid, and ours to mark before we hand it to its core.
                unsafe { (**slot.tcb.get()).abandon.set(true) };
                // SAFETY: as above: we won its wake, so making it runnable is ours to do.
                unsafe { crate::sched::handoff::enqueue_woken(slot) };
                break;
            }
        }
    }
}

/// Phase 3: ends the maintenance threads and halts every core, preempting what
/// spins, then ends the spare OS threads; returns what did not stop by `deadline`
/// (cores with the thread each runs, threads still blocked off their cores), one
/// sentence each.
fn stop_cores(shared: &Shared, deadline: Instant) -> Vec<String> {
    shared.stopping.store(true, Ordering::Release);
    shared.poller.stop();
    let internal = shared.maintenance_threads();
    let before = shared.live_threads();
    abandon_where(shared, |id| internal.contains(&id));
    // They unwind at once (the poller lets go of the epoll set): give them the few
    // schedule points that takes before the cores halt.
    let short = (Instant::now() + STALL).min(deadline);
    let mut backoff = Backoff::new();
    while shared.live_threads() > before - internal.len() as i64 && Instant::now() < short {
        backoff.wait();
    }
    crate::preempt::ticker::stop(&shared.clock);
    crate::preempt::watchdog::drop_names(shared.started());
    for c in shared.started() {
        c.halt.store(true, Ordering::Release);
        c.nudge();
    }
    let mut backoff = Backoff::new();
    loop {
        // A core is done once no OS thread carries it; a thread adrift (`carriers`)
        // still runs on its own stack.
        let running: Vec<usize> = shared
            .started()
            .iter()
            .filter(|c| c.carried())
            .map(|c| c.id)
            .collect();
        let adrift = shared.adrift.load(Ordering::Relaxed);
        if running.is_empty() && adrift == 0 {
            break;
        }
        if Instant::now() >= deadline {
            let mut stuck: Vec<String> = running
                .into_iter()
                .map(|id| {
                    let name = crate::preempt::watchdog::running_thread(&shared.cores[id]);
                    format!(
                        "core {id} is still running {name}, which neither reaches a schedule \
                         point nor can be preempted; the runtime's remaining threads and memory \
                         are reclaimed when it stops (give such a loop \
                         Builder::preemptible(true) or a spindle::preempt_point())"
                    )
                })
                .collect();
            if adrift != 0 {
                stuck.push(format!(
                    "{adrift} thread(s) still block their OS threads in the kernel off their \
                     cores ({}); the runtime's remaining threads and memory are reclaimed when \
                     they return",
                    super::carriers::adrift_threads(shared).join(", ")
                ));
            }
            shared.spares.stop();
            return stuck;
        }
        for &id in &running {
            // Preempts a preemptible thread at its next safe point (whose schedule
            // point then halts the core); for any other it sets the flag its next
            // runtime call honours.
            crate::preempt::tick::preempt_now(&shared.cores[id]);
        }
        backoff.wait();
    }
    // Every core halted and no thread is adrift: the spares end, and every carrier
    // OS thread is joined.
    for h in shared.spares.stop() {
        let _ = h.join();
    }
    Vec::new()
}

/// Phase 4: discards every thread still alive, hands the stacks back to the process
/// pool, stops the blocking pool. Runs once every core's OS thread has ended.
fn reclaim(shared: &Shared) {
    // Routing is over: wakes of these threads from now on only leave tokens.
    for c in shared.started() {
        c.set_state(CoreState::Retired);
    }
    // SAFETY: every core's OS thread has ended (the contract of `reclaim`): their core-local state is ours.
    let mut pool_core = unsafe { CoreCtx::stopped(&shared.cores[0]) };
    // Our threads' owner was written by our cores, whose OS threads have ended.
    let left: Vec<_> = shared.live_slots().collect();
    for (index, slot) in left {
        // SAFETY: our cores stopped, so this thread never runs again; its TCB is ours.
        unsafe {
            let tcb: *mut Tcb = *slot.tcb.get();
            // It will never sleep again: later wakes must only leave tokens.
            let generation = slot.word.generation();
            slot.word.cancel_block(Channel::Internal, generation);
            slot.word.cancel_block(Channel::Park, generation);
            ((*tcb).vtable.write_abandoned)(slot.result.get());
            Tcb::discard(tcb, pool_core.pool());
            retire(slot, index, FreeTo::Table);
        }
    }
    for c in shared.started() {
        // SAFETY: every core's OS thread has ended: their core-local state is ours.
        let mut ctx = unsafe { CoreCtx::stopped(c) };
        ctx.pool().drain_to_spare();
        table().give_back(ctx.free_slots());
    }
    shared.blocking.shut_down();
}
