//! The benchmark workloads: seven operations, each on spindle and on its peers.
//!
//! Every workload is a [`WorkloadFn`]: it performs `n` operations and returns the time
//! they took, with setup (building a runtime, spawning helper OS threads, allocating a
//! stack) left out of the timed part where it can be. That shape serves both
//! `spindle bench` and criterion's `iter_custom` (both call [`Workload::measure`]).
//!
//! | bench | one operation |
//! |---|---|
//! | `switch` | one context switch between two threads yielding to each other on one core |
//! | `spawn_join` | spawn a thread that does nothing, and join it |
//! | `park_unpark` | a round trip: A unparks B and parks, B unparks A and parks |
//! | `current` | get a handle to the running thread (and drop it) |
//! | `spawn_join_default` | `spawn_join` on each runtime's default multi-core configuration |
//! | `park_unpark_default` | `park_unpark` on each runtime's default multi-core configuration |
//! | `cross_core_pingpong` | a round trip of a token between two threads on two CPUs |
//! | `remote_spawn` | from a spawn aimed at another core to the new thread's first instruction |
//! | `migration` | one work item moved from one core to the other (many in flight) |
//! | `select` | a round trip where B waits in a select over two channels (A sends on each in turn) and answers on a third |
//!
//! The single-core benches run spindle on a runtime of exactly one worker core. The
//! peers are used the way their documentation recommends: `may` with one worker
//! (see [`init_peers`]), tokio with a `current_thread` runtime, corosensei with a
//! reused stack, and `std` with OS threads pinned to one CPU where one core matters.
//! The cross-core benches pin OS threads to two CPUs ([`crate::affinity::cross_cpus`])
//! and check where they ran; their `raw` floor is two pinned OS threads talking
//! through one cache line ([`on_raw`]). Spindle runs them on a runtime of two cores
//! pinned to those two CPUs ([`on_spindle::two_cores`]), placing its threads with
//! `spawn_on`; `spindle_chan` is its cross-core ping-pong through its own channels. Tokio there runs a `multi_thread` runtime with
//! two workers, and may two workers — may's worker count is process-global, so those
//! workloads run in a fresh `spindle` process ([`Workload::in_child`], see
//! [`crate::child`]). Neither can be told where to run a task, so they sample how
//! many messages really crossed CPUs ([`crate::affinity::HopSampler`]).
//!
//! The `_default` benches run the same user code on each runtime as it comes: spindle's
//! default runtime ([`spindle::run`]), tokio's default `multi_thread` runtime, and may
//! with one worker per CPU (in a child process).
//!
//! The 1,000,000-thread skynet tree is not a [`WorkloadFn`]: it runs once per fresh
//! process so that its peak memory can be read; see [`crate::skynet`].

use std::hint::spin_loop;
use std::sync::{Barrier, OnceLock};
use std::thread::{self, Thread};
use std::time::Duration;

use crate::affinity;

pub mod on_corosensei;
pub mod on_may;
pub mod on_queues;
pub mod on_raw;
pub mod on_spindle;
pub mod on_std;
pub mod on_syscall;
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
    /// [`Bench::SpawnJoin`] on each runtime's default multi-core configuration.
    SpawnJoinDefault,
    /// [`Bench::ParkUnpark`] on each runtime's default multi-core configuration.
    ParkUnparkDefault,
    /// Round trip of a token between two threads on two different CPUs.
    CrossCorePingpong,
    /// From a spawn aimed at another core to the first instruction of the new thread.
    RemoteSpawn,
    /// Work items (threads) moved between two cores; one op is one item moved once.
    Migration,
    /// A compute step on the worker cores, while the hypercore is idle or runs 1,000
    /// busy maintenance threads.
    HypercoreIsolation,
    /// One `getpid` round trip: offloaded to the hypercore, direct, and the raw
    /// two-thread delegation floor.
    SyscallOffload,
    /// `getpid` calls from many threads of one worker core: offloaded vs direct.
    SyscallThroughput,
    /// A round trip through a select over two channels, on one core.
    Select,
}

