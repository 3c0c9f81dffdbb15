//! A million parked threads: what a spindle thread costs in resident memory.
//!
//! [`run`] starts a runtime, spawns the threads (default stack size, guard pages on),
//! lets each run until it has counted itself and parked, reads `VmRSS` before and
//! after, then unparks and joins every thread and checks every join succeeded.

use std::hint::black_box;
use std::mem::MaybeUninit;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use spindle::{CoreStats, GuardMode, JoinHandle};

use crate::mem::rss_kib;

/// The default thread count of `spindle bench --million`.
pub const DEFAULT_THREADS: usize = 1_000_000;

/// What [`run`] measured.
#[derive(Debug, Clone)]
pub struct MillionReport {
    /// Threads spawned (and joined).
    pub threads: usize,
    /// Time to spawn them all (none has run yet).
    pub spawn: Duration,
    /// Time from the last spawn until every thread had run and parked.
    pub settle: Duration,
    /// Time to unpark and join them all.
    pub teardown: Duration,
    /// Whole run, runtime start and shutdown included.
    pub wall: Duration,
    /// `VmRSS` before spawning, in KiB (the join-handle vector already resident).
    pub rss_before_kib: u64,
    /// `VmRSS` with every thread parked, in KiB.
    pub rss_after_kib: u64,
    /// How guard pages are installed.
    pub guard: Option<GuardMode>,
    /// Bytes of the caller's join-handle vector, made resident before the first
    /// reading so that it is not counted against the threads.
    pub handles_bytes: usize,
    /// The core's counters once every thread was joined.
    pub stats: CoreStats,
}

impl MillionReport {
    /// Resident memory per parked thread, in KiB.
    pub fn rss_kib_per_thread(&self) -> f64 {
        self.rss_after_kib.saturating_sub(self.rss_before_kib) as f64 / self.threads.max(1) as f64
    }

    /// Spawn time per thread, in ns.
    pub fn spawn_ns_per_thread(&self) -> f64 {
        self.spawn.as_nanos() as f64 / self.threads.max(1) as f64
    }
}

/// Shared by the main thread and every parked thread.
struct Gate {
    parked: AtomicUsize,
    release: AtomicBool,
}

/// Spawns `threads` spindle threads that each park, measures resident memory, then
/// unparks and joins them all. `phase` is told when each phase starts (for progress
/// display).
///
/// # Errors
///
/// A message if spawning fails (the threads spawned so far are still joined), if a
/// join fails, or if `/proc/self/status` has no `VmRSS`.
pub fn run(
    threads: usize,
    mut phase: impl FnMut(&'static str) + Send,
) -> Result<MillionReport, String> {
    let wall = Instant::now();
    let mut report = spindle::run(|| inside(threads, &mut phase))?;
    report.wall = wall.elapsed();
    Ok(report)
}

fn inside(
    threads: usize,
    phase: &mut (dyn FnMut(&'static str) + Send),
) -> Result<MillionReport, String> {
    let gate = Arc::new(Gate {
        parked: AtomicUsize::new(0),
        release: AtomicBool::new(false),
    });
    let mut handles: Vec<JoinHandle<()>> = Vec::with_capacity(threads);
    // Touch the handle vector now, so its pages are resident before the first reading.
    handles.spare_capacity_mut().fill_with(MaybeUninit::zeroed);
    black_box(handles.spare_capacity_mut().as_ptr());
    let handles_bytes = threads * size_of::<JoinHandle<()>>();
    let rss_before_kib = rss_kib().ok_or("cannot read VmRSS from /proc/self/status")?;

    phase("spawning");
    let t0 = Instant::now();
    let mut spawn_error = None;
    for _ in 0..threads {
        let gate = Arc::clone(&gate);
        let spawned = spindle::Builder::new().spawn(move || {
            gate.parked.fetch_add(1, Ordering::Relaxed);
            while !gate.release.load(Ordering::Acquire) {
                spindle::park();
            }
        });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                spawn_error = Some(format!("spawn failed after {} threads: {e}", handles.len()));
                break;
            }
        }
    }
    let spawn = t0.elapsed();

    phase("waiting for all to park");
    let t1 = Instant::now();
    // Each yield lets every runnable thread run once; they all park at their first run.
    while gate.parked.load(Ordering::Relaxed) < handles.len() {
        spindle::yield_now();
    }
    let settle = t1.elapsed();
    let rss_after_kib = rss_kib().ok_or("cannot read VmRSS from /proc/self/status")?;
    let guard = spindle::guard_mode();

    phase("unparking, joining");
    let t2 = Instant::now();
    gate.release.store(true, Ordering::Release);
    for h in &handles {
        h.thread().unpark();
    }
    let spawned = handles.len();
    let failed = handles
        .into_iter()
        .map(JoinHandle::join)
        .filter(Result::is_err)
        .count();
    let teardown = t2.elapsed();
    if let Some(e) = spawn_error {
        return Err(e);
    }
    if failed > 0 {
        return Err(format!("{failed} of {spawned} joins failed"));
    }
    Ok(MillionReport {
        threads: spawned,
        spawn,
        settle,
        teardown,
        wall: Duration::ZERO,
        rss_before_kib,
        rss_after_kib,
        guard,
        handles_bytes,
        stats: spindle::core_stats().unwrap_or_default(),
    })
}
