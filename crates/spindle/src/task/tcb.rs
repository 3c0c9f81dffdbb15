//! The thread control block and the thread state machine.
//!
//! A TCB lives at the top of its thread's stack block (see `stack`), so `current()`
//! finds it by rounding the stack pointer up (a lazily created thread's TCB starts in
//! a heap record and moves there when its core first runs it: `lazy`, and
//! `thread::materialize`). It holds what the scheduler needs while
//! the thread lives; what must outlive the stack (state visible to other threads, the
//! exit value) is in the join slot.
//!
//! ## Ownership
//!
//! A TCB is owned by exactly one core at a time: the core whose run queue, timer list
//! or current-thread pointer holds it. Only the owner reads or writes the `Cell`
//! fields. Other OS threads reach a TCB only after winning a wake CAS on its slot, and
//! then only read `core` (immutable while the thread lives on one core) to hand the
//! TCB to that core's injection queue.

use crate::task::id::ThreadId;
use std::cell::{Cell, UnsafeCell};
use std::sync::Arc;
use std::sync::atomic::AtomicU32;

use crate::arch::Context;
use crate::stack::{StackPool, class_size};
use crate::task::slot::{ResultBuf, Slot};

/// Lifecycle of a thread, as in xv6. Who owns the stack and whether the thread is on
/// a run queue is stated per state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum State {
    /// Block free, TCB meaningless. No owner.
    Unused,
    /// Created: entry and argument written, context not built yet (the owning core
    /// builds it the first time it runs the thread). On a run queue.
    Embryo,
    /// Ready to run, context saved. On exactly one run queue.
    Runnable,
    /// Running on its core. On no run queue.
    Running,
    /// Blocked in park, sleep or a runtime wait. On no run queue; a waker moves it.
    Sleeping,
    /// Finished; its result is in the join slot. The next context frees the block.
    Zombie,
}

impl State {
    /// Whether `self -> to` is a transition of the lifecycle.
    const fn allows(self, to: State) -> bool {
        use State::*;
        matches!(
            (self, to),
            (Unused, Embryo)
                | (Embryo, Running)
                | (Runnable, Running)
                | (Running, Runnable)
                | (Running, Sleeping)
                | (Sleeping, Runnable)
                | (Running, Zombie)
                | (Zombie, Unused)
                | (Embryo | Runnable | Sleeping, Unused)
        )
    }
}

/// Thread control block. `repr(C)`, at the top of the stack block.
#[repr(C, align(64))]
pub(crate) struct Tcb {
    // -- owned by the core that owns the thread --
    /// Saved callee-saved state while not running.
    pub(crate) ctx: UnsafeCell<Context>,
    state: Cell<State>,
    /// Intrusive run-queue link.
    pub(crate) next: Cell<*mut Tcb>,
    /// The panic count the thread took off its OS thread when it switched out while
    /// unwinding; put back when it resumes (`task::panic_count`). 0 otherwise.
    pub(crate) panic_depth: Cell<u32>,
    /// Set by a shutdown that woke the thread to abandon it: it unwinds as it resumes
    /// (`task::abandon`). Written by the waker that won the wake, before it hands
    /// the thread to its core.
    pub(crate) abandon: Cell<bool>,
    /// Set by a canceller that woke the thread (`Thread::cancel`): it unwinds with
    /// `Cancelled` as it resumes (`task::cancel`). Written by the waker that won the
    /// wake, before it hands the thread to its core.
    pub(crate) cancel: Cell<bool>,
    /// The thread is on a CPU: set by the core that prepares it to run
    /// (`Core::prepare`; debug builds assert it was clear), cleared with release by the
    /// next context's `finish_switch` once the thread's context is saved. A waker runs
    /// a thread on its own core only if it reads the flag clear (`handoff`); preparing
    /// a thread whose flag is still set would run it on two cores at once. Written at
    /// every switch, so it sits on the line of the state.
    pub(crate) on_cpu: std::sync::atomic::AtomicBool,
    /// The stack pointer where the thread's closure was called: the preemption's frame
    /// walk stops there (`preempt::code`). 0 before the closure runs.
    pub(crate) user_base: Cell<usize>,
    // -- hot on the switch path, next to the state --
    /// Preempt count: raised by the runtime's critical sections (`PreemptGuard`);
    /// asynchronous preemption only happens at zero. Changed only by the thread itself
    /// with plain loads and stores; read by the signal handler on the same OS thread.
    /// Starts at 1: a new thread is inside the runtime until its entry finished the
    /// switch.
    pub(crate) preempt_count: AtomicU32,
    /// The adrift mark (`sched::carrier`: `NONE`, `PENDING`, `ADRIFT`): whether the
    /// thread's core went to another OS thread while the thread blocked its own in
    /// the kernel; the thread then runs on with no core until its next runtime call
    /// rejoins one. Written by the tick, or the signal handler, that let the core go
    /// and by the OS thread it returns to; read by the thread at every preempt count
    /// 0 → 1 (`PreemptGuard::of`) and by the signal handler.
    pub(crate) adrift: std::sync::atomic::AtomicU8,
    /// What the core publishes for the tick while this thread runs (slice in ticks,
    /// preemptible; `preempt::CoreClock`).
    pub(crate) run_word: u64,
    // -- immutable after spawn (until the thread migrates, which only its owner does) --
    /// The core that owns the thread, as the scheduler's opaque handle.
    pub(crate) core: Cell<*const CoreOwner>,
    /// This thread's join slot.
    pub(crate) slot: *const Slot,
    /// Slot index and generation: the thread id.
    pub(crate) index: u32,
    pub(crate) generation: u32,
    /// Run-queue level: 0 is the most urgent.
    pub(crate) level: u8,
    /// Stack size class.
    pub(crate) class: u8,
    /// Index of the core type the thread belongs to (the type of its core).
    pub(crate) ty: u8,
    /// First-run entry point and its argument (the TCB address), used while `Embryo`.
    pub(crate) entry: unsafe extern "C" fn(usize) -> !,
    /// Initial stack top (16-aligned, below the TCB and the stored closure).
    pub(crate) stack_top: usize,
    /// Where the entry closure was stored (in the block, or a leaked Box).
    pub(crate) closure: *mut u8,
    /// Thread name, if any.
    pub(crate) name: Option<Name>,
    /// Type-erased operations on the closure and result types.
    pub(crate) vtable: &'static ThreadVtable,
    /// The main thread of `run` / `block_on`.
    pub(crate) main: bool,
    /// This TCB is a heap embryo record (a lazy spawn): it has no stack block yet.
    /// The core that first picks it moves it onto a block of its own pool
    /// (`thread::materialize`).
    pub(crate) lazy: bool,
    /// Bound to its core (spawned on a given core, or migrated there): the balancer
    /// leaves it where it is.
    pub(crate) bound: Cell<bool>,
    /// The thread opted in to asynchronous preemption.
    pub(crate) preemptible: bool,
    /// Given away in answer to a work request: set by the giving core, cleared (and
    /// counted) by the core that takes it in.
    pub(crate) stolen: Cell<bool>,
    /// The thread's `spindle::local!` values (`task::locals`): touched only by the
    /// thread itself, so they go wherever it runs.
    pub(crate) locals: Cell<*mut crate::task::locals::LocalMap>,
}

