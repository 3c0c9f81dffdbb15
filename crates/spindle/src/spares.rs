//! The spare OS threads' waiting room: the cores a handoff released, queued for a
//! spare to carry them, and the spares waiting for one (see `sched::carrier` for the
//! handoff, `runtime::carriers` for the threads themselves).
//!
//! The service core's tick offers each released core once ([`Spares::offer`]); a
//! spare that is woken takes the first queued core, then runs it if it wins the
//! core's carrier word (its old carrier may have taken it back meanwhile). Spares
//! that wait [`IDLE_EXIT`] without a core end, as do all of them when the runtime
//! stops.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a spare waits for a core before its OS thread ends.
pub(crate) const IDLE_EXIT: Duration = Duration::from_secs(10);

/// What [`Spares::offer`] decided for a released core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Queued, and an idle spare was woken for it (or it was queued already).
    Queued,
    /// Queued, and no spare is idle: the caller starts one.
    StartOne,
    /// Queued, no spare is idle, and the bound forbids another: it waits.
    Full,
}

#[derive(Default)]
struct Room {
    /// Released cores not yet taken by a spare, oldest first.
    queue: VecDeque<usize>,
    /// Spares waiting for a core.
    idle: usize,
    /// Spares started and not yet waiting (counted as idle for the queue).
    starting: usize,
    /// The runtime stops: spares end.
    stopping: bool,
    /// The bound was reported on stderr.
    reported: bool,
    /// Every carrier OS thread of the runtime, to join when it stops.
    handles: Vec<JoinHandle<()>>,
}

/// The spare OS threads' waiting room (see the module docs).
#[derive(Default)]
pub(crate) struct Spares {
    room: Mutex<Room>,
    ready: Condvar,
}

impl Spares {
    fn room(&self) -> std::sync::MutexGuard<'_, Room> {
        self.room.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Offers released core `id` to a spare; `may_start` says whether the bound
    /// allows one more OS thread.
    pub(crate) fn offer(&self, id: usize, may_start: bool) -> Offer {
        let mut r = self.room();
        if r.stopping {
            return Offer::Full;
        }
        if r.queue.contains(&id) {
            return Offer::Queued;
        }
        r.queue.push_back(id);
        if r.idle + r.starting >= r.queue.len() {
            drop(r);
            self.ready.notify_one();
            return Offer::Queued;
        }
        if may_start {
            r.starting += 1;
            Offer::StartOne
        } else {
            Offer::Full
        }
    }

    /// A start the caller announced (`Offer::StartOne`) failed.
    pub(crate) fn start_failed(&self) {
        let mut r = self.room();
        r.starting = r.starting.saturating_sub(1);
    }

    /// Whether the bound was reported already; marks it reported.
    pub(crate) fn first_report(&self) -> bool {
        !std::mem::replace(&mut self.room().reported, true)
    }

    /// A spare waits for a core: the next queued one, or `None` once the runtime
    /// stops or after [`IDLE_EXIT`] without one. `fresh`: the spare was just started
    /// for the queue (`Offer::StartOne`).
    pub(crate) fn wait(&self, fresh: bool) -> Option<usize> {
        let mut r = self.room();
        if fresh {
            r.starting = r.starting.saturating_sub(1);
        }
        r.idle += 1;
        let until = Instant::now() + IDLE_EXIT;
        let got = loop {
            if r.stopping {
                break None;
            }
            if let Some(id) = r.queue.pop_front() {
                break Some(id);
            }
            let now = Instant::now();
            if now >= until {
                break None;
            }
            r = self
                .ready
                .wait_timeout(r, until - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        r.idle -= 1;
        got
    }

    /// Keeps a carrier OS thread's handle, to join when the runtime stops (and drops
    /// those of threads that ended).
    pub(crate) fn keep(&self, h: JoinHandle<()>) {
        let mut r = self.room();
        r.handles.retain(|h| !h.is_finished());
        r.handles.push(h);
    }

    /// The runtime stops: every spare ends; returns the carriers' handles.
    pub(crate) fn stop(&self) -> Vec<JoinHandle<()>> {
        let handles = {
            let mut r = self.room();
            r.stopping = true;
            r.queue.clear();
            std::mem::take(&mut r.handles)
        };
        self.ready.notify_all();
        handles
    }

    /// Cores queued for a spare.
    pub(crate) fn queued(&self) -> Vec<usize> {
        self.room().queue.iter().copied().collect()
    }
}
