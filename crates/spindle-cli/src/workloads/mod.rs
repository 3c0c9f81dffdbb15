//! The benchmark workloads: four operations, each on spindle and on its peers.
//!
//! Every workload is a [`WorkloadFn`]: it performs `n` operations and returns the time
//! they took, with setup (building a runtime, spawning helper OS threads, allocating a
//! stack) left out of the timed part where it can be. That shape serves both
//! `spindle bench` and criterion's `iter_custom`.
//!
//! | bench | one operation |
//! |---|---|
//! | `switch` | one context switch between two threads yielding to each other on one core |
//! | `spawn_join` | spawn a thread that does nothing, and join it |
//! | `park_unpark` | a round trip: A unparks B and parks, B unparks A and parks |
//! | `current` | get a handle to the running thread (and drop it) |
//!
//! The peers are used the way their documentation recommends: `may` with one worker
//! (see [`init_peers`]), tokio with a `current_thread` runtime, corosensei with a
//! reused stack, and `std` with OS threads pinned to one CPU where one core matters.

use std::time::Duration;

pub mod on_corosensei;
pub mod on_may;
pub mod on_spindle;
pub mod on_std;
pub mod on_tokio;
mod pingpong;

/// A workload: performs `n` operations, returns the time they took.
pub type WorkloadFn = fn(u64) -> Duration;

/// The operations compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bench {
    /// Two threads yield to each other on one core; one op is one switch.
    Switch,
    /// Spawn an empty thread and join it.
    SpawnJoin,
    /// Park/unpark round trip between two threads.
    ParkUnpark,
    /// Handle of the running thread.
    Current,
}

impl Bench {
    /// Every bench, in report order.
    pub const ALL: [Bench; 4] = [
        Bench::Switch,
        Bench::SpawnJoin,
        Bench::ParkUnpark,
        Bench::Current,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Bench::Switch => "switch",
            Bench::SpawnJoin => "spawn_join",
            Bench::ParkUnpark => "park_unpark",
            Bench::Current => "current",
        }
    }
}

/// The runtimes compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Runtime {
    /// This project.
    Spindle,
    /// OS threads from `std::thread`.
    Std,
    /// Bare `corosensei` coroutines (no scheduler): the floor for a stackful switch.
    Corosensei,
    /// `may` stackful coroutines on one worker.
    May,
    /// Tokio tasks on a `current_thread` runtime.
    Tokio,
}

impl Runtime {
    /// Every runtime, in the order they run within a repetition and appear in reports.
    pub const ALL: [Runtime; 5] = [
        Runtime::Spindle,
        Runtime::Std,
        Runtime::Corosensei,
        Runtime::May,
        Runtime::Tokio,
    ];

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Spindle => "spindle",
            Runtime::Std => "std",
            Runtime::Corosensei => "corosensei",
            Runtime::May => "may",
            Runtime::Tokio => "tokio",
        }
    }
}

/// One bench on one runtime.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// The operation.
    pub bench: Bench,
    /// Who performs it.
    pub runtime: Runtime,
    /// What exactly one operation is, for reports.
    pub op: &'static str,
    /// The workload itself.
    pub run: WorkloadFn,
    /// Whether it pins OS threads (its report then says whether pinning worked).
    pub pins: bool,
}

const fn w(bench: Bench, runtime: Runtime, op: &'static str, run: WorkloadFn) -> Workload {
    Workload {
        bench,
        runtime,
        op,
        run,
        pins: false,
    }
}

const fn pinned(workload: Workload) -> Workload {
    Workload {
        pins: true,
        ..workload
    }
}

