//! Threads: spawning, handles, ids, parking, sleeping, joining.
//!
//! The API follows `std::thread`: [`spawn`] and [`Builder`] start a thread and return a
//! [`JoinHandle`]; [`current`] names the running thread; [`park`] / [`Thread::unpark`]
//! have std's token semantics; dropping a handle detaches the thread. A spindle thread
//! is a few hundred bytes of bookkeeping and a lazily-touched stack block, scheduled by
//! its core in user space — spawning, switching and joining make no system call.
//!
//! ## Which primitive blocks what
//!
//! | call | on a spindle thread | on an OS thread outside a runtime |
//! |---|---|---|
//! | `yield_now` | lets the core run others | `std::thread::yield_now` |
//! | `park`, `park_timeout` | sleeps the thread, the core runs others | `std::thread::park*` |
//! | `sleep` | sleeps the thread (core timer) | `std::thread::sleep` |
//! | `JoinHandle::join` | sleeps the thread | blocks the OS thread |
//! | `std::sync::Mutex::lock`, blocking I/O | **blocks the whole core** | blocks the OS thread |

pub use crate::sched::wait::{park, park_timeout, preempt_point, sleep, yield_now};
pub use crate::task::abandon::Abandoned;
pub use crate::task::id::ThreadId;
pub use crate::task::panic_count::panicking;
use crate::task::priority::level_of;
pub use crate::task::priority::{DEFAULT_PRIORITY, MAX_PRIORITY};

use std::fmt;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::arch;
use crate::error::CoreError;
use crate::error::SpawnError;
use crate::runtime::{Handle, Shared};
use crate::sched::guard::PreemptGuard;
use crate::sched::handoff::enqueue_woken;
use crate::sched::placement::Target;
use crate::sched::retire::{FreeTo, retire};
use crate::sched::wait::{block, preempt_for};
use crate::sched::{After, Core, CoreCtx};
use crate::stack::{self, MAX_STACK_SIZE, MIN_STACK_SIZE, StackPool};
use crate::task::current::current_tcb;
use crate::task::slot;
use crate::task::slot::{
    Channel, F_DONE, F_HANDLE_GONE, F_JOINED, F_JOINER, ResultBuf, Slot, Wake, joiner_word, table,
};
use crate::task::tcb::{Name, State, Tcb, TcbInit, ThreadVtable};

/// Closures up to this size are stored in the thread's own stack block (no heap
/// allocation); larger ones are boxed.
const INLINE_CLOSURE: usize = 1024;

/// A handle to a spindle thread: its id and name, and [`unpark`](Thread::unpark).
///
/// Handles stay valid after the thread ends: operations on a finished thread do
/// nothing.
#[derive(Clone)]
pub struct Thread {
    id: ThreadId,
    name: Option<Name>,
}

impl Thread {
    /// Handle of the thread whose TCB is `t`.
    fn of(t: *mut Tcb) -> Thread {
        // SAFETY: `t` is a live TCB (the running thread or one being spawned).
        unsafe {
            Thread {
                id: ThreadId {
                    index: (*t).index,
                    generation: (*t).generation,
                },
                name: (*t).name.clone(),
            }
        }
    }

    /// The thread's id.
    pub fn id(&self) -> ThreadId {
        self.id
    }

    /// The thread's name, if it was given one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_ref().map(Name::as_str)
    }

    fn slot(&self) -> &'static Slot {
        table()
            .get(self.id.index)
            .expect("thread handle names an allocated slot")
    }

    /// Makes the thread's park token available: if it is parked it resumes, else its
    /// next [`park`] returns at once. Tokens do not accumulate. Unparking a finished
    /// thread does nothing.
    ///
    /// If the woken thread is more urgent than the caller and runs on the caller's core,
    /// it runs right away.
    pub fn unpark(&self) {
        let _g = PreemptGuard::new();
        if self.slot().word.wake(Channel::Park, self.id.generation) == Wake::MustEnqueue {
            // Read before the handoff: once enqueued, the thread may run (and exit)
            // on another core at any moment, and the slot be reused.
            let level = self.slot().level.load(Ordering::Relaxed);
            // SAFETY: our CAS cleared PARKED, so the thread is alive, asleep, and ours alone to enqueue.
            unsafe { enqueue_woken(self.slot()) };
            preempt_for(level);
        }
    }
}

