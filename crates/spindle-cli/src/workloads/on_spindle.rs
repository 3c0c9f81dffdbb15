//! The spindle workloads. The single-core ones start a runtime of exactly one worker
//! core ([`one_core`]) and time the work inside it, so that "one core" means the same
//! on every machine; the `_default` ones do the same work on the default runtime
//! ([`spindle::run`]: one worker per CPU but one). The functions of [`inside`] do the
//! work on an already running spindle thread (the tour uses those). The cross-core
//! ones start a runtime of two cores pinned to two CPUs ([`two_cores`]) and place
//! their threads with [`spindle::spawn_on`]; they check with [`current_cpu`] that each
//! thread ran on its core's CPU and record the outcome with
//! [`affinity::record_pinned`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use spindle::topology::current_cpu;
use spindle::{CoreType, Thread};

use super::on_queues::IN_FLIGHT;
use super::{pingpong, scale};
use crate::affinity;

/// A runtime of one worker core (beside the service core), on any machine.
pub fn one_core() -> spindle::Runtime {
    spindle::Runtime::builder()
        .cores(1)
        .build()
        .expect("cannot build a one-core spindle runtime")
}

/// `n` switches: two threads yield to each other. See [`inside::switch`].
pub fn switch(n: u64) -> Duration {
    one_core().block_on(|| inside::switch(n))
}

/// `n` times: spawn an empty thread and join it. See [`inside::spawn_join`].
pub fn spawn_join(n: u64) -> Duration {
    one_core().block_on(|| inside::spawn_join(n))
}

/// `n` park/unpark round trips. See [`inside::park_unpark`].
pub fn park_unpark(n: u64) -> Duration {
    one_core().block_on(|| inside::park_unpark(n))
}

/// `n` calls of [`spindle::current`]. See [`inside::current`].
pub fn current(n: u64) -> Duration {
    one_core().block_on(|| inside::current(n))
}

/// `n` round trips through a select: A sends on two channels in turn, B takes each in
/// a `select!` over both and answers on a third. One core.
pub fn select_pingpong(n: u64) -> Duration {
    one_core().block_on(|| select_round_trips(n, true))
}

/// [`select_pingpong`] without the select: B receives on the one channel A uses.
pub fn select_baseline(n: u64) -> Duration {
    one_core().block_on(|| select_round_trips(n, false))
}

fn select_round_trips(n: u64, select: bool) -> Duration {
    use spindle::sync::mpsc;
    let (x_tx, x_rx) = mpsc::channel::<u64>();
    let (y_tx, y_rx) = mpsc::channel::<u64>();
    let (z_tx, z_rx) = mpsc::channel::<u64>();
    let b = spindle::spawn(move || {
        for _ in 0..n {
            let v = if select {
                spindle::select! {
                    recv(x_rx) -> m => m.unwrap(),
                    recv(y_rx) -> m => m.unwrap(),
                }
            } else {
                x_rx.recv().unwrap()
            };
            z_tx.send(v).unwrap();
        }
    });
    let t0 = Instant::now();
    for i in 0..n {
        if select && i % 2 == 1 {
            y_tx.send(i).unwrap();
        } else {
            x_tx.send(i).unwrap();
        }
        z_rx.recv().unwrap();
    }
    let d = t0.elapsed();
    b.join().expect("select partner panicked");
    d
}

/// [`spawn_join`] on the default runtime: plain `spawn` and `join` with every worker
/// core present, as user code runs.
pub fn spawn_join_default(n: u64) -> Duration {
    spindle::run(|| inside::spawn_join(n))
}

/// [`park_unpark`] on the default runtime.
pub fn park_unpark_default(n: u64) -> Duration {
    spindle::run(|| inside::park_unpark(n))
}

/// The CPUs of the two cores of [`two_cores`], core 0's first; `None` when the cores
/// are not pinned.
type Cpus = Option<[usize; 2]>;

/// A runtime of two cores (ids 0 and 1) pinned to the first two allowed CPUs
/// ([`affinity::cross_cpus`]), as [`spindle::Runtime::handle`]'s core list confirms;
/// with fewer than two CPUs (or if pinning fails), two unpinned cores, recorded as
/// not pinned. Idle cores spin for the default [`spindle::DEFAULT_IDLE_SPIN`] before
/// sleeping.
pub fn two_cores() -> (spindle::Runtime, Cpus) {
    if let Some((a, b)) = affinity::cross_cpus() {
        let built = spindle::Runtime::builder()
            .core_type(CoreType::new("bench").cpus([a, b]).cores(2))
            .pin(true)
            .build();
        if let Ok(rt) = built {
            let cores: Vec<_> = rt.handle().cores().iter().map(|c| (c.id, c.cpu)).collect();
            if cores == [(0, Some(a)), (1, Some(b))] {
                return (rt, Some([a, b]));
            }
        }
    }
    affinity::record_pinned(false);
    let rt = spindle::Runtime::builder()
        .cores(2)
        .pin(false)
        .build()
        .expect("cannot build a two-core spindle runtime");
    (rt, None)
}

