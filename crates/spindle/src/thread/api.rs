//! The thread API of `std::thread`'s shape: [`Thread`] handles, [`current`],
//! [`spawn`], [`spawn_on`], [`spawn_maintenance`], [`current_core`], [`migrate_to`].

use std::fmt;
use std::sync::atomic::Ordering;

use crate::error::CoreError;
use crate::sched::guard::PreemptGuard;
use crate::sched::handoff::enqueue_woken;
use crate::sched::wait::preempt_for;
use crate::sched::{After, Core};
use crate::task::current::current_tcb;
use crate::task::id::ThreadId;
use crate::task::slot::{Channel, Slot, Wake, table};
use crate::task::tcb::{Name, State, Tcb};

use super::builder::Builder;
use super::join::JoinHandle;

/// A handle to a spindle thread: its id and name, and [`unpark`](Thread::unpark).
///
/// Handles stay valid after the thread ends: operations on a finished thread do
/// nothing.
#[derive(Clone)]
pub struct Thread {
    pub(super) id: ThreadId,
    pub(super) name: Option<Name>,
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

    pub(super) fn slot(&self) -> &'static Slot {
        table()
            .get(self.id.index)
            .expect("thread handle names an allocated slot")
    }

    /// Makes the thread's park token available: if it is parked it resumes, else its
    /// next [`park`](crate::park) returns at once. Tokens do not accumulate. Unparking a finished
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

impl Thread {
    /// Cancels the thread: it unwinds from its next blocking point with the payload
    /// [`Cancelled`](crate::Cancelled), or at once if it is blocked now. Its
    /// destructors run, and its [`join`](crate::JoinHandle::join) returns `Err` with
    /// that payload.
    ///
    /// Blocking points are the waits of spindle: [`park`](crate::park),
    /// [`sleep`](crate::sleep), the `sync` types (locks, condvars, channels, `select!`,
    /// semaphores, barriers, wait groups, cancel tokens), joins, offloaded system calls
    /// and socket waits (a call in a service core's hands is cancelled there, or
    /// waited for if it cannot be), and [`blocking`](crate::blocking) (which returns
    /// only once its closure does). Code that never blocks is not interrupted.
    ///
    /// Cancelling a finished thread does nothing; cancelling the running thread makes
    /// its next blocking point unwind. A thread that is unwinding already (its
    /// destructors block) waits normally. A thread not started yet never runs its
    /// closure.
    pub fn cancel(&self) {
        let _g = PreemptGuard::new();
        let slot = self.slot();
        let generation = self.id.generation;
        if !slot.word.cancel(generation) {
            return;
        }
        for chan in [Channel::Internal, Channel::Park] {
            if slot.word.cancel_block(chan, generation) {
                // SAFETY: our CAS cleared its blocked bit: the thread is alive and asleep, its TCB valid and ours to mark before we hand it to its core.
                unsafe { (**slot.tcb.get()).cancel.set(true) };
                // SAFETY: as above: making it runnable is ours to do; it unwinds as it resumes.
                unsafe { enqueue_woken(slot) };
                return;
            }
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
/// the [`SpawnError`](crate::SpawnError) (use [`Builder::spawn`] to get the error instead).
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
/// With the message of the [`SpawnError`](crate::SpawnError) (for example, no such core); use
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

/// The id of the core the running spindle thread is on, or `None` on an OS thread and
/// in a thread whose core was handed to another OS thread while it blocked (it runs on
/// no core until its next runtime call: `RuntimeBuilder::handoff`).
pub fn current_core() -> Option<usize> {
    let me = current_tcb()?;
    // SAFETY: the running thread's own TCB; its core is alive while it runs.
    unsafe {
        if (*me).adrift.load(std::sync::atomic::Ordering::Relaxed) == crate::sched::carrier::ADRIFT
        {
            return None;
        }
        Some(crate::sched::Core::of(me).id)
    }
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
        if let Some(s) = [to.id, here.id].into_iter().find(|&c| shared.is_service(c)) {
            return Err(CoreError::ServiceCore { core: s });
        }
        (*me).bind();
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