impl fmt::Debug for Thread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Thread")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish()
    }
}

/// The handle of the running spindle thread.
///
/// # Panics
///
/// Outside a spindle thread; use [`try_current`] there.
pub fn current() -> Thread {
    try_current().expect("spindle::current() called outside a spindle thread: use try_current()")
}

/// The handle of the running spindle thread, or `None` on an OS thread.
///
/// # Examples
///
/// ```
/// assert!(spindle::try_current().is_none());
/// spindle::run(|| assert_eq!(spindle::current().name(), Some("main")));
/// ```
pub fn try_current() -> Option<Thread> {
    current_tcb().map(Thread::of)
}

/// Spawns a thread on the least loaded core of the caller's core type and returns its
/// handle.
///
/// # Panics
///
/// Outside a spindle runtime, or when no stack can be allocated, with the message of
/// the [`SpawnError`] (use [`Builder::spawn`] to get the error instead).
///
/// # Examples
///
/// ```
/// spindle::run(|| {
///     let h = spindle::spawn(|| 6 * 7);
///     assert_eq!(h.join().unwrap(), 42);
/// });
/// ```
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match Builder::new().spawn(f) {
        Ok(h) => h,
        Err(e) => panic!("spindle::spawn failed: {e}"),
    }
}

/// Spawns a thread on core `core` of the caller's runtime.
///
/// # Panics
///
/// With the message of the [`SpawnError`] (for example, no such core); use
/// [`Builder::core`] to get the error instead.
///
/// # Examples
///
/// ```
/// let rt = spindle::Runtime::builder().cores(2).build().unwrap();
/// rt.block_on(|| {
///     let h = spindle::spawn_on(1, || spindle::current_core());
///     assert_eq!(h.join().unwrap(), Some(1));
/// });
/// ```
pub fn spawn_on<F, T>(core: usize, f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match Builder::new().core(core).spawn(f) {
        Ok(h) => h,
        Err(e) => panic!("spindle::spawn_on failed: {e}"),
    }
}

/// Spawns a maintenance thread: it runs on the service core (the hypercore) only, so
/// its work never takes time from the worker cores; see [`Builder::maintenance`].
///
/// # Panics
///
/// Like [`spawn`]; use [`Builder::spawn`] for a `Result`.
///
/// # Examples
///
/// ```
/// spindle::run(|| {
///     let h = spindle::spawn_maintenance(|| 6 * 7);
///     assert_eq!(h.join().unwrap(), 42);
/// });
/// ```
pub fn spawn_maintenance<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match Builder::new().maintenance().spawn(f) {
        Ok(h) => h,
        Err(e) => panic!("{e}"),
    }
}

/// The id of the core the running spindle thread is on, or `None` on an OS thread.
pub fn current_core() -> Option<usize> {
    // SAFETY: the running thread's core is alive while it runs.
    current_tcb().map(|me| unsafe { crate::sched::Core::of(me).id })
}

/// Moves the running thread to core `core` of its runtime: it continues there, after
/// the destination takes it in from its exchange slot. Moving to the current core does
/// nothing. The thread takes the destination's core type.
///
/// # Errors
///
/// [`CoreError::NotInRuntime`] on an OS thread, [`CoreError::NoSuchCore`] if the core
/// is not running. The thread stays where it is then.
///
/// # Examples
///
/// ```
/// let rt = spindle::Runtime::builder().cores(2).build().unwrap();
/// rt.block_on(|| {
///     spindle::migrate_to(1).unwrap();
///     assert_eq!(spindle::current_core(), Some(1));
///     assert!(spindle::migrate_to(99).is_err());
/// });
/// ```
pub fn migrate_to(core: usize) -> Result<(), CoreError> {
    let me = current_tcb().ok_or_else(|| {
        if crate::fork::forked() {
            CoreError::Forked
        } else {
            CoreError::NotInRuntime
        }
    })?;
    // SAFETY: `me` is the running thread.
    let _g = unsafe { PreemptGuard::of(me) };
    // SAFETY: `me` runs on its core, which is alive; we are its OS thread.
    unsafe {
        let here = Core::of(me);
        let shared = here.set();
        let to = shared
            .active_core(core)
            .ok_or(CoreError::NoSuchCore { core })?;
        if let Some(hyper) = shared.hyper.filter(|&h| h == to.id || h == here.id) {
            return Err(CoreError::ServiceCore { core: hyper });
        }
        (*me).bound.set(true);
        if to.id == here.id {
            return Ok(());
        }
        let ty = to.ty.load(Ordering::Relaxed) as u8;
        if ty != (*me).ty {
            here.count_typed((*me).ty, -1);
            here.count_typed(ty, 1);
            (*me).ty = ty;
        }
        (*me).set_state(State::Runnable);
        here.schedule(me, After::Migrate(core));
    }
    Ok(())
}

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
    /// [`preempt_point`]) — or asynchronously if it is [`preemptible`](Self::preemptible).
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

    /// Spawns the thread in the runtime of `handle`, from any thread.
    ///
    /// # Errors
    ///
    /// As for [`Builder::spawn`], and [`SpawnError::ShutDown`].
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = spindle::Runtime::builder().cores(1).build().unwrap();
    /// // From the OS thread that built the runtime:
    /// let h = spindle::Builder::new().name("bg").spawn_in(rt.handle(), || 5).unwrap();
    /// assert_eq!(h.join().unwrap(), 5);
    /// ```
    pub fn spawn_in<F, T>(self, handle: &Handle, f: F) -> Result<JoinHandle<T>, SpawnError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let opts = self.opts()?;
        // SAFETY: `F` and `T` are 'static and Send.
        unsafe { spawn_unchecked(handle.shared(), f, opts) }
    }
}

