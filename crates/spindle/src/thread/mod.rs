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

pub(crate) mod slot;
pub(crate) mod tcb;

use std::fmt;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::arch;
use crate::error::SpawnError;
use crate::sched::{self, After, Core};
use crate::stack::{self, DEFAULT_STACK_SIZE, MAX_STACK_SIZE, MIN_STACK_SIZE};
use slot::{
    Block, Channel, F_DONE, F_HANDLE_GONE, F_JOINED, F_JOINER, Joiner, ResultBuf, Slot, Wake,
    joiner_word, table,
};
use tcb::{Name, State, Tcb, TcbInit, ThreadVtable};

/// The most urgent priority.
pub const MAX_PRIORITY: u8 = 63;
/// The priority of a thread whose builder names none.
pub const DEFAULT_PRIORITY: u8 = 32;

/// Closures up to this size are stored in the thread's own stack block (no heap
/// allocation); larger ones are boxed.
const INLINE_CLOSURE: usize = 1024;

/// The TCB of the running spindle thread, found by masking the stack pointer; `None`
/// on an OS thread's own stack.
#[inline(always)]
pub(crate) fn current_tcb() -> Option<*mut Tcb> {
    let (base, size) = stack::block_of(arch::stack_pointer())?;
    Some(Tcb::at_top_of(base, size))
}

/// A thread's identifier: slot index and generation. Unique among the live threads of
/// a runtime; an id of a finished and joined thread is never confused with a later
/// thread that reuses its slot, because the generation differs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ThreadId {
    index: u32,
    generation: u32,
}

impl ThreadId {
    /// The id as one number: generation in the high 32 bits, slot index in the low 32.
    pub fn as_u64(self) -> u64 {
        (self.generation as u64) << 32 | self.index as u64
    }

    /// Slot index.
    pub fn index(self) -> u32 {
        self.index
    }

    /// Generation of the slot.
    pub fn generation(self) -> u32 {
        self.generation
    }
}

impl fmt::Debug for ThreadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ThreadId({}.{})", self.index, self.generation)
    }
}

impl fmt::Display for ThreadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_u64())
    }
}

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
        if self.slot().word.wake(Channel::Park, self.id.generation) == Wake::MustEnqueue {
            // SAFETY: we won the wake: the thread is alive and asleep.
            let t = unsafe { *self.slot().tcb.get() };
            // SAFETY: as above.
            unsafe { sched::enqueue_woken(t) };
            // SAFETY: `t` was just made runnable and is not freed before it runs.
            preempt_for(unsafe { (*t).level });
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

/// Lets the core run other threads of the same or a more urgent priority; returns at
/// once if there are none. On an OS thread, calls `std::thread::yield_now`.
pub fn yield_now() {
    let Some(me) = current_tcb() else {
        return std::thread::yield_now();
    };
    // SAFETY: `me` is the running thread on its core, on its own stack.
    unsafe {
        (*me).set_state(State::Runnable);
        (*(*me).core.get()).schedule(me, After::Requeue);
    }
}

/// Runs a more urgent thread that was just made runnable on this core, if `level` is
/// more urgent than the caller's.
#[inline]
fn preempt_for(level: u8) {
    if let Some(me) = current_tcb() {
        // SAFETY: reading the running thread's own level.
        if level < unsafe { (*me).level } {
            yield_now();
        }
    }
}

/// Sleeps the running thread on `chan` until woken (returns at once if a token is
/// pending).
fn block(me: *mut Tcb, chan: Channel) {
    // SAFETY: `me` is the running thread; its slot is alive while it runs.
    let slot = unsafe { (*me).slot() };
    if slot.word.block(chan) == Block::MustSleep {
        // SAFETY: we run on `me`'s stack and set the state schedule expects.
        unsafe {
            (*me).set_state(State::Sleeping);
            (*(*me).core.get()).schedule(me, After::Sleep);
        }
    }
}

/// A spindle thread that may block in [`block_internal`], as its waker names it.
///
/// Used by the runtime's own blocking types (`sync`, `join`): they block on the
/// thread's internal channel, so they never consume or leave a user's park token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Waiter {
    index: u32,
    generation: u32,
}

impl Waiter {
    /// The running spindle thread, or `None` on an OS thread.
    #[inline]
    pub(crate) fn current() -> Option<Waiter> {
        // SAFETY: the running thread's TCB is valid while it runs.
        current_tcb().map(|t| unsafe {
            Waiter {
                index: (*t).index,
                generation: (*t).generation,
            }
        })
    }