/// Whether the calling spindle thread runs on `core` and that core's CPU.
fn on_core(cpus: Cpus, core: usize) -> bool {
    spindle::current_core() == Some(core) && cpus.is_some_and(|c| current_cpu() == Some(c[core]))
}

/// Runs `a` on core 0 and `b` on core 1 of [`two_cores`], each given the other's
/// handle once both have started; returns what they return. Records whether both
/// ran on their cores' CPUs, checked at their start and end.
fn core_pair<RA, RB>(
    a: impl FnOnce(&Thread) -> RA + Send + 'static,
    b: impl FnOnce(&Thread) -> RB + Send + 'static,
) -> (RA, RB)
where
    RA: Send + 'static,
    RB: Send + 'static,
{
    let (rt, cpus) = two_cores();
    let (ra, rb, ok) = rt.block_on(move || {
        spindle::spawn_on(0, move || {
            let mut ok = on_core(cpus, 0);
            let ready = Arc::new(AtomicBool::new(false));
            let a_thread = spindle::current();
            let b = {
                let ready = Arc::clone(&ready);
                spindle::spawn_on(1, move || {
                    let ok = on_core(cpus, 1);
                    ready.store(true, Ordering::Release);
                    a_thread.unpark();
                    let r = b(&a_thread);
                    (r, ok && on_core(cpus, 1))
                })
            };
            // A spurious return (or the token B leaves) only costs another look.
            while !ready.load(Ordering::Acquire) {
                spindle::park();
            }
            let b_thread = b.thread().clone();
            let ra = a(&b_thread);
            ok &= on_core(cpus, 0);
            let (rb, b_ok) = b.join().expect("thread B panicked");
            (ra, rb, ok && b_ok)
        })
        .join()
        .expect("thread A panicked")
    });
    if cpus.is_some() {
        affinity::record_pinned(ok);
    }
    (ra, rb)
}

/// `n` round trips between a thread on core 0 (A) and one on core 1 (B) of
/// [`two_cores`], by park/unpark and a turn counter (the `pingpong` protocol the
/// other park/unpark workloads share): A hands the turn to B, unparks it and parks;
/// B hands it back, unparks A and parks. Times A's loop.
pub fn cross_core_pingpong(n: u64) -> Duration {
    let turn = Arc::new(AtomicU64::new(0));
    let turn_b = Arc::clone(&turn);
    core_pair(
        move |b| {
            let t0 = Instant::now();
            pingpong::side_a(&turn, n, || b.unpark(), spindle::park);
            t0.elapsed()
        },
        move |a| pingpong::side_b(&turn_b, n, || a.unpark(), spindle::park),
    )
    .0
}

/// `n` round trips of a message between a thread on core 0 (A) and one on core 1 (B)
/// of [`two_cores`], through two [`spindle::sync::mpsc`] channels: A sends and waits
/// for the answer, B answers. Times A's loop.
pub fn cross_core_channel(n: u64) -> Duration {
    let (to_b, from_a) = spindle::sync::mpsc::channel::<u64>();
    let (to_a, from_b) = spindle::sync::mpsc::channel::<u64>();
    core_pair(
        move |_| {
            let t0 = Instant::now();
            for i in 0..n {
                to_b.send(i).expect("B hung up");
                from_b.recv().expect("B hung up");
            }
            t0.elapsed()
        },
        move |_| {
            for i in from_a.iter() {
                to_a.send(i).expect("A hung up");
            }
        },
    )
    .0
}

/// `n` times, one after the other, from a thread on core 0 of [`two_cores`]:
/// [`spindle::spawn_on`] core 1 a thread whose first action is to read the clock, and
/// join it. Returns the sum of the times from just before the spawn to that reading.
///
/// The threads end on core 1, so their stack blocks gather in core 1's pool; core 1
/// spills the surplus to the process-wide spare list, where core 0's spawns find them
/// again (no fresh block is carved in the steady state).
pub fn remote_spawn(n: u64) -> Duration {
    let (rt, cpus) = two_cores();
    let (total, ok) = rt.block_on(move || {
        spindle::spawn_on(0, move || {
            let mut ok = on_core(cpus, 0);
            let mut total = Duration::ZERO;
            for _ in 0..n {
                let t0 = Instant::now();
                let (t1, there) = spindle::spawn_on(1, move || {
                    let t1 = Instant::now();
                    (t1, on_core(cpus, 1))
                })
                .join()
                .expect("spawned thread panicked");
                total += t1.saturating_duration_since(t0);
                ok &= there;
            }
            (total, ok && on_core(cpus, 0))
        })
        .join()
        .expect("spawning thread panicked")
    });
    if cpus.is_some() {
        affinity::record_pinned(ok);
    }
    total
}

