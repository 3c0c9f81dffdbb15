//! The workloads of `spindle bench --scaling`, their sizes, and the pieces the
//! runtimes' versions share.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One scaling workload: plain user code with no placement hints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Work {
    /// The skynet tree: every node spawns ten children with a plain spawn and joins
    /// them; the leaves return their number.
    Skynet,
    /// Fork-join `fib(n)`: spawn the `n - 1` branch above a depth, compute below it.
    Fib,
    /// Many producers send into one channel; one consumer receives everything.
    Fanin,
    /// Many independent pairs of threads ping-pong over two channels.
    Pairs,
    /// The Savina thread ring: a token passed around a ring of threads with
    /// park/unpark (or the runtime's equivalent).
    Ring,
    /// Each thread spawns the next, a long chain (tokio's `chained_spawn`).
    ChainedSpawn,
    /// Many threads each yield many times (tokio's `yield_many`).
    YieldMany,
    /// Spawn an empty thread and join it, one after the other, from the main thread.
    SpawnJoinDefault,
}

/// The parameters of one run of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    /// The main count: leaves, `n`, messages per producer, rounds, hops, chain
    /// length, yields per thread, or spawns.
    pub n: u64,
    /// The second count: fanout, spawn depth, producers, pairs, ring threads, or
    /// threads (0 where unused).
    pub m: u64,
}

impl Work {
    /// Every workload, in report order.
    pub const ALL: [Work; 8] = [
        Work::Skynet,
        Work::Fib,
        Work::Fanin,
        Work::Pairs,
        Work::Ring,
        Work::ChainedSpawn,
        Work::YieldMany,
        Work::SpawnJoinDefault,
    ];

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Work::Skynet => "skynet",
            Work::Fib => "fib",
            Work::Fanin => "fanin",
            Work::Pairs => "pairs",
            Work::Ring => "ring",
            Work::ChainedSpawn => "chained_spawn",
            Work::YieldMany => "yield_many",
            Work::SpawnJoinDefault => "spawn_join_default",
        }
    }

    /// The workload named `name`.
    pub fn parse(name: &str) -> Option<Work> {
        Work::ALL.into_iter().find(|w| w.name() == name)
    }

    /// What one run does, for reports.
    pub fn describe(self, s: Size) -> String {
        match self {
            Work::Skynet => format!("{} leaves, fanout 10, plain spawn + join", s.n),
            Work::Fib => format!("fib({}), spawning above depth {}", s.n, s.m),
            Work::Fanin => format!("{} producers x {} messages into one channel", s.m, s.n),
            Work::Pairs => format!("{} ping-pong pairs x {} rounds over channels", s.m, s.n),
            Work::Ring => format!("ring of {} threads, {} hops", s.m, s.n),
            Work::ChainedSpawn => format!("a chain of {} spawns", s.n),
            Work::YieldMany => format!("{} threads x {} yields", s.m, s.n),
            Work::SpawnJoinDefault => format!("{} spawn + join, one after the other", s.n),
        }
    }

    /// The size of a run: the full one, or a `quick` one (the whole `--quick` suite
    /// stays under two minutes on 2 CPUs).
    pub fn size(self, quick: bool) -> Size {
        let (n, m, qn, qm) = match self {
            Work::Skynet => (1_000_000, 10, 100_000, 10),
            Work::Fib => (32, 12, 30, 12),
            Work::Fanin => (50_000, 64, 5_000, 64),
            Work::Pairs => (20_000, 64, 2_000, 64),
            Work::Ring => (1_000_000, 503, 300_000, 503),
            Work::ChainedSpawn => (1_000_000, 0, 100_000, 0),
            Work::YieldMany => (5_000, 200, 1_000, 200),
            Work::SpawnJoinDefault => (1_000_000, 0, 100_000, 0),
        };
        if quick {
            Size { n: qn, m: qm }
        } else {
            Size { n, m }
        }
    }
}

/// `fib(n)` computed sequentially: the work below the spawn depth.
pub fn fib_seq(n: u64) -> u64 {
    if n < 2 {
        n
    } else {
        fib_seq(n - 1) + fib_seq(n - 2)
    }
}

/// The sum skynet's leaves add up to.
pub fn skynet_sum(leaves: u64) -> u64 {
    leaves * (leaves - 1) / 2
}

/// Runs `one` once to warm up, then once timed; returns the timed run's wall time.
pub fn warm_then_time(mut one: impl FnMut()) -> Duration {
    one();
    let t0 = Instant::now();
    one();
    t0.elapsed()
}

/// The body of member `i` of the thread ring: waits for the token in `tokens[i]`
/// (calling `park` while there is none), passes it on with one hop less and wakes the
/// next member (`wake(next)`), and returns once it passed the last hop. The token
/// counts the hops left plus one; a member that sees 1 passes 1 and ends, so every
/// member ends once the count ran out.
pub fn ring_member(tokens: &[AtomicU64], i: usize, park: impl Fn(), wake: impl Fn(usize)) {
    let next = (i + 1) % tokens.len();
    loop {
        let t = tokens[i].swap(0, Ordering::Acquire);
        if t == 0 {
            park();
            continue;
        }
        tokens[next].store(t.saturating_sub(1).max(1), Ordering::Release);
        wake(next);
        if t == 1 {
            return;
        }
    }
}
