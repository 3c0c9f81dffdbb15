//! # spindle
//!
//! Stackful lightweight threads for Linux, used like `std::thread` and tens to hundreds
//! of times cheaper than OS threads (the README's "Measured" section has the figures):
//! a hand-written context switch, stacks carved from a guarded, pooled arena, and one
//! scheduler per core with an O(1) priority run queue.
//!
//! ```
//! let total = spindle::run(|| {
//!     let handles: Vec<_> = (1..=100u64).map(|i| spindle::spawn(move || i)).collect();
//!     handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
//! });
//! assert_eq!(total, 5050);
//! ```
//!
//! The README (below) is the user's guide; `HACKING.md` in the repository maps the
//! code: its layers, each file's concern, and where each invariant is written.
#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]
#![warn(missing_docs, unreachable_pub)]
// The loom build compiles the models only: the runtime paths they replace go unused.
#![cfg_attr(loom, allow(dead_code))]

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeExamples;

#[cfg(not(target_os = "linux"))]
compile_error!("spindle runs on Linux only");

extern crate self as spindle;

mod arch;
mod blocking;
mod error;
mod fork;
pub mod fs;
mod io;
mod limits;
mod loom;
pub mod maintenance;
pub mod names;
pub mod net;
mod offload;
mod os;
pub mod page;
mod pool;
mod preempt;
mod registry;
mod runtime;
mod sched;
mod shared;
mod spares;
pub mod stack;
pub mod sync;
pub mod sys;
mod task;
mod thread;
pub mod topology;
mod tracefile;

pub use blocking::{BLOCKING_THREADS, blocking};
pub use error::{ConfigError, CoreError, SpawnError};
pub use names::spawn_named;
pub use preempt::{
    DEFAULT_HANDOFF_TICKS, DEFAULT_SPARE_THREADS, DEFAULT_TICK, DEFAULT_TIME_SLICE,
    DEFAULT_WATCHDOG_SLICES, PREEMPT_SIGNAL,
};
pub use runtime::dump::{CoreDump, ThreadDump, ThreadInfo, ThreadState};
pub use runtime::shutdown::DEFAULT_SHUTDOWN_TIMEOUT;
pub use runtime::{
    CORES_ENV, CoreInfo, CoreType, DEFAULT_IDLE_SPIN, Handle, IO_URING_ENV, MAIN_STACK_SIZE,
    Runtime, RuntimeBuilder, RuntimeStats, SERVICE_CORES_ENV, core_stats, run,
};
pub use sched::CoreStats;
pub use stack::{DEFAULT_STACK_SIZE, GuardMode, MAX_STACK_SIZE, MIN_STACK_SIZE, guard_mode};
pub use sync::CancelToken;
pub use task::abandon::ABANDONED;
pub use task::dump::WaitReason;
pub use thread::{
    Abandoned, AccessError, Builder, Cancelled, DEFAULT_PRIORITY, JoinFuture, JoinHandle, JoinSet,
    LocalKey, MAX_PRIORITY, Scope, ScopedJoinHandle, Thread, ThreadId, block_on, current,
    current_core, migrate_to, panicking, park, park_timeout, preempt_point, scope, sleep, spawn,
    spawn_future, spawn_maintenance, spawn_on, try_current, yield_now,
};
pub use topology::{DEFAULT_TYPE, SERVICE_TYPE};
pub use tracefile::TRACE_ENV;

/// Marks `fn main` to run as the main thread of a spindle runtime (see [`run`]).
///
/// ```
/// #[spindle::main]
/// fn main() {
///     let h = spindle::spawn(|| 1 + 1);
///     assert_eq!(h.join().unwrap(), 2);
/// }
/// ```
pub use spindle_macros::main;

/// Registers a `fn(A) -> R` as one variant of a named thread in the static thread
/// table (see [`names`] and [`spawn_named`]).
///
/// Arguments: `name = ".."` (required), `variant = ".."` (default `"generic"`),
/// `requires = ".."` (comma- or `+`-separated CPU features; default: read from the
/// variant name, `generic` needing nothing). Features of a `#[target_feature(enable
/// = ..)]` on the function are added. The function stays callable as usual.
///
/// ```
/// #[spindle::thread(name = "square", variant = "generic")]
/// fn square(x: u32) -> u32 {
///     x * x
/// }
///
/// spindle::run(|| {
///     let h = spindle::spawn_named::<u32, u32>("square", 7, spindle::Builder::new()).unwrap();
///     assert_eq!(h.variant(), Some("generic"));
///     assert_eq!(h.join().unwrap(), 49);
/// });
/// ```
pub use spindle_macros::thread;

/// Runs a test as the main thread of a fresh spindle runtime: `#[spindle::test]` in
/// place of `#[test]`. The runtime is built for this test alone and dropped after it,
/// so tests stay independent.
///
/// Arguments (each optional; the default is the default runtime's):
///
/// - `cores = N`: worker cores (`RuntimeBuilder::cores`);
/// - `service_cores = N`: service cores (`RuntimeBuilder::service_cores`);
/// - `hypercore = false`: no service core; system calls run on the workers;
/// - `preemptible = true`: time-slice preemption (`RuntimeBuilder::preemptible`).
///
/// The test may return a `Result`, like a `#[test]`; a panic fails it with its
/// message. Other attributes (`#[should_panic]`, `#[ignore]`) go below it.
///
/// ```
/// #[spindle::test(cores = 2)]
/// fn two_threads_meet() {
///     let h = spindle::spawn(|| 40 + 2);
///     assert_eq!(h.join().unwrap(), 42);
/// }
/// # fn main() {}
/// ```
pub use spindle_macros::test;

#[doc(hidden)]
pub mod __private {
    pub use crate::names::{Entry, THREADS, call_erased};
    pub use linkme;

    /// Makes every later handoff go through the carrier's signal handler, the path of
    /// kernels without `membarrier` (for tests).
    pub fn handoff_by_signal() {
        crate::preempt::stuck::BY_SIGNAL.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