    /// Wakes the waiter if it is blocked in [`block_internal`]; otherwise leaves a
    /// token so that its next `block_internal` returns at once. Does nothing if the
    /// thread has finished. Callable from any context (spindle thread or OS thread).
    pub(crate) fn wake(self) {
        if let Some(slot) = table().get(self.index) {
            sched::wake(slot, self.generation, Channel::Internal);
        }
    }
}

/// Blocks the running spindle thread on its internal channel until a
/// [`Waiter::wake`], or until `deadline`. May return spuriously (a stale token or
/// timer): callers re-check their condition in a loop.
///
/// # Panics
///
/// On an OS thread (callers block OS threads themselves).
pub(crate) fn block_internal(deadline: Option<Instant>) {
    let me = current_tcb().expect("block_internal called on an OS thread");
    if let Some(d) = deadline {
        if d <= Instant::now() {
            return;
        }
        // SAFETY: `me` runs on its core; the timer is core-local.
        unsafe {
            (*(*me).core.get()).add_timer(d, (*me).index, (*me).generation, Channel::Internal)
        };
    }
    block(me, Channel::Internal);
}

/// Blocks the running thread until its park token is available, then consumes it.
/// May also return spuriously, like `std::thread::park`. On an OS thread, calls
/// `std::thread::park`.
///
/// # Examples
///
/// ```
/// spindle::run(|| {
///     let main = spindle::current();
///     let h = spindle::spawn(move || main.unpark());
///     spindle::park(); // returns once the token is there
///     h.join().unwrap();
/// });
/// ```
pub fn park() {
    match current_tcb() {
        Some(me) => block(me, Channel::Park),
        None => std::thread::park(),
    }
}

/// Like [`park`], but returns after `dur` at the latest.
pub fn park_timeout(dur: Duration) {
    let Some(me) = current_tcb() else {
        return std::thread::park_timeout(dur);
    };
    if let Some(deadline) = Instant::now().checked_add(dur) {
        // SAFETY: `me` runs on its core; the timer is core-local.
        unsafe {
            (*(*me).core.get()).add_timer(deadline, (*me).index, (*me).generation, Channel::Park)
        };
    }
    block(me, Channel::Park);
}

/// Puts the running thread to sleep for at least `dur`; its core runs other threads
/// meanwhile. On an OS thread, calls `std::thread::sleep`.
pub fn sleep(dur: Duration) {
    let Some(me) = current_tcb() else {
        return std::thread::sleep(dur);
    };
    let Some(deadline) = Instant::now().checked_add(dur) else {
        // Beyond the clock's range: sleep for good, as a very long sleep would.
        loop {
            block(me, Channel::Internal);
        }
    };
    while Instant::now() < deadline {
        // SAFETY: `me` runs on its core; the timer is core-local.
        unsafe {
            (*(*me).core.get()).add_timer(
                deadline,
                (*me).index,
                (*me).generation,
                Channel::Internal,
            )
        };
        block(me, Channel::Internal);
    }
}

/// Spawns a thread on the current core and returns its handle.
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

/// Thread attributes: name, stack size, priority.
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
}

impl Builder {
    /// A builder with the defaults: unnamed, 64 KiB stack, priority 32.
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

    fn opts(&self) -> Result<SpawnOpts, SpawnError> {
        let stack_size = self.stack_size.unwrap_or(DEFAULT_STACK_SIZE);
        validate_stack_size(stack_size)?;
        let priority = self.priority.unwrap_or(DEFAULT_PRIORITY);
        if priority > MAX_PRIORITY {
            return Err(SpawnError::Priority {
                requested: priority,
            });
        }
        Ok(SpawnOpts {
            name: self.name.as_deref().map(|n| Name::Shared(Arc::from(n))),
            stack_size,
            priority,
            main: false,
        })
    }

