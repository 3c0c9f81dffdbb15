//! [`Builder`]: a thread's attributes, checked into the [`SpawnOpts`] a spawn uses.

use std::sync::Arc;
use std::time::Duration;

use crate::error::SpawnError;
use crate::sched::CoreCtx;
use crate::sched::placement::Target;
use crate::shared::Shared;
use crate::stack::{MAX_STACK_SIZE, MIN_STACK_SIZE};
use crate::task::priority::{DEFAULT_PRIORITY, MAX_PRIORITY};
use crate::task::tcb::Name;

use super::join::JoinHandle;
use super::spawn::spawn_unchecked;

/// Thread attributes: name, stack size, priority, and where the thread runs.
///
/// # Examples
///
/// ```
/// spindle::run(|| {
///     let h = spindle::Builder::new()
///         .name("worker")
///         .stack_size(128 * 1024)
///         .priority(40)
///         .spawn(|| spindle::current().name().map(str::to_owned))
///         .unwrap();
///     assert_eq!(h.join().unwrap().as_deref(), Some("worker"));
///     // Bad input is an error that says what to do.
///     let err = spindle::Builder::new().stack_size(1000).spawn(|| ()).unwrap_err();
///     assert!(err.to_string().contains("power of two"));
/// });
/// ```
#[derive(Debug, Default, Clone)]
#[must_use = "a Builder does nothing until spawn is called"]
pub struct Builder {
    name: Option<String>,
    stack_size: Option<usize>,
    priority: Option<u8>,
    core: Option<usize>,
    core_type: Option<String>,
    maintenance: bool,
    time_slice: Option<Duration>,
    preemptible: Option<bool>,
}

