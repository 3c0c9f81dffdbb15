//! Time slices, the tick, asynchronous preemption and the watchdog.
//!
//! ## Time slices and the tick
//!
//! Every thread has a time slice (default [`DEFAULT_TIME_SLICE`]), kept in its TCB as
//! a number of ticks. Each core publishes, with relaxed stores to a cache line of its
//! own ([`CoreClock`]), a *schedule point* counter (bumped at every switch, and when a
//! yield keeps the same thread running), the tick at which the running thread's run
//! began, and the running thread's id, slice and preemptibility. The slice start is a
//! copy of `CoreClock::now`, the tick counter, which the tick writes into every core's
//! line: a switch reads a word of its own line instead of the clock.
//!
//! [`tick`] runs every tick (default [`DEFAULT_TICK`]) on a thread named
//! `spindle-ticker`: a maintenance thread of the hypercore, or, in a runtime without
//! one, an OS thread ([`ticker`]). For each core whose schedule point counter did
//! not move and whose thread is over its slice, it sets the core's reschedule flag
//! (`Core::resched`), which the thread honours at its next runtime call (every
//! [`PreemptGuard`] drop and [`check`]: one relaxed load) or `preempt_point()`. If the
//! flag is not honoured within one more tick and the thread is preemptible, the tick
//! sends the core's OS thread [`PREEMPT_SIGNAL`].
//!
//! ## The preempt count and the signal handler
//!
//! Each thread has a preempt count (`Tcb::preempt_count`), raised by the runtime's own
//! critical sections ([`PreemptGuard`]: spawn, park/unpark, wakes, timers, scheduling,
//! the `sync` types' internal locks). Only the thread itself changes it, with plain
//! loads and stores; the signal handler runs on the same OS thread, so compiler
//! fences order the two. The handler rewrites the interrupted context only when all of
//! these hold:
//!
//! - the interrupted stack pointer lies in a spindle stack block whose thread is the
//!   one the core published as running (not the scheduler context, not a signal
//!   stack);
//! - that thread opted in (`Builder::preemptible`) and its preempt count is zero;
//! - the interrupted instruction lies in the main executable's code (found once with
//!   `dl_iterate_phdr`), so code in shared libraries — libc's `malloc` holding an arena
//!   lock, the vDSO — is never interrupted, not in a function of `std` (which may hold
//!   a lock of the OS thread), and not in the trampoline itself;
//! - the thread is not panicking, and its stack has room for the trampoline's frame.
//!
//! Otherwise it only sets the reschedule flag. To preempt, the handler pushes the
//! interrupted instruction pointer below the 128-byte red zone of the interrupted
//! stack, points the context's stack pointer at it and its instruction pointer at the
//! trampoline, and raises the thread's preempt count. On return from the handler the
//! kernel restores every other register exactly; the trampoline
//! saves the flags, the general registers and the x87/SSE/AVX state (`xsave64` with
//! the XCR0 mask, or `fxsave64`), calls `preempted` — which yields — restores all
//! of it and returns to the interrupted instruction with the original stack pointer.
//!
//! ## The watchdog
//!
//! A core whose schedule point counter has not moved for `watchdog_slices` slices of
//! its running thread (a thread that neither yields nor can be preempted, or one
//! blocked in the kernel) is reported once per occurrence through `tracing` at warn
//! level, with the thread's name, id and core. The tick may not touch the thread's
//! name (the thread may exit and free it at any moment), so it asks the signal handler,
//! which runs on the core's own OS thread and therefore never concurrently with that
//! thread, to take a reference to the name for it (a one-slot hand-off in
//! [`CoreClock`]).
//!
//! ## Files
//!
//! - `config`: the settings and their check; `clock`: their run-time side;
//! - `tick`: the reschedule requests and signals; `watchdog`: the reports;
//! - `ticker`: the OS thread that ticks in a runtime without a hypercore;
//! - `handler`: the signal handler; `trampoline`: where a preempted thread resumes;
//! - `signal`: sending, recognising and chaining SIGURG; `code`: which code may be
//!   interrupted.
//!
//! [`CoreClock`]: crate::sched::clock::CoreClock
//! [`PreemptGuard`]: crate::sched::guard::PreemptGuard
//! [`check`]: crate::sched::guard::check
//! [`tick`]: tick::tick

pub(crate) mod clock;
pub(crate) mod code;
pub(crate) mod config;
pub(crate) mod handler;
mod signal;
pub(crate) mod stuck;
pub(crate) mod tick;
pub(crate) mod ticker;
mod trampoline;
pub(crate) mod watchdog;

use std::time::Duration;

/// Default time slice of a thread.
pub const DEFAULT_TIME_SLICE: Duration = Duration::from_millis(10);

/// Default period of the tick.
pub const DEFAULT_TICK: Duration = Duration::from_millis(1);

/// Default number of its own slices a thread may hold its core without a schedule
/// point before the watchdog reports it.
pub const DEFAULT_WATCHDOG_SLICES: u32 = 10;

/// Default number of ticks a worker core's thread may block its OS thread in the
/// kernel before the core goes to a spare OS thread (`RuntimeBuilder::handoff_after`).
pub const DEFAULT_HANDOFF_TICKS: u32 = 2;

/// Default bound on the OS threads a runtime starts beyond one per core, to carry the
/// cores whose OS threads block in the kernel (`RuntimeBuilder::spare_threads`).
pub const DEFAULT_SPARE_THREADS: usize = 128;

/// The signal the tick sends a core's OS thread to preempt its running thread. SIGURG
/// is ignored by default and rarely used by programs (Go's runtime made the same
/// choice).
pub const PREEMPT_SIGNAL: libc::c_int = libc::SIGURG;