    /// Spawns the thread on the current core.
    ///
    /// # Errors
    ///
    /// [`SpawnError`] when an attribute is out of range, memory runs out, or the caller
    /// is not in a runtime. The closure is dropped and nothing else changes.
    pub fn spawn<F, T>(self, f: F) -> Result<JoinHandle<T>, SpawnError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let opts = self.opts()?;
        let me = current_tcb().ok_or(SpawnError::NoRuntime)?;
        // SAFETY: `me` runs on its core, so the core is alive and we are its OS thread.
        let core = unsafe { &*(*me).core.get() };
        let level = level_of(opts.priority);
        // SAFETY: we run on `core`'s OS thread; `F` and `T` are 'static and Send.
        let (index, generation) = unsafe { spawn_raw(core, f, opts)? };
        let slot = table().get(index).expect("spawned slot");
        // SAFETY: the slot's TCB was written by spawn_raw and the thread has not run.
        let thread = Thread::of(unsafe { *slot.tcb.get() });
        debug_assert_eq!(thread.id, ThreadId { index, generation });
        preempt_for(level);
        Ok(JoinHandle {
            thread,
            _result: PhantomData,
        })
    }
}

fn validate_stack_size(size: usize) -> Result<(), SpawnError> {
    if size.is_power_of_two() && (MIN_STACK_SIZE..=MAX_STACK_SIZE).contains(&size) {
        Ok(())
    } else {
        Err(SpawnError::StackSize { requested: size })
    }
}

/// Run-queue level of a priority: level 0 is the most urgent.
fn level_of(priority: u8) -> u8 {
    MAX_PRIORITY - priority
}

/// Validated spawn attributes.
pub(crate) struct SpawnOpts {
    pub(crate) name: Option<Name>,
    pub(crate) stack_size: usize,
    pub(crate) priority: u8,
    pub(crate) main: bool,
}

/// Creates a thread on `core`: a stack block from the core's pool, a join slot, the
/// TCB at the block top and the closure beneath it, state `Embryo`, on the run queue.
/// The context is built later, by the core, when it first runs the thread.
///
/// # Safety
///
/// Must run on `core`'s OS thread (a thread of the core, or its scheduler context).
/// If `F` or `T` are not `'static` or not `Send`, the caller must guarantee the thread
/// finishes, on this OS thread, before anything they borrow goes away.
pub(crate) unsafe fn spawn_raw<F, T>(
    core: &Core,
    f: F,
    opts: SpawnOpts,
) -> Result<(u32, u32), SpawnError>
where
    F: FnOnce() -> T,
{
    let l = core.local();
    let class = stack::class_of(opts.stack_size);
    let oom = |errno| SpawnError::OutOfMemory {
        stack_size: opts.stack_size,
        errno,
    };
    // SAFETY: we are the core's OS thread (caller); the references are brief.
    let base = unsafe { (*l).pool.get(class) }.map_err(|e| oom(e.raw_os_error().unwrap_or(0)))?;
    // SAFETY: we are the core's OS thread (caller) and the free list is borrowed briefly.
    let Some(index) = table().alloc(unsafe { &mut (*l).free_slots }) else {
        // SAFETY: as above; the block was never used.
        unsafe { (*l).pool.put(class, base) };
        return Err(oom(0));
    };
    let slot = table().get(index).expect("allocated slot");
    let generation = slot.word.generation();
    let tcb = Tcb::at_top_of(base, opts.stack_size);
    // SAFETY: the block is ours (from the pool) and its top page is writable; the slot
    // is ours (freshly allocated) and not yet visible to anyone.
    unsafe {
        tcb.write(Tcb::init(TcbInit {
            slot,
            index,
            generation,
            level: level_of(opts.priority),
            class: class as u8,
            entry: thread_entry::<F, T>,
            name: opts.name,
            vtable: &VtableOf::<F, T>::VTABLE,
            main: opts.main,
        }));
        let closure = if inline_closure::<F>() {
            let at = (tcb as usize - size_of::<F>()) & !(align_of::<F>() - 1);
            (at as *mut F).write(f);
            at
        } else {
            Box::into_raw(Box::new(f)) as usize
        };
        (*tcb).closure = closure as *mut u8;
        (*tcb).stack_top = closure.min(tcb as usize) & !(arch::STACK_ALIGNMENT - 1);
        (*tcb).core.set(core);
        *slot.tcb.get() = tcb;
        *slot.drop_result.get() = Some(slot::drop_result::<std::thread::Result<T>>);
        // Relaxed: read only by this runtime's shutdown scan, on this OS thread.
        slot.owner
            .store(core.shared_ptr() as usize, Ordering::Relaxed);
        slot.word.activate();
        (*tcb).set_state(State::Embryo);
        (*l).runq.push(tcb);
        (*l).live += 1;
        (*l).stats.spawned += 1;
    }
    Ok((index, generation))
}