impl Bench {
    /// Every bench, in report order.
    pub const ALL: [Bench; 13] = [
        Bench::Switch,
        Bench::SpawnJoin,
        Bench::ParkUnpark,
        Bench::Current,
        Bench::SpawnJoinDefault,
        Bench::ParkUnparkDefault,
        Bench::CrossCorePingpong,
        Bench::RemoteSpawn,
        Bench::Migration,
        Bench::HypercoreIsolation,
        Bench::SyscallOffload,
        Bench::SyscallThroughput,
        Bench::Select,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Bench::Switch => "switch",
            Bench::SpawnJoin => "spawn_join",
            Bench::ParkUnpark => "park_unpark",
            Bench::Current => "current",
            Bench::SpawnJoinDefault => "spawn_join_default",
            Bench::ParkUnparkDefault => "park_unpark_default",
            Bench::CrossCorePingpong => "cross_core_pingpong",
            Bench::RemoteSpawn => "remote_spawn",
            Bench::Migration => "migration",
            Bench::HypercoreIsolation => "hypercore_isolation",
            Bench::SyscallOffload => "syscall_offload",
            Bench::SyscallThroughput => "syscall_throughput",
            Bench::Select => "select",
        }
    }

    /// Whether the bench runs each runtime in its default multi-core configuration.
    pub fn is_default_config(self) -> bool {
        matches!(self, Bench::SpawnJoinDefault | Bench::ParkUnparkDefault)
    }
}

/// The benches whose spindle workload is not written yet (it needs the multi-core
/// runtime). Each is to get a `Spindle` entry at the head of its rows in [`ALL`] and
/// leave this list; the unit tests check both ways.
pub const AWAITING_SPINDLE: &[Bench] = &[];

/// The runtimes compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Runtime {
    /// This project.
    Spindle,
    /// This project, passing messages through its channels ([`spindle::sync::mpsc`])
    /// where [`Runtime::Spindle`] uses park/unpark.
    SpindleChan,
    /// This project, with 1,000 busy maintenance threads on its hypercore.
    SpindleBusyHypercore,
    /// This project without a hypercore: system calls run directly on the worker.
    SpindleDirect,
    /// The floor of a cross-core bench: two OS threads pinned to two CPUs, talking
    /// through one cache line ([`on_raw`]).
    Raw,
    /// OS threads from `std::thread` (with `std::sync::mpsc` where a bench passes
    /// messages).
    Std,
    /// OS threads handing off through `std::thread::park`/`unpark`.
    StdPark,
    /// Bare `corosensei` coroutines (no scheduler): the floor for a stackful switch.
    Corosensei,
    /// `may` stackful coroutines: on one worker, two in the cross-core benches, one
    /// per CPU in the `_default` benches.
    May,
    /// Tokio tasks: on a `current_thread` runtime, a two-worker `multi_thread` one in
    /// the cross-core benches, the default `multi_thread` one in the `_default` benches.
    Tokio,
    /// Two pinned OS threads moving items through a `std::sync::Mutex<VecDeque>` per
    /// direction.
    StdMutex,
    /// Two pinned OS threads moving items through a `crossbeam_deque::Injector` per
    /// direction; in `select`, `crossbeam_channel`'s `select!` between two OS threads
    /// pinned to one CPU.
    Crossbeam,
}

