//! The maintenance threads: the runtime's upkeep, run on the service core (the
//! hypercore) so that worker cores never spend time or system calls on it.
//!
//! Each is an ordinary spindle thread of the highest priority, started by
//! `start` when the runtime is built, that does one pass of its work and sleeps
//! for its period:
//!
//! - the **ticker** (every tick, 1 ms unless configured) runs `preempt::tick`: it
//!   advances the slice clock, flags threads past their time slice, signals cores
//!   whose preemptible thread ignored the flag, feeds the watchdog and takes the
//!   cores stuck in the kernel, then gives released cores to spare OS threads (the
//!   runtime's `carriers::assign`, handed down at start; absent if the runtime was
//!   built with `ticker(false)`);
//! - the **reaper** (every [`REAP_EVERY`]) releases the memory of the stack blocks
//!   that idle worker cores handed over (`stack::reap`) — the `madvise`
//!   calls happen here, not on a worker;
//! - the **balancer** (every [`BALANCE_EVERY`]) compares the published loads of the
//!   cores of each worker type and asks the busiest to send threads to the least
//!   busy one through its exchange slot (`balance`);
//! - the **stats** sampler (every [`STATS_EVERY`]) keeps a smoothed load per core;
//! - the **trace** drainer (every 10 ms,
//!   when tracing) writes the cores' trace rings out (`tracefile`);
//! - the **page** writer (every [`PAGE_EVERY`](crate::page::PAGE_EVERY), when the
//!   stats page is on) rewrites the page `spindle top` reads (`page`);
//!
//! The system-call service and the readiness dispatch of `spindle::net` are not
//! threads: they run at the hypercore's schedule points and in its idle loop (see
//! `crate::offload`).
//!
//! They hold only a weak reference to the runtime between passes, and stop when the
//! shutdown stops the cores, after it unwound the other threads (see `shutdown`).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::sched::CoreState;
use crate::sched::placement::Target;
use crate::sched::requests::Rebalance;
use crate::shared::Shared;
use crate::thread::{MAX_PRIORITY, SpawnOpts, spawn_unchecked};

/// The reaper's period.
pub const REAP_EVERY: Duration = Duration::from_millis(10);
/// The balancer's period.
pub const BALANCE_EVERY: Duration = Duration::from_millis(2);
/// The stats sampler's period.
pub const STATS_EVERY: Duration = Duration::from_millis(10);

/// One pass of a maintenance thread's work.
type Work = Box<dyn Fn(&Arc<Shared>) + Send>;

