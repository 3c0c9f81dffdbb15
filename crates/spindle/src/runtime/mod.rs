//! The runtime: cores, core types, placement, cores joining and leaving, shutdown.
//!
//! A [`Runtime`] is a set of cores, each one OS thread running one scheduler (see
//! `sched`), grouped in core types. [`Runtime::builder`] configures it;
//! [`Runtime::block_on`] runs a closure as a spindle thread and waits for it;
//! dropping the runtime abandons the threads still alive, as a process abandons its
//! threads when `main` returns, and stops every core: a thread still blocked is
//! unwound from its blocking point with the [`Abandoned`](crate::Abandoned) payload,
//! so its destructors run; what is left after the shutdown timeout is reclaimed
//! without unwinding; every handle of an abandoned thread reports
//! [`ABANDONED`] from `join`. The sequence, and what happens to a thread that can be
//! neither preempted nor stopped, is in the `shutdown` module's docs and at
//! [`RuntimeBuilder::shutdown_timeout`]. [`run`] does all three with the default
//! configuration.
//!
//! ## Removing a core
//!
//! [`Handle::remove_core`] marks the core `Leaving` and halts it. Placement skips it
//! from then on, but threads it owns are still routed to it: it may be half-way
//! through switching one out. At its next schedule point the core goes to its
//! scheduler context, finishes the last switch, and marks itself `Evacuating`; only
//! now may wakers send its sleeping threads elsewhere (`sched::lifecycle` states the
//! rule and its loom model). It then waits for a *grace period*: every other core
//! passes a schedule point (its epoch moves). Senders re-check the destination's state
//! right before each slot offer, with no schedule point between the check and the
//! offer, and bump their epoch after; so after the grace period no offer to the
//! leaving core can still be in flight, and the core's last take-in sees everything
//! sent to it. It then closes its injection queue, collects completed offloaded calls,
//! hands its runnable threads to the active cores of their type through the exchange
//! slots and its timers through their inboxes, and retires. Its sleeping threads keep
//! pointing at it; the thread that wakes one sends it to an active core of its type
//! instead.

mod build;
pub(crate) mod carriers;
mod config;
mod cores;
pub(crate) mod dump;
mod handle;
pub(crate) mod shutdown;

use std::sync::Arc;
use std::time::Duration;

pub use self::config::{CORES_ENV, CoreType, IO_URING_ENV, RuntimeBuilder, SERVICE_CORES_ENV};
pub use self::handle::{CoreInfo, Handle, RuntimeStats};
use crate::error::ConfigError;
use crate::sched::{CoreCtx, CoreStats};
use crate::shared::Shared;

/// Default spin before an idle core sleeps in the kernel. Waking a sleeping OS thread
/// costs ~25 µs on the reference machine, so spinning a little longer than that
/// before sleeping saves a full wake-up whenever work arrives within the window.
pub const DEFAULT_IDLE_SPIN: Duration = Duration::from_micros(50);

/// Stack size of the main thread of [`run`] and [`Runtime::block_on`].
pub const MAIN_STACK_SIZE: usize = 8 << 20;

/// A running set of cores. Dropping it shuts it down (see the module docs of
/// `runtime`): it waits for every core to reach a schedule point.
///
/// # Examples
///
/// ```
/// let rt = spindle::Runtime::builder().cores(2).build().unwrap();
/// let sum = rt.block_on(|| {
///     let hs: Vec<_> = (0..2).map(|c| spindle::spawn_on(c, move || c * 10)).collect();
///     hs.into_iter().map(|h| h.join().unwrap()).sum::<usize>()
/// });
/// assert_eq!(sum, 10);
/// ```
pub struct Runtime {
    handle: Handle,
}

impl Runtime {
    /// A builder with the defaults (see [`RuntimeBuilder`]).
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::defaults()
    }

    /// A runtime with the default configuration.
    ///
    /// # Errors
    ///
    /// If a core's OS thread cannot be started.
    pub fn new() -> Result<Runtime, ConfigError> {
        Runtime::builder().build()
    }

    /// A handle to this runtime.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs `f` as a spindle thread named `main` (8 MiB stack) on the least loaded core
    /// and blocks the caller until it returns; returns its value, or resumes its panic.
    /// Threads it spawned keep running after it returns.
    pub fn block_on<F, R>(&self, f: F) -> R
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        self.handle.block_on(f)
    }
}

impl std::ops::Deref for Runtime {
    type Target = Handle;
    fn deref(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let me = Arc::as_ptr(&self.handle.shared);
        if let Some(mine) = Shared::current() {
            let mine: *const Shared = mine;
            assert!(
                !std::ptr::eq(mine, me),
                "a spindle Runtime was dropped by one of its own threads: drop it on the OS \
                 thread that built it (its cores could never stop)"
            );
        }
        shutdown::shut_down(&self.handle.shared);
    }
}

/// Runs `f` as the main thread of a new runtime with the default configuration
/// ([`Runtime::new`]), and returns its value. When `f` returns, the runtime shuts
/// down: threads still alive are abandoned (see the module docs of `runtime`). A panic
/// in `f` is resumed on the caller after the runtime is torn down.
///
/// # Panics
///
/// If called from inside a spindle thread (use `spawn` there), or if the runtime or
/// the main thread cannot be started.
///
/// # Examples
///
/// ```
/// let sum = spindle::run(|| {
///     let handles: Vec<_> = (0..10u64).map(|i| spindle::spawn(move || i * i)).collect();
///     handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
/// });
/// assert_eq!(sum, 285);
/// ```
pub fn run<F, R>(f: F) -> R
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    assert!(
        crate::task::current::current_tcb().is_none(),
        "spindle::run called from inside a spindle thread: use spindle::spawn there"
    );
    let rt = match Runtime::new() {
        Ok(rt) => rt,
        Err(e) => panic!("spindle::run: {e}"),
    };
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(f)));
    drop(rt);
    match r {
        Ok(v) => v,
        Err(payload) => std::panic::resume_unwind(payload),
    }
}

/// Statistics of the core the caller runs on, or `None` outside a runtime.
pub fn core_stats() -> Option<CoreStats> {
    let _g = crate::sched::guard::PreemptGuard::new();
    let (mut ctx, _) = CoreCtx::current()?;
    Some(ctx.stats())
}