/// Every workload, bench by bench, each bench's runtimes in [`Runtime::ALL`] order.
pub const ALL: &[Workload] = {
    use Bench::*;
    use Runtime::*;
    &[
        w(
            Switch,
            Spindle,
            "one switch: two threads yield_now to each other on one core",
            on_spindle::switch,
        ),
        pinned(w(
            Switch,
            Std,
            "one OS thread handoff: futex wake + wait, two threads pinned to one CPU",
            on_std::switch,
        )),
        w(
            Switch,
            Corosensei,
            "one switch: half a resume + suspend pair",
            on_corosensei::switch,
        ),
        w(
            Switch,
            May,
            "one switch: two coroutines yield_now to each other, 1 worker",
            on_may::switch,
        ),
        w(
            Switch,
            Tokio,
            "one switch: two tasks task::yield_now on a current_thread runtime",
            on_tokio::switch,
        ),
        w(
            SpawnJoin,
            Spindle,
            "spindle::spawn an empty thread + join",
            on_spindle::spawn_join,
        ),
        w(
            SpawnJoin,
            Std,
            "std::thread::spawn an empty thread + join",
            on_std::spawn_join,
        ),
        w(
            SpawnJoin,
            Corosensei,
            "Coroutine::with_stack on a reused stack, run to completion, into_stack",
            on_corosensei::spawn_join,
        ),
        w(
            SpawnJoin,
            May,
            "coroutine::spawn an empty coroutine + join, from a coroutine, 1 worker",
            on_may::spawn_join,
        ),
        w(
            SpawnJoin,
            Tokio,
            "tokio::spawn an empty task + await its JoinHandle in block_on",
            on_tokio::spawn_join,
        ),
        w(
            ParkUnpark,
            Spindle,
            "round trip: A unparks B + parks, B unparks A + parks",
            on_spindle::park_unpark,
        ),
        pinned(w(
            ParkUnpark,
            Std,
            "round trip of thread::park/unpark, two OS threads pinned to one CPU",
            on_std::park_unpark,
        )),
        w(
            ParkUnpark,
            May,
            "round trip of coroutine park/unpark between two coroutines, 1 worker",
            on_may::park_unpark,
        ),
        w(
            ParkUnpark,
            Tokio,
            "round trip: two tasks notify_one + notified().await on two Notify",
            on_tokio::park_unpark,
        ),
        w(
            Current,
            Spindle,
            "spindle::current() + drop",
            on_spindle::current,
        ),
        w(
            Current,
            Std,
            "std::thread::current() + drop",
            on_std::current,
        ),
        w(
            Current,
            May,
            "may::coroutine::current() + drop, inside a coroutine",
            on_may::current,
        ),
        w(
            Current,
            Tokio,
            "tokio::task::try_id() inside a task",
            on_tokio::current,
        ),
    ]
};

/// The workloads of `bench`, in [`Runtime::ALL`] order.
pub fn of(bench: Bench) -> impl Iterator<Item = &'static Workload> {
    ALL.iter().filter(move |w| w.bench == bench)
}

/// Prepares the peers' process-global state; call once at process start, before any
/// workload (later calls do nothing). Sets `may` to one worker, as its docs ask for
/// configuration: before the scheduler is first used.
pub fn init_peers() {
    on_may::init();
}

/// Half of `n`, rounded up, at least 1: the share of each of two ping-pong partners.
fn half(n: u64) -> u64 {
    n.div_ceil(2).max(1)
}

/// `elapsed` for `done` operations, scaled to `wanted` operations.
fn scale(elapsed: Duration, done: u64, wanted: u64) -> Duration {
    if done == wanted || done == 0 {
        return elapsed;
    }
    let nanos = elapsed.as_nanos() * u128::from(wanted) / u128::from(done);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_complete_and_ordered() {
        for bench in Bench::ALL {
            let runtimes: Vec<_> = of(bench).map(|w| w.runtime).collect();
            assert_eq!(runtimes.first(), Some(&Runtime::Spindle), "{bench:?}");
            assert!(runtimes.is_sorted(), "{bench:?}: {runtimes:?}");
            assert!(runtimes.contains(&Runtime::Std));
        }
        assert!(ALL.is_sorted_by_key(|w| w.bench));
    }

    #[test]
    fn scaling() {
        assert_eq!(half(1), 1);
        assert_eq!(half(7), 4);
        let d = Duration::from_nanos(1000);
        assert_eq!(scale(d, 10, 5), Duration::from_nanos(500));
        assert_eq!(scale(d, 10, 10), d);
    }

    /// Every workload runs and does its work, at small counts.
    #[test]
    fn every_workload_runs() {
        init_peers();
        for w in ALL {
            for n in [1, 2, 101] {
                let d = (w.run)(n);
                assert!(d > Duration::ZERO, "{:?}/{:?} n={n}", w.bench, w.runtime);
            }
        }
    }
}