/// `n` moves of threads between the two cores of [`two_cores`] (rounded up to a
/// multiple of [`IN_FLIGHT`]): [`IN_FLIGHT`] threads, all started on core 0, each call
/// [`spindle::migrate_to`] the other core, back and forth, `n / IN_FLIGHT` times
/// (rounded up; a share each rather than a shared count, which would bounce one more
/// cache line between the CPUs on every move). Time runs from the first thread's
/// start to the last one's end. Each thread checks its CPU after its first and its
/// last move.
pub fn migration(n: u64) -> Duration {
    let k = n.div_ceil(IN_FLIGHT as u64);
    let (rt, cpus) = two_cores();
    let (t0, t1, ok) = rt.block_on(move || {
        spindle::spawn_on(0, move || {
            // Same priority as this thread: none runs before it joins the first.
            let movers: Vec<_> = (0..IN_FLIGHT)
                .map(|_| {
                    spindle::spawn_on(0, move || {
                        let t0 = Instant::now();
                        let mut ok = true;
                        for i in 0..k {
                            let to = if i % 2 == 0 { 1 } else { 0 };
                            spindle::migrate_to(to).expect("core 0 or 1 is gone");
                            if i == 0 || i == k - 1 {
                                ok &= on_core(cpus, to);
                            }
                        }
                        (t0, Instant::now(), ok)
                    })
                })
                .collect();
            movers
                .into_iter()
                .map(|h| h.join().expect("migrating thread panicked"))
                .reduce(|(a0, a1, a_ok), (b0, b1, b_ok)| (a0.min(b0), a1.max(b1), a_ok && b_ok))
                .expect("IN_FLIGHT > 0")
        })
        .join()
        .expect("spawning thread panicked")
    });
    if cpus.is_some() {
        affinity::record_pinned(ok);
    }
    scale(t1 - t0, k * IN_FLIGHT as u64, n)
}

/// Stack size of the skynet threads: a node's frames take far less in an optimised
/// build. Unoptimised builds (the unit tests) get 64 KiB: their frames of `spawn` and
/// `join` outgrew 16 KiB.
const SKYNET_STACK: usize = if cfg!(debug_assertions) {
    64 * 1024
} else {
    16 * 1024
};

/// How the skynet tree is laid out over the cores.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// Cores of the runtime.
    cores: usize,
    /// Nodes of levels `1..=spread` are spread over the cores by their index within
    /// their level; deeper ones start on their parent's core.
    spread: u32,
}

impl Layout {
    /// For `cores` cores: spread the top levels until there are at least five
    /// subtrees per core (one level for two cores), so that the cores stay busy.
    fn new(cores: usize) -> Layout {
        let mut spread = 1;
        while 10usize.pow(spread) < 5 * cores && spread < 9 {
            spread += 1;
        }
        Layout { cores, spread }
    }

    /// Where a node of `level` with index `index` within its level is spawned, and
    /// its priority. Spread nodes keep the default priority; below them each level
    /// is one more urgent than its parent, so that a node spawned on its parent's
    /// core runs at once and the subtree is built depth first: a core holds one path
    /// of the tree at a time (with its finished children waiting to be joined)
    /// instead of every node of a level.
    fn place(&self, level: u32, index: u64) -> (usize, u8) {
        if level <= self.spread {
            (
                (index % self.cores as u64) as usize,
                spindle::DEFAULT_PRIORITY,
            )
        } else {
            let here = spindle::current_core().expect("on a spindle thread");
            let boost = (level - self.spread) as u8;
            (here, spindle::DEFAULT_PRIORITY + boost)
        }
    }
}

/// The skynet tree under one node of `level`: the sum of the leaves `num..num + size`.
fn skynet_node(num: u64, size: u64, level: u32, layout: Layout) -> u64 {
    if size == 1 {
        return num;
    }
    let sub = size / 10;
    let children: Vec<_> = (0..10)
        .map(|i| {
            let num = num + i * sub;
            let (core, priority) = layout.place(level + 1, num / sub);
            spindle::Builder::new()
                .core(core)
                .priority(priority)
                .stack_size(SKYNET_STACK)
                .spawn(move || skynet_node(num, sub, level + 1, layout))
                .expect("cannot spawn a skynet thread")
        })
        .collect();
    children
        .into_iter()
        .map(|h| h.join().expect("skynet thread panicked"))
        .sum()
}