fn validate_stack_size(size: usize) -> Result<(), SpawnError> {
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

/// Join slots for spawns by OS threads that are not cores (their threads are built
/// lazily: the stack block comes from the target core's pool).
static FOREIGN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Spawns a thread into `shared`: picks its core, builds it from the caller's core's
/// pool (or a process-wide one for OS threads), and hands it over — onto the local run
/// queue, through the exchange slot, or through the target core's injection queue.
///
/// # Safety
///
/// If `F` or `T` are not `'static` or not `Send`, the caller must guarantee that the
/// thread finishes (it is joined) before anything they borrow goes away, and that
/// sending them to another OS thread is sound.
pub(crate) unsafe fn spawn_unchecked<F, T>(
    shared: &Shared,
    f: F,
    opts: SpawnOpts,
) -> Result<JoinHandle<T>, SpawnError>
where
    F: FnOnce() -> T,
{
    let _g = PreemptGuard::new();
    if shared.shutdown.load(Ordering::Acquire) || crate::fork::forked() {
        return Err(SpawnError::not_running());
    }
    // The caller's core, if it is a thread of this runtime.
    let here =
        CoreCtx::current().filter(|(ctx, _)| std::ptr::eq(ctx.core().set_ptr(), &shared.set));
    let level = level_of(opts.priority);
    // SAFETY: `me` is the running thread; its type is its own to read.
    let caller = here
        .as_ref()
        .map(|(ctx, me)| (ctx.core().id, unsafe { (**me).ty } as usize));
    let (ty, dst) = shared.resolve(&opts.target, level, caller)?;
    let stack_size = opts.stack_size.unwrap_or(shared.default_stack);
    let on_core = here.as_ref().map(|(ctx, _)| ctx.core().id);
    let (index, generation) = match here {
        Some((mut ctx, _)) => {
            let core = ctx.core();
            // A lazy spawn for another core leaves only a heap record here: its
            // stack is taken and first touched by the core that runs it.
            let (t, index, generation) = if dst == core.id || !opts.lazy {
                let (pool, free) = ctx.pool_and_free_slots();
                // SAFETY: the pool and free list are our core's, for this call.
                unsafe { build(pool, free, shared, f, &opts, stack_size, ty)? }
            } else {
                // SAFETY: as above, for the free list.
                unsafe { build_lazy(ctx.free_slots(), shared, f, &opts, stack_size, ty)? }
            };
            core.count_typed(ty as u8, 1);
            ctx.note_spawned();
            // SAFETY: `t` is a fresh embryo that nobody else knows, on no list.
            unsafe {
                if dst == core.id {
                    ctx.push_here(t);
                } else {
                    (*t).set_core(shared.cores[dst].owner());
                    ctx.send(dst, t);
                }
            }
            (index, generation)
        }
        None => {
            let (t, index, generation) = {
                let mut slots = FOREIGN.lock().unwrap_or_else(|e| e.into_inner());
                // SAFETY: the process-wide slot list is ours under the lock.
                unsafe { build_lazy(&mut slots, shared, f, &opts, stack_size, ty)? }
            };
            shared.foreign_typed[ty].fetch_add(1, Ordering::Relaxed);
            // SAFETY: `t` is a fresh embryo; its core is set by the core taking it in.
            unsafe { (*t).set_core(shared.cores[dst].owner()) };
            let mut to = dst;
            let mut t = t;
            while let Err(back) = shared.cores[to].inject(t) {
                t = back;
                to = shared.place_woken(ty as u8, None);
                std::thread::yield_now();
            }
            (index, generation)
        }
    };
    // The handle is made from what we know, not from the TCB: on another core the
    // thread may already have run and exited.
    let thread = Thread {
        id: ThreadId { index, generation },
        name: opts.name.clone(),
    };
    if on_core == Some(dst) {
        preempt_for(level);
    }
    Ok(JoinHandle {
        thread,
        variant: None,
        _result: PhantomData,
    })
}

/// Builds a thread: a stack block from `pool`, a join slot, the TCB at the block top
/// and the closure beneath it, state `Embryo`. The caller hands it to a core. The
/// context is built later, by the core, when it first runs the thread.
///
/// # Safety
///
/// `pool` and `free_slots` are the caller's own for the call.
#[allow(clippy::too_many_arguments)]
unsafe fn build<F, T>(
    pool: &mut StackPool,
    free_slots: &mut Vec<u32>,
    shared: &Shared,
    f: F,
    opts: &SpawnOpts,
    stack_size: usize,
    ty: usize,
) -> Result<(*mut Tcb, u32, u32), SpawnError>
where
    F: FnOnce() -> T,
{
    let class = stack::class_of(stack_size);
    let base = pool
        .get(class)
        .map_err(|e| SpawnError::from_stack(stack_size, e))?;
    let Some(index) = table().alloc(free_slots) else {
        pool.put(class, base);
        return Err(SpawnError::OutOfMemory {
            stack_size,
            errno: 0,
        });
    };
    let slot = table().get(index).expect("allocated slot");
    let generation = slot.word.generation();
    let tcb = Tcb::at_top_of(base, stack_size);
    // SAFETY: the block is ours (from the pool) and its top page is writable; the slot is ours (freshly allocated) and not yet visible to anyone.
    unsafe {
        tcb.write(Tcb::init(tcb_init::<F, T>(
            slot, index, generation, opts, class, ty, shared,
        )));
        store_closure(tcb, f);
        publish_slot::<T>(tcb, slot, shared);
    }
    Ok((tcb, index, generation))
}

/// The TCB fields a spawn knows.
fn tcb_init<F: FnOnce() -> T, T>(
    slot: &'static Slot,
    index: u32,
    generation: u32,
    opts: &SpawnOpts,
    class: usize,
    ty: usize,
    shared: &Shared,
) -> TcbInit {
    let preemptible = opts
        .preemptible
        .unwrap_or(shared.clock.default_preemptible());
    if preemptible {
        // Where it may be interrupted is known before it first runs.
        crate::preempt::code::ensure();
    }
    TcbInit {
        run_word: shared.clock.run_word(opts.time_slice, opts.preemptible),
        preemptible,
        slot,
        index,
        generation,
        level: level_of(opts.priority),
        class: class as u8,
        ty: ty as u8,
        entry: thread_entry::<F, T>,
        name: opts.name.clone(),
        vtable: &VtableOf::<F, T>::VTABLE,
        main: opts.main,
        bound: matches!(opts.target, Target::Core(_)),
    }
}

/// Stores the entry closure beneath the TCB at the top of its block (boxed if large)
/// and sets the initial stack top below it.
///
/// # Safety
///
/// `tcb` is at the top of a block that is ours, with room for the closure below it.
unsafe fn store_closure<F>(tcb: *mut Tcb, f: F) {
    // SAFETY: per the contract, the memory below the TCB is ours.
    unsafe {
        let closure = if inline_closure::<F>() {
            let at = (tcb as usize - size_of::<F>()) & !(align_of::<F>() - 1);
            (at as *mut F).write(f);
            at
        } else {
            Box::into_raw(Box::new(f)) as usize
        };
        (*tcb).closure = closure as *mut u8;
        (*tcb).stack_top = closure.min(tcb as usize) & !(arch::STACK_ALIGNMENT - 1);
    }
}

/// Makes a new embryo `tcb` known through its slot (for a result type `T`).
///
/// # Safety
///
/// `slot` is freshly allocated for `tcb` and not yet visible to anyone.
unsafe fn publish_slot<T>(tcb: *mut Tcb, slot: &Slot, shared: &Shared) {
    // SAFETY: per the contract the slot is ours.
    unsafe {
        *slot.tcb.get() = tcb;
        slot.level.store((*tcb).level, Ordering::Relaxed);
        *slot.drop_result.get() = Some(slot::drop_result::<std::thread::Result<T>>);
        // Relaxed: read by this runtime's shutdown scan after its cores stopped.
        slot.owner
            .store(shared as *const Shared as usize, Ordering::Relaxed);
        slot.word.activate();
        (*tcb).set_state(State::Embryo);
    }
}

/// A lazily created thread before its first run: the TCB (arch-independent part:
/// entry, attributes, state `Embryo`) and the closure with its argument, on the heap.
#[repr(C)]
struct LazyEmbryo<F> {
    tcb: Tcb,
    f: F,
}

/// Builds a thread lazily: a join slot and a heap record holding the TCB and the
/// closure, state `Embryo`, no stack block. The core that first picks it takes a
/// block from its own pool and moves the record there ([`materialize`]), so the
/// stack is first touched by the CPU that runs the thread.
///
/// # Safety
///
/// `free_slots` is the caller's own for the call.
unsafe fn build_lazy<F, T>(
    free_slots: &mut Vec<u32>,
    shared: &Shared,
    f: F,
    opts: &SpawnOpts,
    stack_size: usize,
    ty: usize,
) -> Result<(*mut Tcb, u32, u32), SpawnError>
where
    F: FnOnce() -> T,
{
    let class = stack::class_of(stack_size);
    let Some(index) = table().alloc(free_slots) else {
        return Err(SpawnError::OutOfMemory {
            stack_size,
            errno: 0,
        });
    };
    let slot = table().get(index).expect("allocated slot");
    let generation = slot.word.generation();
    let rec = Box::into_raw(Box::new(LazyEmbryo {
        tcb: Tcb::init(tcb_init::<F, T>(
            slot, index, generation, opts, class, ty, shared,
        )),
        f,
    }));
    let tcb = rec.cast::<Tcb>();
    // SAFETY: the record is ours (just allocated) and `repr(C)` puts the TCB first; the slot is fresh.
    unsafe {
        (*tcb).lazy = true;
        publish_slot::<T>(tcb, slot, shared);
    }
    Ok((tcb, index, generation))
}

/// Moves a lazy embryo record onto a block of `pool`: the TCB to the block top, the
/// closure beneath it; frees the record. Returns the TCB's new address, or why no
/// block could be had (the record untouched).
///
/// # Safety
///
/// `rec` is a lazy embryo record built by `build_lazy::<F, _>`, owned by the caller.
unsafe fn materialize_as<F>(
    rec: *mut Tcb,
    pool: &mut StackPool,
) -> Result<*mut Tcb, stack::StackError> {
    let rec = rec.cast::<LazyEmbryo<F>>();
    // SAFETY: per the contract the record is ours; we move its parts out exactly once and free it without dropping them.
    unsafe {
        let class = (*rec).tcb.class as usize;
        let base = pool.get(class)?;
        let tcb = Tcb::at_top_of(base, stack::class_size(class));
        std::ptr::copy_nonoverlapping(&raw const (*rec).tcb, tcb, 1);
        (*tcb).lazy = false;
        store_closure(tcb, std::ptr::read(&raw const (*rec).f));
        *(*tcb).slot().tcb.get() = tcb;
        std::alloc::dealloc(rec.cast(), std::alloc::Layout::new::<LazyEmbryo<F>>());
        Ok(tcb)
    }
}

/// Drops the closure of a lazy embryo record that never ran and frees the record.
///
/// # Safety
///
/// `rec` is a lazy embryo record built by `build_lazy::<F, _>`, owned by the caller,
/// whose name was already dropped; it is never used again.
unsafe fn free_record<F>(rec: *mut Tcb) {
    let rec = rec.cast::<LazyEmbryo<F>>();
    // SAFETY: per the contract; the TCB part holds nothing left to drop.
    unsafe {
        std::ptr::drop_in_place(&raw mut (*rec).f);
        std::alloc::dealloc(rec.cast(), std::alloc::Layout::new::<LazyEmbryo<F>>());
    }
}

const fn inline_closure<F>() -> bool {
    size_of::<F>() <= INLINE_CLOSURE && align_of::<F>() <= 64
}

struct VtableOf<F, T>(PhantomData<(F, T)>);

impl<F: FnOnce() -> T, T> VtableOf<F, T> {
    const VTABLE: ThreadVtable = ThreadVtable {
        drop_closure: drop_closure::<F>,
        write_abandoned: write_abandoned::<T>,
        write_error: write_error::<T>,
        materialize: materialize_as::<F>,
        free_record: free_record::<F>,
    };
}

/// # Safety
///
/// `p` is the closure pointer of a thread that never ran.
unsafe fn drop_closure<F>(p: *mut u8) {
    // SAFETY: the closure was stored at `p` by spawn_raw and never moved out.
    unsafe {
        if inline_closure::<F>() {
            std::ptr::drop_in_place(p.cast::<F>());
        } else {
            drop(Box::from_raw(p.cast::<F>()));
        }
    }
}

/// # Safety
///
/// `buf` is the result buffer of a thread that never wrote it.
unsafe fn write_abandoned<T>(buf: *mut ResultBuf) {
    let r: std::thread::Result<T> = Err(crate::runtime::abandoned_payload());
    // SAFETY: the buffer is empty (the thread never finished).
    unsafe { slot::write_result(buf, r) };
}

/// # Safety
///
/// `buf` is the result buffer of a thread that never wrote it.
unsafe fn write_error<T>(buf: *mut ResultBuf, payload: Box<dyn std::any::Any + Send>) {
    let r: std::thread::Result<T> = Err(payload);
    // SAFETY: the buffer is empty (the thread never ran).
    unsafe { slot::write_result(buf, r) };
}

/// First code a thread runs (called by `arch`'s thread start with the TCB address).
///
/// # Safety
///
/// Only called through a context built by `init_context` for a TCB made by `spawn_raw`
/// with these `F` and `T`.
unsafe extern "C" fn thread_entry<F: FnOnce() -> T, T>(arg: usize) -> ! {
    let me = arg as *mut Tcb;
    // SAFETY: we were just switched into on our core: finish that switch first; then move the closure out of where spawn_raw stored it (exactly once).
    let f: F = unsafe {
        crate::sched::Core::of(me).finish_switch();
        // Out of the runtime: asynchronous preemption may start (the count starts
        // at 1).
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        (*me).preempt_count.store(0, Ordering::Relaxed);
        let p = (*me).closure.cast::<F>();
        if inline_closure::<F>() {
            p.read()
        } else {
            *Box::from_raw(p)
        }
    };
    let result = catch_unwind(AssertUnwindSafe(|| {
        // Frames below this point are the thread's own (`preempt::code`).
        // SAFETY: our own TCB, while we run.
        unsafe { (*me).user_base.set(arch::stack_pointer()) };
        f()
    }))
    .map_err(|p| {
        if p.is::<Abandoned>() {
            crate::runtime::abandoned_payload()
        } else {
            p
        }
    });
    // SAFETY: our slot's result buffer is empty until now and only we write it.
    unsafe { slot::write_result((*me).slot().result.get(), result) };
    // SAFETY: `me` is the running thread, on its own stack.
    unsafe { exit(me) }
}

/// Publishes the result, wakes a joiner, gives up the slot, and switches away for good.
///
/// # Safety
///
/// `me` is the running thread, its result written.
unsafe fn exit(me: *mut Tcb) -> ! {
    // SAFETY: we are `me`; the slot is ours until `finish` sets F_DONE.
    unsafe {
        // Inside the runtime for good: never preempted again (the name is dropped
        // here, and the signal handler reads it when the count is zero).
        std::mem::forget(PreemptGuard::of(me));
        let slot = (*me).slot();
        std::ptr::drop_in_place(&raw mut (*me).name);
        let (mut ctx, _) = CoreCtx::current().expect("an exiting thread runs on its core");
        retire(slot, (*me).index, FreeTo::Core(ctx.free_slots()));
        (*me).set_state(State::Zombie);
        Core::of(me).schedule(me, After::Exit);
    }
    // A zombie is never switched back into.
    std::process::abort()
}

/// An owned permission to join a thread. Dropping it detaches the thread.
pub struct JoinHandle<T> {
    thread: Thread,
    /// The variant a named spawn picked.
    pub(crate) variant: Option<&'static str>,
    _result: PhantomData<T>,
}

// SAFETY: the handle only moves a `T` out of the slot (after the thread finished), so it is as Send as `T`; the Thread inside is Send + Sync.
unsafe impl<T: Send> Send for JoinHandle<T> {}
// SAFETY: `&JoinHandle` gives access to the Thread and `is_finished` only.
unsafe impl<T> Sync for JoinHandle<T> {}

impl<T> JoinHandle<T> {
    /// The thread's handle.
    pub fn thread(&self) -> &Thread {
        &self.thread
    }

    /// The variant of the named thread that runs, for a handle from
    /// [`spawn_named`](crate::spawn_named) (`None` for a closure spawn).
    pub fn variant(&self) -> Option<&'static str> {
        self.variant
    }

    /// Whether the thread has finished (its result is ready).
    pub fn is_finished(&self) -> bool {
        self.thread.slot().word.flags() & F_DONE != 0
    }

    /// Waits for the thread to finish and returns its result, or the panic payload if
    /// it panicked. On a spindle thread the caller sleeps and its core runs others; on
    /// an OS thread the OS thread blocks.
    ///
    /// In the child of a `fork`, returns at once with an `Err` whose payload is the
    /// message "runtime not usable after fork..." (a `&'static str`): the thread lives
    /// in the parent.
    ///
    /// # Panics
    ///
    /// If the thread joins itself (it would wait for ever; `std::thread` panics too,
    /// on the OS's `EDEADLK`).
    pub fn join(self) -> std::thread::Result<T> {
        if crate::fork::forked() {
            std::mem::forget(self);
            return Err(Box::new(crate::error::FORKED));
        }
        if let Some(me) = current_tcb() {
            // SAFETY: reading the running thread's own id.
            let (index, generation) = unsafe { ((*me).index, (*me).generation) };
            if (index, generation) == (self.thread.id.index, self.thread.id.generation) {
                panic!(
                    "spindle: thread {} tried to join itself: it would wait for ever (join \
                     another thread's handle, or drop your own to detach)",
                    self.thread.id
                );
            }
        }
        let _g = PreemptGuard::new();
        let this = ManuallyDrop::new(self);
        let slot = this.thread.slot();
        if slot.word.flags() & F_DONE == 0 {
            wait_done(slot);
        }
        // SAFETY: F_DONE was observed with acquire: the result is written; the handle is its only reader and the slot cannot be freed before F_HANDLE_GONE.
        let r = unsafe { slot::read_result::<std::thread::Result<T>>(slot.result.get()) };
        // SAFETY: the thread is done and we took its result: we are the last owner.
        unsafe { slot.release(F_DONE | F_HANDLE_GONE | F_JOINED) };
        crate::sched::retire::free_slot(this.thread.id.index);
        // SAFETY: `this` is never used again.
        drop(unsafe { std::ptr::read(&this.thread) });
        r
    }
}