/// Names the thread whose stack block is `[base, base + size)`, for the overflow report
/// (`stack::overflow::Describe`).
///
/// # Safety
///
/// The block is a thread's stack, whose TCB at the top was initialised at spawn; the
/// thread is stuck in its overflow (so its name, which it keeps alive, stays).
pub(crate) unsafe fn describe_overflowed(base: usize, size: usize) -> (Option<&'static [u8]>, u64) {
    let tcb = Tcb::at_top_of(base, size);
    // SAFETY: per the contract; the name outlives the report (the process aborts after it).
    unsafe {
        (
            (*tcb).name_bytes().map(|n| &*(n as *const [u8])),
            (*tcb).id_u64(),
        )
    }
}

/// The core that owns a thread, as this layer sees it: an opaque handle that it only
/// stores and compares. The scheduler makes and resolves it (`Core::owner`,
/// `Core::of`).
pub(crate) enum CoreOwner {}

/// A thread name: static names (the main thread's) cost nothing to copy into a
/// handle; given names are shared.
#[derive(Clone, Debug)]
pub(crate) enum Name {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Name {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Name::Static(s) => s,
            Name::Shared(s) => s,
        }
    }
}

/// What a spawn knows about a new thread before its TCB exists.
pub(crate) struct TcbInit {
    pub(crate) slot: *const Slot,
    pub(crate) index: u32,
    pub(crate) generation: u32,
    pub(crate) level: u8,
    pub(crate) class: u8,
    pub(crate) ty: u8,
    pub(crate) entry: unsafe extern "C" fn(usize) -> !,
    pub(crate) name: Option<Name>,
    pub(crate) vtable: &'static ThreadVtable,
    pub(crate) main: bool,
    pub(crate) bound: bool,
    pub(crate) run_word: u64,
    pub(crate) preemptible: bool,
}

/// Operations a spawn leaves behind for the types it erased.
pub(crate) struct ThreadVtable {
    /// Drops a closure that never ran (an embryo abandoned at shutdown).
    pub(crate) drop_closure: unsafe fn(*mut u8),
    /// Writes the "abandoned" error as this thread's `std::thread::Result<T>`.
    pub(crate) write_abandoned: unsafe fn(*mut ResultBuf),
    /// Writes an error (a panic-like payload) as this thread's `std::thread::Result<T>`.
    pub(crate) write_error: unsafe fn(*mut ResultBuf, Box<dyn std::any::Any + Send>),
    /// Moves a lazy embryo record onto a stack block from the pool; the error (record
    /// untouched) if no block could be had.
    pub(crate) materialize:
        unsafe fn(*mut Tcb, &mut StackPool) -> Result<*mut Tcb, crate::stack::StackError>,
    /// Drops the closure of a lazy embryo record and frees the record (its name must
    /// have been dropped already).
    pub(crate) free_record: unsafe fn(*mut Tcb),
}