impl Runtime {
    /// Every runtime, in the order they run within a repetition and appear in reports.
    pub const ALL: [Runtime; 12] = [
        Runtime::Spindle,
        Runtime::SpindleChan,
        Runtime::SpindleBusyHypercore,
        Runtime::SpindleDirect,
        Runtime::Raw,
        Runtime::Std,
        Runtime::StdPark,
        Runtime::Corosensei,
        Runtime::May,
        Runtime::Tokio,
        Runtime::StdMutex,
        Runtime::Crossbeam,
    ];

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Spindle => "spindle",
            Runtime::SpindleChan => "spindle_chan",
            Runtime::SpindleBusyHypercore => "busy_hyper",
            Runtime::SpindleDirect => "spindle_direct",
            Runtime::Raw => "raw",
            Runtime::Std => "std",
            Runtime::StdPark => "std_park",
            Runtime::Corosensei => "corosensei",
            Runtime::May => "may",
            Runtime::Tokio => "tokio",
            Runtime::StdMutex => "std_mutex",
            Runtime::Crossbeam => "crossbeam",
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
    /// Whether [`Workload::measure`] runs it in a fresh `spindle` process, configured
    /// by [`init_child_peers`] (may with two workers, or one per CPU), instead of here.
    pub in_child: bool,
}

impl Workload {
    /// `bench/runtime`, as `--filter` matches it.
    pub fn name(&self) -> String {
        format!("{}/{}", self.bench.name(), self.runtime.name())
    }

    /// Performs `n` operations and returns the time they took: runs [`Workload::run`]
    /// here, or in a child process if [`Workload::in_child`] (whose sampled hops and
    /// pinning outcome are recorded here, as if it had run here).
    ///
    /// # Panics
    ///
    /// If the child process cannot be run or fails (see [`crate::child::timed`]).
    pub fn measure(&self, n: u64) -> Duration {
        if self.in_child {
            crate::child::timed(self, n).unwrap_or_else(|e| panic!("{}: {e}", self.name()))
        } else {
            (self.run)(n)
        }
    }
}

/// The workload named `bench/runtime`.
pub fn find(name: &str) -> Option<&'static Workload> {
    ALL.iter().find(|w| w.name() == name)
}

const fn w(bench: Bench, runtime: Runtime, op: &'static str, run: WorkloadFn) -> Workload {
    Workload {
        bench,
        runtime,
        op,
        run,
        pins: false,
        in_child: false,
    }
}

const fn pinned(workload: Workload) -> Workload {
    Workload {
        pins: true,
        ..workload
    }
}

