//! The tick: reads what every core published, asks cores whose thread is over its
//! slice to reschedule, and signals those that did not within a tick.

use std::time::Instant;

use super::PREEMPT_SIGNAL;
use super::clock::{Clock, RUN_PREEMPTIBLE, RUN_RUNNING, RUN_SLICE};
use super::signal;
use super::stuck;
use super::watchdog;
use crate::loom::Ordering;
use crate::sched::clock::CoreClock;
use crate::sched::set::CoreSet;
use crate::sched::{Core, CoreState};

/// One tick: reads what every core published, sets the reschedule flag of cores whose
/// thread is over its slice, signals those that did not honour it within a tick and
/// run a preemptible thread, and runs the watchdog.
pub(crate) fn tick(set: &CoreSet, clock: &Clock, now: Instant) {
    let t = u64::try_from(
        now.saturating_duration_since(clock.epoch).as_nanos() / clock.tick_ns as u128,
    )
    .unwrap_or(u64::MAX);
    clock.now.store(t, Ordering::Relaxed);
    let mut watch = clock.watch.lock().unwrap_or_else(|e| e.into_inner());
    let n = set.hwm.load(Ordering::Acquire);
    for core in &set.cores[..n] {
        let w = &mut watch[core.id];
        watchdog::finish_report(core, w);
        // The hypercore runs the tick itself (its running thread is the ticker), and
        // its maintenance threads are cooperative: only worker cores are watched.
        // A leaving core is watched too: its thread must reach the schedule point
        // where the core halts.
        if !matches!(core.state(), CoreState::Active | CoreState::Leaving)
            || set.is_service(core.id)
        {
            w.flagged_at = None;
            core.clock.now.store(t, Ordering::Relaxed);
            continue;
        }
        let k = &core.clock;
        k.now.store(t, Ordering::Relaxed);
        // Acquire: pairs with the release in `bump`, so `start` and `run` are at
        // least as new as `points` (see `loom_tick_flag`).
        let points = k.points.load(Ordering::Acquire);
        let run = k.run.load(Ordering::Relaxed);
        if points != w.points {
            w.points = points;
            w.flagged_at = None;
            w.reported = false;
            w.still_since = t;
            w.recheck_at = 0;
        }
        if run & RUN_RUNNING == 0 {
            continue;
        }
        if clock.config.handoff {
            stuck::check(core, w, t, clock.config.handoff_ticks, points);
        }
        let slice = (run & RUN_SLICE).max(1);
        let elapsed = t.saturating_sub(k.start.load(Ordering::Relaxed));
        // The start is a tick count, so the run began up to a tick after it: a run
        // gets between `slice - 1` and `slice` ticks before the request (runs that
        // follow a preemption start right after a tick, and get their full slice).
        if elapsed < slice {
            continue;
        }
        match w.flagged_at {
            None => {
                core.resched.ask();
                w.flagged_at = Some(t);
                w.cpu_at_flag = watchdog::thread_cpu_ns(k.tid.load(Ordering::Relaxed));
            }
            Some(f) if t > f && run & RUN_PREEMPTIBLE != 0 => {
                core.resched.ask();
                signal(k);
            }
            Some(_) => {}
        }
        watchdog::check(
            clock,
            k,
            w,
            watchdog::Run {
                now: t,
                word: run,
                slice,
                elapsed,
            },
        );
    }
}

/// Asks `core` to reschedule now, and sends the preemption signal to its OS thread:
/// a preemptible thread yields at its next safe point, any other at its next runtime
/// call (the shutdown's way to stop a core).
pub(crate) fn preempt_now(core: &Core) {
    core.resched.ask();
    signal(&core.clock);
}

/// Sends the preemption signal to the core's OS thread (unless another SIGURG handler
/// replaced spindle's: `signal::may_send`). At worst the thread is gone (ESRCH) or its
/// id was reused by another of our threads, whose handler finds no spindle thread to
/// preempt.
pub(super) fn signal(k: &CoreClock) {
    let tid = k.tid.load(Ordering::Relaxed);
    if tid == 0 || !signal::may_send() {
        return;
    }
    if signal::send(tid, PREEMPT_SIGNAL) {
        k.sent
            .store(k.sent.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

#[cfg(all(test, loom))]
mod loom_tick_flag {
    //! The tick's flag against a core's schedule points: a reschedule request the
    //! tick makes for a run it saw is never lost — at the end either the flag is
    //! still set (a later runtime call honours it) or the core passed a schedule
    //! point after that run. This needs `points` published with release after the
    //! poll clears the flag, and read with acquire by the tick.
    use loom::sync::Arc;
    use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    #[test]
    fn loom_tick_flag_not_lost() {
        loom::model(|| {
            let points = Arc::new(AtomicU64::new(1));
            let resched = Arc::new(AtomicBool::new(false));
            let (p, r) = (points.clone(), resched.clone());
            let core = loom::thread::spawn(move || {
                // A schedule point: the poll clears the flag, then the switch
                // publishes the new run.
                r.store(false, Ordering::Relaxed);
                p.store(2, Ordering::Release);
                // The new run's first runtime call.
                if r.load(Ordering::Relaxed) {
                    r.store(false, Ordering::Relaxed);
                    p.store(3, Ordering::Release);
                }
            });
            // The tick: sees a run, flags it.
            let seen = points.load(Ordering::Acquire);
            resched.store(true, Ordering::Release);
            core.join().unwrap();
            let end = points.load(Ordering::Relaxed);
            assert!(
                resched.load(Ordering::Relaxed) || end > seen,
                "a reschedule request for run {seen} was lost (points {end})"
            );
        });
    }
}