/// A maintenance thread: its name, its period, and one pass of its work.
type Job = (&'static str, Duration, Work);

/// Starts the runtime's maintenance threads. Called once by `RuntimeBuilder::build`,
/// from the building OS thread. `after_tick` runs after each tick: the runtime's half
/// of the handoff (`runtime::carriers::assign`), handed down from above.
pub(crate) fn start(
    shared: &Arc<Shared>,
    after_tick: fn(&Arc<Shared>),
) -> Result<(), crate::SpawnError> {
    let mut jobs: Vec<Job> = vec![
        (
            "spindle-reaper",
            REAP_EVERY,
            Box::new(|_: &Arc<Shared>| {
                crate::stack::reap();
            }),
        ),
        (
            "spindle-balancer",
            BALANCE_EVERY,
            Box::new(|s: &Arc<Shared>| balance(s)),
        ),
        (
            "spindle-stats",
            STATS_EVERY,
            Box::new(|s: &Arc<Shared>| sample(s)),
        ),
    ];
    if shared.trace.is_some() {
        jobs.push((
            "spindle-trace",
            crate::tracefile::DRAIN_EVERY,
            Box::new(|s: &Arc<Shared>| {
                if let Some(t) = &s.trace {
                    t.drain(s);
                }
            }),
        ));
    }
    if shared.page.is_some() {
        jobs.push((
            "spindle-page",
            crate::page::PAGE_EVERY,
            Box::new(|s: &Arc<Shared>| {
                if let Some(p) = &s.page {
                    p.write(s, &s.offload, s.clock.tick_ns());
                }
            }),
        ));
    }
    let config = &shared.clock.config;
    if shared.has_service() && config.ticker {
        jobs.push((
            "spindle-ticker",
            config.tick,
            Box::new(move |s: &Arc<Shared>| {
                tick(s);
                after_tick(s);
            }),
        ));
    }
    for (name, period, work) in jobs {
        let weak = Arc::downgrade(shared);
        spawn_detached(shared, name, move || every(&weak, period, work))?;
    }
    Ok(())
}

/// Starts `f` as a detached, non-preemptible maintenance thread of the highest
/// priority named `name`.
fn spawn_detached(
    shared: &Arc<Shared>,
    name: &'static str,
    f: impl FnOnce() + Send + 'static,
) -> Result<(), crate::SpawnError> {
    let opts = SpawnOpts {
        name: Some(crate::task::tcb::Name::Static(name)),
        stack_size: None,
        priority: MAX_PRIORITY,
        main: false,
        target: Target::Maintenance,
        lazy: false,
        time_slice: None,
        preemptible: Some(false),
    };
    // SAFETY: the closure and its result are 'static and Send, as a spawn requires.
    let h = unsafe { spawn_unchecked(shared, f, opts)? };
    shared.add_maintenance_thread(h.thread().id());
    // The handle is dropped: the thread is detached.
    drop(h);
    Ok(())
}

/// Runs `work` every `period` until the shutdown stops the cores (the ticker keeps
/// preempting while the shutdown unwinds the other threads). Passes are due at fixed
/// times (start + k × period), so the work and the wake-up latency do not stretch the
/// period; a pass that is late is not made up for.
fn every(weak: &Weak<Shared>, period: Duration, work: Work) {
    let mut next = std::time::Instant::now();
    loop {
        {
            let Some(shared) = weak.upgrade() else { return };
            if shared.stopping.load(Ordering::Acquire) {
                return;
            }
            work(&shared);
        }
        next += period;
        let now = std::time::Instant::now();
        if next > now {
            crate::sched::wait::sleep(next - now);
        } else {
            next = now;
        }
    }
}

/// The ticker's pass (and the stats page's sample of the running threads).
fn tick(shared: &Shared) {
    crate::preempt::tick::tick(shared, &shared.clock, std::time::Instant::now());
    if let Some(p) = &shared.page {
        p.sample(shared);
    }
}

/// Smoothing of the stats sampler: each sample weighs 1/8.
const SMOOTH_SHIFT: u32 = 3;

/// The stats sampler's pass: an exponentially smoothed load per active core.
fn sample(shared: &Shared) {
    for c in shared.started() {
        if c.state() != CoreState::Active {
            continue;
        }
        let now = c.published.load.load(Ordering::Relaxed) << 8;
        let avg = c.load_avg.load(Ordering::Relaxed);
        let next = avg - (avg >> SMOOTH_SHIFT) + (now >> SMOOTH_SHIFT);
        c.load_avg.store(next, Ordering::Relaxed);
    }
}

/// The balancer's pass: for each worker type, if the busiest active core has at least
/// two more threads than the least busy one, asks it to send half the difference there
/// (a request the core honours at its next schedule point, which the reschedule flag
/// brings forward to its next `preempt_point`).
fn balance(shared: &Shared) {
    for ty in 0..shared.types.len() {
        if Some(ty) == shared.service_ty {
            continue;
        }
        let mut busiest: Option<(u32, usize)> = None;
        let mut idlest: Option<(u32, usize)> = None;
        for c in shared.started() {
            if c.state() != CoreState::Active || c.ty.load(Ordering::Relaxed) != ty {
                continue;
            }
            let load = c.published.load.load(Ordering::Relaxed);
            if busiest.is_none_or(|(l, _)| load > l) {
                busiest = Some((load, c.id));
            }
            if idlest.is_none_or(|(l, _)| load < l) {
                idlest = Some((load, c.id));
            }
        }
        let (Some((hi, from)), Some((lo, to))) = (busiest, idlest) else {
            continue;
        };
        if hi >= lo + 2 {
            let count = ((hi - lo) / 2).min(u32::from(u16::MAX)) as u16;
            let core = &shared.cores[from];
            core.balance.ask(Rebalance { to, count });
            core.resched.ask();
        }
    }
}