/// Registers the caller as the slot's joiner and sleeps until the thread is done.
fn wait_done(slot: &Slot) {
    let me = current_tcb();
    match me {
        // SAFETY: `me` is the running thread.
        Some(t) => unsafe {
            // Relaxed: published by the release in the F_JOINER fetch_or below.
            slot.joiner
                .store(joiner_word((*t).index, (*t).generation), Ordering::Relaxed);
        },
        None => {
            *slot.os_joiner.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::thread::current())
        }
    }
    if slot.word.set(F_JOINER) & F_DONE != 0 {
        // The thread finished first and did not see us: withdraw the record.
        slot.joiner.store(0, Ordering::Relaxed);
        if me.is_none() {
            slot.os_joiner
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
        }
        return;
    }
    while slot.word.flags() & F_DONE == 0 {
        match me {
            Some(t) => block(t, Channel::Internal),
            None => std::thread::park(),
        }
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        let _g = PreemptGuard::new();
        let slot = self.thread.slot();
        let old = slot.word.set(F_HANDLE_GONE);
        if old & F_DONE != 0 {
            // SAFETY: the thread is done, so we let go last.
            unsafe { slot.release(old | F_HANDLE_GONE) };
            crate::sched::retire::free_slot(self.thread.id.index);
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("thread", &self.thread)
            .field("variant", &self.variant)
            .finish()
    }
}