const fn in_child(workload: Workload) -> Workload {
    Workload {
        in_child: true,
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
        w(
            SpawnJoinDefault,
            Spindle,
            "spindle::spawn an empty thread + join, default runtime (CPUs - 1 workers)",
            on_spindle::spawn_join_default,
        ),
        in_child(w(
            SpawnJoinDefault,
            May,
            "coroutine::spawn an empty coroutine + join, from a coroutine, one worker per CPU",
            on_may::spawn_join,
        )),
        w(
            SpawnJoinDefault,
            Tokio,
            "tokio::spawn an empty task + await it, inside a task, default multi_thread runtime",
            on_tokio::spawn_join_default,
        ),
        w(
            ParkUnparkDefault,
            Spindle,
            "round trip: A unparks B + parks, B unparks A + parks, default runtime",
            on_spindle::park_unpark_default,
        ),
        in_child(w(
            ParkUnparkDefault,
            May,
            "round trip of coroutine park/unpark between two coroutines, one worker per CPU",
            on_may::park_unpark,
        )),
        w(
            ParkUnparkDefault,
            Tokio,
            "round trip: two tasks notify_one + notified().await, default multi_thread runtime",
            on_tokio::park_unpark_default,
        ),
        pinned(w(
            CrossCorePingpong,
            Spindle,
            "round trip of spindle::park/unpark with a turn counter: two threads on two cores pinned to two CPUs (spawn_on)",
            on_spindle::cross_core_pingpong,
        )),
        pinned(w(
            CrossCorePingpong,
            SpindleChan,
            "round trip of a message through two spindle::sync::mpsc channels: two threads on two cores pinned to two CPUs (spawn_on)",
            on_spindle::cross_core_channel,
        )),
        pinned(w(
            CrossCorePingpong,
            Raw,
            "round trip of a turn counter on one cache line: two OS threads pinned to two CPUs, spinning",
            on_raw::cross_core_pingpong,
        )),
        pinned(w(
            CrossCorePingpong,
            Std,
            "round trip of a message through two std::sync::mpsc channels: two OS threads pinned to two CPUs",
            on_std::cross_core_pingpong,
        )),
        pinned(w(
            CrossCorePingpong,
            StdPark,
            "round trip of thread::park/unpark: two OS threads pinned to two CPUs",
            on_std::cross_core_park,
        )),
        in_child(w(
            CrossCorePingpong,
            May,
            "round trip of a message through two may::sync::mpsc channels between two coroutines, 2 workers",
            on_may::cross_core_pingpong,
        )),
        w(
            CrossCorePingpong,
            Tokio,
            "round trip of a message through two tokio::sync::mpsc channels (capacity 1) between two tasks, multi_thread runtime, 2 workers",
            on_tokio::cross_core_pingpong,
        ),
        pinned(w(
            RemoteSpawn,
            Spindle,
            "spindle::spawn_on from a thread on core 0 to core 1 (cores pinned to two CPUs) until the new thread reads the clock; joined before the next",
            on_spindle::remote_spawn,
        )),
        pinned(w(
            RemoteSpawn,
            Raw,
            "hand a timestamp through one cache line to an OS thread spinning on another CPU, until it reads the clock",
            on_raw::remote_spawn,
        )),
        w(
            RemoteSpawn,
            Std,
            "std::thread::spawn (unpinned) until the new thread reads the clock; joined before the next",
            on_std::remote_spawn,
        ),
        in_child(w(
            RemoteSpawn,
            May,
            "coroutine::spawn from a coroutine until the new one reads the clock, 2 workers; joined before the next",
            on_may::remote_spawn,
        )),
        w(
            RemoteSpawn,
            Tokio,
            "tokio::spawn from a task until the new task's first poll reads the clock, multi_thread runtime, 2 workers; awaited before the next",
            on_tokio::remote_spawn,
        ),
        pinned(w(
            Migration,
            Spindle,
            "move one thread to the other core: spindle::migrate_to, alternating; 64 threads in flight, two cores pinned to two CPUs",
            on_spindle::migration,
        )),
        pinned(w(
            Migration,
            StdMutex,
            "move one item (a Box<u64>, touched on arrival) to the other CPU through a Mutex<VecDeque> per direction; 64 items in flight, two OS threads pinned to two CPUs",
            on_queues::migration_mutex,
        )),
        pinned(w(
            Migration,
            Crossbeam,
            "move one item (a Box<u64>, touched on arrival) to the other CPU through a crossbeam_deque::Injector per direction (push/steal); 64 items in flight, two OS threads pinned to two CPUs",
            on_queues::migration_injector,
        )),
        w(
            HypercoreIsolation,
            Spindle,
            "one compute step (256 dependent shift-xor-multiply rounds) on a worker core of the default runtime (CPUs - 1 workers, hypercore on the last CPU), hypercore idle",
            on_spindle::isolation_idle,
        ),
        w(
            HypercoreIsolation,
            SpindleBusyHypercore,
            "the same compute step while 1,000 maintenance threads spin and yield on the hypercore",
            on_spindle::isolation_busy,
        ),
        w(
            SyscallOffload,
            Spindle,
            "one getpid round trip through spindle::sys, offloaded: a thread on the one worker core (CPU 0) hands it to the hypercore (last CPU) and sleeps until its core collects the result",
            on_syscall::offload,
        ),
        w(
            SyscallOffload,
            SpindleDirect,
            "one getpid through spindle::sys from a thread on the one worker core of a runtime without hypercore: a direct system call",
            on_syscall::direct,
        ),
        pinned(w(
            SyscallOffload,
            Raw,
            "the delegation floor: one getpid handed to an OS thread spinning on another CPU through one cache line (turn + result), the caller spinning for the answer",
            on_syscall::raw_delegation,
        )),
        w(
            SyscallThroughput,
            Spindle,
            "one getpid of many: 64 threads on the one worker core issue offloaded calls; the hypercore serves them in batches",
            on_syscall::throughput_offload,
        ),
        w(
            SyscallThroughput,
            SpindleDirect,
            "one getpid of many: 64 threads on the one worker core of a runtime without hypercore, direct calls",
            on_syscall::throughput_direct,
        ),
        w(
            Select,
            Spindle,
            "one round trip: A sends on one of two mpsc channels in turn, B takes it in a select! over both and answers on a third; one core",
            on_spindle::select_pingpong,
        ),
        w(
            Select,
            SpindleChan,
            "the same round trip without the select: B receives on the one channel A sends on (the select's own cost is the difference)",
            on_spindle::select_baseline,
        ),
        w(
            Select,
            Tokio,
            "one round trip: tokio::select! over two unbounded mpsc channels, answer on a third; current_thread runtime",
            on_tokio::select_pingpong,
        ),
        pinned(w(
            Select,
            Crossbeam,
            "one round trip: crossbeam_channel::select! over two unbounded channels, answer on a third; two OS threads pinned to one CPU",
            on_std::select_pingpong,
        )),
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

/// Like [`init_peers`], for a child process that runs one [`Workload::in_child`]
/// workload: `may` gets one worker per CPU for the `_default` benches, else two (it
/// pins them to the first CPUs).
pub fn init_child_peers(w: &Workload) {
    on_may::init_with(if w.bench.is_default_config() { 0 } else { 2 });
}

/// Spins until `done()` holds. After a few thousand spins it also yields the CPU on
/// every try, so that two spinning threads that share one CPU (pinning failed) still
/// make progress.
pub(crate) fn spin_until(mut done: impl FnMut() -> bool) {
    let mut spins = 0u32;
    while !done() {
        if spins < 1 << 12 {
            spins += 1;
            spin_loop();
        } else {
            thread::yield_now();
        }
    }
}

/// Runs `a` and `b` on two new OS threads, pinned to `cpus[0]` and `cpus[1]`, each
/// given the other's handle once both are pinned; returns what they return. Records
/// with [`affinity::record_pinned`] whether each was pinned, and ran where it was
/// pinned from start to end.
fn pair_on<RA, RB>(
    cpus: [Option<usize>; 2],
    a: impl FnOnce(&Thread) -> RA + Send,
    b: impl FnOnce(&Thread) -> RB + Send,
) -> (RA, RB)
where
    RA: Send,
    RB: Send,
{
    let handles: [OnceLock<Thread>; 2] = [OnceLock::new(), OnceLock::new()];
    let ready = Barrier::new(2);
    let start = |me: usize| {
        affinity::pin_and_check(cpus[me]);
        handles[me].set(thread::current()).expect("handle set once");
        ready.wait();
        handles[1 - me].get().expect("peer handle set").clone()
    };
    thread::scope(|s| {
        let tb = s.spawn(|| {
            let r = b(&start(1));
            affinity::check_still_on(cpus[1]);
            r
        });
        let ta = s.spawn(|| {
            let r = a(&start(0));
            affinity::check_still_on(cpus[0]);
            r
        });
        let ra = ta.join().expect("thread A panicked");
        let rb = tb.join().expect("thread B panicked");
        (ra, rb)
    })
}

/// [`pair_on`] with both threads on the bench CPU ([`affinity::bench_cpu`]); returns
/// what `a` returns.
fn pinned_pair<R: Send>(a: impl FnOnce(&Thread) -> R + Send, b: impl FnOnce(&Thread) + Send) -> R {
    let cpu = affinity::bench_cpu();
    pair_on([cpu, cpu], a, b).0
}

/// [`pair_on`] with the threads on two different CPUs ([`affinity::cross_cpus`]).
fn cross_pair<RA: Send, RB: Send>(
    a: impl FnOnce(&Thread) -> RA + Send,
    b: impl FnOnce(&Thread) -> RB + Send,
) -> (RA, RB) {
    let cpus = affinity::cross_cpus();
    pair_on([cpus.map(|c| c.0), cpus.map(|c| c.1)], a, b)
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
        use Runtime::*;
        for bench in Bench::ALL {
            let runtimes: Vec<_> = of(bench).map(|w| w.runtime).collect();
            assert!(runtimes.is_sorted(), "{bench:?}: {runtimes:?}");
            let mut deduped = runtimes.clone();
            deduped.dedup();
            assert_eq!(deduped, runtimes, "{bench:?}: a runtime twice");
            // Spindle heads every bench, except those still awaiting their entry
            // (which must not have one: then they leave AWAITING_SPINDLE).
            let awaiting = AWAITING_SPINDLE.contains(&bench);
            assert_eq!(
                runtimes.first() == Some(&Spindle),
                !awaiting,
                "{bench:?}: {runtimes:?}, awaiting spindle: {awaiting}"
            );
            // Something to compare spindle with: at least two peers; the isolation
            // bench compares spindle with itself under load.
            if bench == Bench::HypercoreIsolation {
                assert_eq!(runtimes, [Spindle, SpindleBusyHypercore]);
                continue;
            }
            // The system-call benches compare offloading with direct calls (and the
            // delegation floor).
            if bench == Bench::SyscallOffload {
                assert_eq!(runtimes, [Spindle, SpindleDirect, Raw]);
                continue;
            }
            if bench == Bench::SyscallThroughput {
                assert_eq!(runtimes, [Spindle, SpindleDirect]);
                continue;
            }
            let peers = runtimes.iter().filter(|&&r| r != Spindle).count();
            assert!(peers >= 2, "{bench:?}: {runtimes:?}");
        }
        let has = |bench, rts: &[Runtime]| {
            let runtimes: Vec<_> = of(bench).map(|w| w.runtime).collect();
            rts.iter().all(|r| runtimes.contains(r))
        };
        for bench in [Bench::Switch, Bench::SpawnJoin, Bench::ParkUnpark] {
            assert!(has(bench, &[Std, May, Tokio]), "{bench:?}");
        }
        assert!(has(Bench::CrossCorePingpong, &[Raw, Std, May, Tokio]));
        assert!(has(Bench::RemoteSpawn, &[Raw, Std, Tokio]));
        assert!(has(Bench::Migration, &[StdMutex, Crossbeam]));
        // The cross-core benches' OS-thread workloads pin, and say so; so do spindle's,
        // whose cores are pinned.
        let cross = [
            Bench::CrossCorePingpong,
            Bench::RemoteSpawn,
            Bench::Migration,
        ];
        for w in ALL.iter().filter(|w| cross.contains(&w.bench)) {
            let pins = matches!(
                w.runtime,
                Spindle | SpindleChan | Raw | StdMutex | Crossbeam
            ) || (w.bench == Bench::CrossCorePingpong
                && matches!(w.runtime, Std | StdPark));
            assert_eq!(w.pins, pins, "{}", w.name());
            assert_eq!(find(&w.name()).map(Workload::name), Some(w.name()));
        }
        assert!(ALL.is_sorted_by_key(|w| w.bench));
        assert!(Bench::ALL.is_sorted());
        assert!(Runtime::ALL.is_sorted());
    }

    #[test]
    fn scaling() {
        assert_eq!(half(1), 1);
        assert_eq!(half(7), 4);
        let d = Duration::from_nanos(1000);
        assert_eq!(scale(d, 10, 5), Duration::from_nanos(500));
        assert_eq!(scale(d, 10, 10), d);
    }

    /// Every workload runs and does its work, at small counts. The `in_child` ones run
    /// here too (on may's one worker, so not across cores): the child process itself
    /// is covered by the CLI tests.
    #[test]
    fn every_workload_runs() {
        init_peers();
        for w in ALL {
            for n in [1, 2, 101] {
                let d = (w.run)(n);
                assert!(d > Duration::ZERO, "{} n={n}", w.name());
            }
        }
    }
}