const fn inline_closure<F>() -> bool {
    size_of::<F>() <= INLINE_CLOSURE && align_of::<F>() <= 64
}

struct VtableOf<F, T>(PhantomData<(F, T)>);

impl<F: FnOnce() -> T, T> VtableOf<F, T> {
    const VTABLE: ThreadVtable = ThreadVtable {
        drop_closure: drop_closure::<F>,
        write_abandoned: write_abandoned::<T>,
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

/// First code a thread runs (called by `arch`'s thread start with the TCB address).
///
/// # Safety
///
/// Only called through a context built by `init_context` for a TCB made by `spawn_raw`
/// with these `F` and `T`.
unsafe extern "C" fn thread_entry<F: FnOnce() -> T, T>(arg: usize) -> ! {
    let me = arg as *mut Tcb;
    // SAFETY: we were just switched into on our core: finish that switch first; then
    // move the closure out of where spawn_raw stored it (exactly once).
    let f: F = unsafe {
        (*(*me).core.get()).finish_switch();
        let p = (*me).closure.cast::<F>();
        if inline_closure::<F>() {
            p.read()
        } else {
            *Box::from_raw(p)
        }
    };
    let result = catch_unwind(AssertUnwindSafe(f));
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
        let slot = (*me).slot();
        std::ptr::drop_in_place(&raw mut (*me).name);
        let core = &*(*me).core.get();
        let (old, joiner) = slot.finish();
        if old & F_HANDLE_GONE != 0 {
            // Detached: we let go last.
            slot.release(old | F_DONE);
            (*core.local()).free_slots.push((*me).index);
        }
        wake(joiner);
        (*me).set_state(State::Zombie);
        if (*me).main {
            core.schedule_to_scheduler(me, After::Exit);
        } else {
            core.schedule(me, After::Exit);
        }
    }
    // A zombie is never switched back into.
    std::process::abort()
}

/// An owned permission to join a thread. Dropping it detaches the thread.
pub struct JoinHandle<T> {
    thread: Thread,
    _result: PhantomData<T>,
}

// SAFETY: the handle only moves a `T` out of the slot (after the thread finished), so
// it is as Send as `T`; the Thread inside is Send + Sync.
unsafe impl<T: Send> Send for JoinHandle<T> {}
// SAFETY: `&JoinHandle` gives access to the Thread and `is_finished` only.
unsafe impl<T> Sync for JoinHandle<T> {}

impl<T> JoinHandle<T> {
    /// The thread's handle.
    pub fn thread(&self) -> &Thread {
        &self.thread
    }

    /// Whether the thread has finished (its result is ready).
    pub fn is_finished(&self) -> bool {
        self.thread.slot().word.flags() & F_DONE != 0
    }

    /// Waits for the thread to finish and returns its result, or the panic payload if
    /// it panicked. On a spindle thread the caller sleeps and its core runs others; on
    /// an OS thread the OS thread blocks.
    pub fn join(self) -> std::thread::Result<T> {
        let this = ManuallyDrop::new(self);
        let slot = this.thread.slot();
        if slot.word.flags() & F_DONE == 0 {
            wait_done(slot);
        }
        // SAFETY: F_DONE was observed with acquire: the result is written; the handle
        // is its only reader and the slot cannot be freed before F_HANDLE_GONE.
        let r = unsafe { slot::read_result::<std::thread::Result<T>>(slot.result.get()) };
        // SAFETY: the thread is done and we took its result: we are the last owner.
        unsafe { slot.release(F_DONE | F_HANDLE_GONE | F_JOINED) };
        table().free(this.thread.id.index);
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

/// Wakes a joiner taken by [`Slot::finish`].
pub(crate) fn wake(joiner: Joiner) {
    match joiner {
        Joiner::None => {}
        Joiner::Spindle(index, generation) => {
            if let Some(j) = table().get(index) {
                sched::wake(j, generation, Channel::Internal);
            }
        }
        Joiner::Os(t) => t.unpark(),
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        let slot = self.thread.slot();
        let old = slot.word.set(F_HANDLE_GONE);
        if old & F_DONE != 0 {
            // SAFETY: the thread is done, so we let go last.
            unsafe { slot.release(old | F_HANDLE_GONE) };
            table().free(self.thread.id.index);
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("thread", &self.thread)
            .finish()
    }
}