/// The skynet tree of `depth` levels below the root (see [`crate::skynet`]) on a
/// runtime of one core per allowed CPU, pinned: each node spawns its ten children
/// with [`spindle::Builder`] (16 KiB stacks) and joins them. The nodes of the top
/// levels are spread over the cores; below them children go to their parent's core
/// with a priority one above their parent's, so each core builds its subtrees depth
/// first. Returns the root's sum and the time from spawning the
/// root to its result (runtime start and shutdown left out).
pub fn skynet(depth: u32) -> (u64, Duration) {
    let cpus = affinity::allowed_cpus().len().max(1);
    let rt = spindle::Runtime::builder()
        .cores(cpus)
        .build()
        .expect("cannot build the spindle runtime");
    let layout = Layout::new(rt.handle().cores().len());
    rt.block_on(move || {
        let t0 = Instant::now();
        let sum = spindle::Builder::new()
            .stack_size(SKYNET_STACK)
            .spawn(move || skynet_node(0, 10u64.pow(depth), 0, layout))
            .expect("cannot spawn the skynet root")
            .join()
            .expect("skynet root panicked");
        (sum, t0.elapsed())
    })
}

/// The workloads proper, to be called on a spindle thread (they panic elsewhere).
pub mod inside {
    use std::hint::black_box;
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;
    use std::time::{Duration, Instant};

    use crate::workloads::{half, pingpong, scale};

    /// The caller and a new thread of the same priority each call
    /// [`spindle::yield_now`] `n / 2` times (rounded up), so each yield switches to the
    /// other; returns the time per `n` switches.
    pub fn switch(n: u64) -> Duration {
        let k = half(n);
        let t0 = Instant::now();
        let peer = spindle::spawn(move || {
            for _ in 0..k {
                spindle::yield_now();
            }
        });
        for _ in 0..k {
            spindle::yield_now();
        }
        peer.join().expect("yielding thread panicked");
        scale(t0.elapsed(), 2 * k, n)
    }

    /// Spawns an empty thread and joins it, `n` times.
    pub fn spawn_join(n: u64) -> Duration {
        let t0 = Instant::now();
        for _ in 0..n {
            spindle::spawn(|| ()).join().expect("empty thread panicked");
        }
        t0.elapsed()
    }

    /// `n` round trips between the caller (A) and a new thread (B): A unparks B and
    /// parks, B unparks A and parks.
    pub fn park_unpark(n: u64) -> Duration {
        let turn = Arc::new(AtomicU64::new(0));
        let a = spindle::current();
        let t0 = Instant::now();
        let b = {
            let turn = Arc::clone(&turn);
            spindle::spawn(move || pingpong::side_b(&turn, n, || a.unpark(), spindle::park))
        };
        let b_thread = b.thread().clone();
        pingpong::side_a(&turn, n, || b_thread.unpark(), spindle::park);
        b.join().expect("park/unpark partner panicked");
        t0.elapsed()
    }

    /// Calls [`spindle::current`] `n` times (each handle is dropped at once).
    pub fn current(n: u64) -> Duration {
        let t0 = Instant::now();
        for _ in 0..n {
            black_box(spindle::current());
        }
        t0.elapsed()
    }
}

/// `n` compute steps on a worker core of the default runtime (one worker per CPU but
/// the last, the hypercore on the last), with the hypercore idle.
pub fn isolation_idle(n: u64) -> Duration {
    isolation(n, 0)
}

/// `n` compute steps as in [`isolation_idle`], while 1,000 maintenance threads spin
/// (a compute burst, then `yield_now`) on the hypercore.
pub fn isolation_busy(n: u64) -> Duration {
    isolation(n, 1000)
}

fn isolation(n: u64, busy: usize) -> Duration {
    let rt = spindle::Runtime::new().expect("cannot build the default runtime");
    rt.block_on(move || {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Arc::new(AtomicU64::new(0));
        let hs: Vec<_> = (0..busy)
            .map(|i| {
                let (stop, started) = (Arc::clone(&stop), Arc::clone(&started));
                spindle::spawn_maintenance(move || {
                    started.fetch_add(1, Ordering::Relaxed);
                    let mut x = i as u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = compute_step(x);
                        spindle::yield_now();
                    }
                    x
                })
            })
            .collect();
        while started.load(Ordering::Relaxed) < busy as u64 {
            spindle::sleep(Duration::from_micros(100));
        }
        let t0 = Instant::now();
        let mut x = 1u64;
        for _ in 0..n {
            x = compute_step(std::hint::black_box(x));
        }
        let d = t0.elapsed();
        std::hint::black_box(x);
        stop.store(true, Ordering::Relaxed);
        for h in hs {
            h.join().expect("maintenance thread panicked");
        }
        d
    })
}

/// 256 dependent rounds of a shift-xor-multiply mix (no closed form to fold).
#[inline(never)]
fn compute_step(mut x: u64) -> u64 {
    for _ in 0..256 {
        x = (x ^ (x >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    }
    x
}