impl Builder {
    /// A builder with the defaults: unnamed, the runtime's default stack size (64 KiB
    /// unless configured), priority 32, placed on the least loaded core of the
    /// caller's type.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Names the thread (shown by `current().name()` and in overflow reports).
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(name.into());
        self
    }

    /// Sets the stack block size: a power of two from 16 KiB to 8 MiB. Only touched
    /// pages use memory; one page at the bottom is the guard.
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = Some(bytes);
        self
    }

    /// Sets the priority: 0 (least urgent) to 63 (most urgent). A runnable thread of a
    /// higher priority always runs before one of a lower priority on the same core;
    /// threads of equal priority take turns.
    pub fn priority(mut self, priority: u8) -> Builder {
        self.priority = Some(priority);
        self
    }

    /// Runs the thread on core `core` (its id in [`Handle::cores`](crate::Handle::cores)).
    pub fn core(mut self, core: usize) -> Builder {
        self.core = Some(core);
        self
    }

    /// Runs the thread on the least loaded core of the type named `name`.
    pub fn core_type(mut self, name: impl Into<String>) -> Builder {
        self.core_type = Some(name.into());
        self
    }

    /// Makes the thread a maintenance thread: it runs on the service core (the
    /// hypercore) and never on a worker core, so upkeep work never takes worker time.
    /// If the runtime has no hypercore (`RuntimeBuilder::hypercore(false)`), it runs
    /// on the worker cores like any thread. Takes precedence over [`Builder::core`]
    /// and [`Builder::core_type`].
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = spindle::Runtime::builder().cores(1).build().unwrap();
    /// let hyper = rt.hypercore().map(|c| c.id);
    /// let ran_on = rt.block_on(|| {
    ///     spindle::Builder::new()
    ///         .maintenance()
    ///         .spawn(spindle::current_core)
    ///         .unwrap()
    ///         .join()
    ///         .unwrap()
    /// });
    /// assert_eq!(ran_on, hyper);
    /// ```
    pub fn maintenance(mut self) -> Builder {
        self.maintenance = true;
        self
    }

    /// Sets the thread's time slice (default: the runtime's, 10 ms unless configured
    /// with [`RuntimeBuilder::time_slice`](crate::RuntimeBuilder::time_slice)). It is
    /// counted in ticks, rounded up. A thread that runs longer than its slice without
    /// reaching a schedule point gets a reschedule request, honoured at its next
    /// runtime call (spawn, park, unpark, a `sync` operation, `yield_now`,
    /// [`preempt_point`](crate::preempt_point)) — or asynchronously if it is [`preemptible`](Self::preemptible).
    /// A zero slice is a [`SpawnError::TimeSlice`].
    pub fn time_slice(mut self, slice: Duration) -> Builder {
        self.time_slice = Some(slice);
        self
    }

    /// Opts the thread in to (or out of) asynchronous preemption (default: the
    /// runtime's, off unless [`RuntimeBuilder::preemptible`](crate::RuntimeBuilder::preemptible)).
    ///
    /// A preemptible thread that keeps running past its time slice plus one tick is
    /// interrupted by a signal and made to yield wherever it is, even in a loop that
    /// makes no runtime call; all its registers (general, flags, x87/SSE/AVX state) are
    /// saved and restored exactly.
    ///
    /// It is never interrupted where a lock of its OS thread may be held: in the
    /// runtime's own critical sections, in code outside the main executable (libc, and
    /// with it `malloc`; the vDSO), in a function of the standard library, or in user
    /// code that the standard library called with such a lock held (a `Display` that
    /// `println!` formats, a closure run by `Once` or by a thread-local's `with`): the
    /// thread's frames are walked before it yields. Those preemptions are deferred to
    /// the thread's next runtime call or a later tick. The executable needs its symbol
    /// table for this (it is there unless stripped); without one, preemptible threads
    /// are only preempted at runtime calls, and stderr says so once.
    ///
    /// **Do not hold a lock of the OS-thread world across your own code in a
    /// preemptible thread**: a `std::sync::Mutex` or `RwLock` guard, a `RefCell`
    /// borrowed out of a `thread_local!` and kept, a lock of a C library. Such locks
    /// belong to the core's OS thread, which runs other spindle threads while the
    /// preempted one is suspended with the lock held: a plain mutex then deadlocks the
    /// whole core, a reentrant one lets two threads in. spindle's own
    /// [`sync`](crate::sync) types are safe: a waiter parks its spindle thread, so the
    /// preempted holder runs again and releases the lock. A global allocator linked
    /// into the executable (jemalloc, mimalloc) has the same hazard; the default
    /// (libc's `malloc`) does not.
    ///
    /// Preemption uses SIGURG. A SIGURG handler installed before the first runtime is
    /// kept and still gets every SIGURG that is not spindle's; one installed later
    /// replaces spindle's, which turns asynchronous preemption off (reported once on
    /// stderr).
    pub fn preemptible(mut self, yes: bool) -> Builder {
        self.preemptible = Some(yes);
        self
    }

    pub(crate) fn opts(&self) -> Result<SpawnOpts, SpawnError> {
        if let Some(size) = self.stack_size {
            validate_stack_size(size)?;
        }
        if self.time_slice.is_some_and(|d| d.is_zero()) {
            return Err(SpawnError::TimeSlice);
        }
        let priority = self.priority.unwrap_or(DEFAULT_PRIORITY);
        if priority > MAX_PRIORITY {
            return Err(SpawnError::Priority {
                requested: priority,
            });
        }
        let target = match (self.maintenance, self.core, &self.core_type) {
            (true, _, _) => Target::Maintenance,
            (false, Some(c), _) => Target::Core(c),
            (false, None, Some(t)) => Target::Type(t.clone()),
            (false, None, None) => Target::Any,
        };
        Ok(SpawnOpts {
            name: self.name.as_deref().map(|n| Name::Shared(Arc::from(n))),
            stack_size: self.stack_size,
            priority,
            main: false,
            target,
            lazy: false,
            time_slice: self.time_slice,
            preemptible: self.preemptible,
        })
    }

    /// Spawns the thread in the caller's runtime.
    ///
    /// # Errors
    ///
    /// [`SpawnError`] when an attribute is out of range, the core or type does not
    /// exist, memory runs out, or the caller is not in a runtime. The closure is
    /// dropped and nothing else changes.
    pub fn spawn<F, T>(self, f: F) -> Result<JoinHandle<T>, SpawnError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let opts = self.opts()?;
        let (ctx, _) = CoreCtx::current().ok_or_else(SpawnError::not_in_runtime)?;
        let shared = Shared::of(ctx.core());
        // SAFETY: `F` and `T` are 'static and Send.
        unsafe { spawn_unchecked(shared, f, opts) }
    }
}

pub(super) fn validate_stack_size(size: usize) -> Result<(), SpawnError> {
    if size.is_power_of_two() && (MIN_STACK_SIZE..=MAX_STACK_SIZE).contains(&size) {
        Ok(())
    } else {
        Err(SpawnError::StackSize { requested: size })
    }
}

/// Validated spawn attributes.
pub(crate) struct SpawnOpts {
    pub(crate) name: Option<Name>,
    /// `None`: the runtime's default.
    pub(crate) stack_size: Option<usize>,
    pub(crate) priority: u8,
    pub(crate) main: bool,
    pub(crate) target: Target,
    /// Create the thread lazily if its core is not the creating core (named spawns;
    /// spawns from OS threads outside the runtime are always lazy).
    pub(crate) lazy: bool,
    /// Time slice; `None`: the runtime's default.
    pub(crate) time_slice: Option<Duration>,
    /// Asynchronous preemption; `None`: the runtime's default.
    pub(crate) preemptible: Option<bool>,
}