impl Tcb {
    /// Where the TCB of the block `[base, base + size)` lives.
    #[inline(always)]
    pub(crate) const fn at_top_of(base: usize, size: usize) -> *mut Tcb {
        (base + size - std::mem::size_of::<Tcb>()) as *mut Tcb
    }

    /// Current state.
    #[inline(always)]
    pub(crate) fn state(&self) -> State {
        self.state.get()
    }

    /// Moves to `to`, checking the transition in debug builds.
    #[inline(always)]
    pub(crate) fn set_state(&self, to: State) {
        debug_assert!(
            self.state.get().allows(to),
            "runtime: illegal thread state transition {:?} -> {:?} (thread {})",
            self.state.get(),
            to,
            self.id_u64()
        );
        self.state.set(to);
    }

    /// A TCB for a new thread, state `Unused`, context not built.
    pub(crate) fn init(p: TcbInit) -> Tcb {
        Tcb {
            ctx: UnsafeCell::new(Context::default()),
            state: Cell::new(State::Unused),
            next: Cell::new(std::ptr::null_mut()),
            panic_depth: Cell::new(0),
            abandon: Cell::new(false),
            cancel: Cell::new(false),
            user_base: Cell::new(0),
            core: Cell::new(std::ptr::null()),
            slot: p.slot,
            index: p.index,
            generation: p.generation,
            level: p.level,
            class: p.class,
            ty: p.ty,
            entry: p.entry,
            stack_top: 0,
            closure: std::ptr::null_mut(),
            name: p.name,
            vtable: p.vtable,
            main: p.main,
            lazy: false,
            bound: Cell::new(p.bound),
            preempt_count: AtomicU32::new(1),
            run_word: p.run_word,
            preemptible: p.preemptible,
            stolen: Cell::new(false),
            on_cpu: std::sync::atomic::AtomicBool::new(false),
            locals: Cell::new(std::ptr::null_mut()),
            adrift: std::sync::atomic::AtomicU8::new(0),
        }
    }

    /// The thread's id.
    pub(crate) fn id(&self) -> ThreadId {
        ThreadId::from_parts(self.index, self.generation)
    }

    /// The thread id as one number ([`ThreadId::as_u64`]).
    pub(crate) fn id_u64(&self) -> u64 {
        self.id().as_u64()
    }

    /// The name's bytes, for the async-signal-safe overflow report.
    pub(crate) fn name_bytes(&self) -> Option<&[u8]> {
        self.name.as_ref().map(|n| n.as_str().as_bytes())
    }

    /// Base address of the thread's stack block.
    pub(crate) fn block_base(this: *const Tcb) -> usize {
        // SAFETY: reading the class of a valid TCB.
        let class = unsafe { (*this).class } as usize;
        this as usize + std::mem::size_of::<Tcb>() - class_size(class)
    }

    /// Discards a thread that will never run again (shutdown): drops a closure that
    /// never ran and the name, and returns the block to `pool`. Values on the thread's
    /// stack are not dropped.
    ///
    /// # Safety
    ///
    /// `this` must be a live TCB not running and on no queue that will be used again,
    /// owned by the caller's core.
    pub(crate) unsafe fn discard(this: *mut Tcb, pool: &mut StackPool) {
        // SAFETY: per the contract we own the TCB and its block (or heap record).
        unsafe {
            if (*this).lazy {
                std::ptr::drop_in_place(&raw mut (*this).name);
                (*this).set_state(State::Unused);
                ((*this).vtable.free_record)(this);
                return;
            }
            if (*this).state() == State::Embryo {
                ((*this).vtable.drop_closure)((*this).closure);
            }
            std::ptr::drop_in_place(&raw mut (*this).name);
            (*this).set_state(State::Unused);
            pool.put((*this).class as usize, Tcb::block_base(this));
        }
    }

    /// Records that the thread now lives on `core`, in the TCB and in its slot (for
    /// wakers; see `Slot::home`). Writes only on a change.
    #[inline]
    pub(crate) fn set_core(&self, core: *const CoreOwner) {
        if self.core.get() != core {
            self.core.set(core);
            self.slot()
                .home
                .store(core.cast_mut(), std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Binds the thread to the core it lives on (`migrate_to`), in the TCB and in its
    /// slot (for wakers; see `Slot::bound`). Writes only on a change: the slot's line
    /// stays where it is for a thread that migrates again and again.
    pub(crate) fn bind(&self) {
        if !self.bound.replace(true) {
            self.slot()
                .bound
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The join slot.
    #[inline(always)]
    pub(crate) fn slot(&self) -> &Slot {
        // SAFETY: the slot table outlives every thread of its runtime, and the slot stays this thread's until both the thread and its handle let go of it.
        unsafe { &*self.slot }
    }
}
