//! The core: a scheduler that an OS thread runs. Its shared fields (state, doorbell,
//! published figures, requests) are read by other threads; its core-local state
//! (`CoreLocal`) is touched only by the OS thread running it, through a `CoreCtx`.

use std::cell::UnsafeCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU32, AtomicU64, AtomicUsize};
use std::time::Duration;

use crossbeam_utils::CachePadded;

use super::clock::CoreClock;
use super::doorbell::Doorbell;
use super::requests::{RebalanceWord, Resched};
use super::role::{CoreRole, NoRole};
use super::runq::RunQueue;
use super::set::CoreSet;
use super::timers::Timer;
use super::{After, CoreState, IDLE_LEVEL, MAX_CORES, MAX_TYPES};
use crate::arch::Context;
use crate::loom::Ordering;
use crate::stack::StackPool;
use crate::task::tcb::{CoreOwner, Tcb};

/// Counters a core keeps about itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct CoreStats {
    /// Context switches made by this core.
    pub switches: u64,
    /// Threads spawned by the threads of this core, wherever they went.
    pub spawned: u64,
    /// Of those, the threads that went on this core (a plain `spawn` stays where the
    /// spawner is).
    pub spawned_local: u64,
    /// Threads that finished on this core.
    pub exited: u64,
    /// Times the core slept in the kernel because nothing was runnable.
    pub idle_sleeps: u64,
    /// Threads this core took in from other cores' exchange slots.
    pub taken_in: u64,
    /// Threads this core handed to other cores through exchange slots.
    pub sent_out: u64,
    /// Threads handed to this core by OS threads through its injection queue.
    pub injected: u64,
    /// Threads this core sent to another core at the balancer's request.
    pub balanced_out: u64,
    /// Lazily created threads (remote and named spawns) whose stack block this core
    /// took from its own pool and set up, the first time it ran them.
    pub built: u64,
    /// Preemption signals the tick sent this core (its thread did not honour a
    /// reschedule request within a tick, or the watchdog asked for its name).
    pub preempt_signals: u64,
    /// Asynchronous preemptions on this core: signals whose handler rewrote the
    /// interrupted context so that the thread yielded. Only preemptible threads are
    /// ever preempted this way.
    pub async_preemptions: u64,
    /// Work requests this core sent while idle (to a busy core of its type).
    pub requests_sent: u64,
    /// Work requests this core answered with threads.
    pub requests_answered: u64,
    /// Work requests this core refused: it had no thread it could give.
    pub requests_refused: u64,
    /// Threads this core gave away in answer to work requests.
    pub stolen_out: u64,
    /// Threads this core received in answer to its work requests.
    pub stolen_in: u64,
    /// Sleeping cores of its type this core woke because work queued here while no
    /// core of the type was looking for work.
    pub sibling_wakes: u64,
    /// Time this core spent spinning idle, looking for work, in nanoseconds.
    pub spin_ns: u64,
    /// Threads of other cores that a thread of this core woke and that then ran here
    /// (wake affinity: a woken thread follows its waker within a type).
    pub woken_here: u64,
    /// Times this core was handed to another OS thread because its thread blocked
    /// its OS thread in the kernel (`spindle` handoff).
    pub handed_off: u64,
}

impl std::ops::AddAssign for CoreStats {
    /// Adds every counter of `o` (for a whole-runtime total).
    fn add_assign(&mut self, o: CoreStats) {
        let CoreStats {
            switches,
            spawned,
            spawned_local,
            exited,
            idle_sleeps,
            taken_in,
            sent_out,
            injected,
            balanced_out,
            built,
            preempt_signals,
            async_preemptions,
            requests_sent,
            requests_answered,
            requests_refused,
            stolen_out,
            stolen_in,
            sibling_wakes,
            spin_ns,
            woken_here,
            handed_off,
        } = o;
        self.switches += switches;
        self.spawned += spawned;
        self.spawned_local += spawned_local;
        self.exited += exited;
        self.idle_sleeps += idle_sleeps;
        self.taken_in += taken_in;
        self.sent_out += sent_out;
        self.injected += injected;
        self.balanced_out += balanced_out;
        self.built += built;
        self.preempt_signals += preempt_signals;
        self.async_preemptions += async_preemptions;
        self.requests_sent += requests_sent;
        self.requests_answered += requests_answered;
        self.requests_refused += requests_refused;
        self.stolen_out += stolen_out;
        self.stolen_in += stolen_in;
        self.sibling_wakes += sibling_wakes;
        self.spin_ns += spin_ns;
        self.woken_here += woken_here;
        self.handed_off += handed_off;
    }
}

/// A core's outgoing list for one destination (its dispatcher list): touched by the
/// core alone, linked through the TCBs' `next`.
#[derive(Clone, Copy)]
pub(crate) struct OutList {
    pub(super) head: *mut Tcb,
    pub(super) tail: *mut Tcb,
    pub(super) len: u32,
    /// Most urgent level in the list (to ask the destination to reschedule).
    pub(super) min_level: u8,
}

impl OutList {
    pub(super) const EMPTY: OutList = OutList {
        head: std::ptr::null_mut(),
        tail: std::ptr::null_mut(),
        len: 0,
        min_level: IDLE_LEVEL,
    };
}

/// State touched only by the core's own OS thread.
pub(super) struct CoreLocal {
    pub(super) runq: RunQueue,
    pub(super) timers: BinaryHeap<Reverse<Timer>>,
    /// The scheduler context: the OS thread's own stack.
    pub(super) sched_ctx: Context,
    /// Running thread, or null while in the scheduler context.
    pub(super) current: *mut Tcb,
    /// The thread that switched out last, and what to do with it.
    pub(super) prev: *mut Tcb,
    pub(super) prev_after: After,
    pub(super) pool: StackPool,
    pub(super) free_slots: Vec<u32>,
    /// Dispatcher lists, one per destination core, and the mask of non-empty ones.
    pub(super) out: Box<[OutList]>,
    pub(super) out_mask: u64,
    /// Last values stored to the published load figures (to store only on change).
    pub(super) load_seen: u32,
    pub(super) level_seen: u8,
    pub(super) epoch: u64,
    pub(super) stats: CoreStats,
    /// The core this idle core last asked for work, while its request may be pending.
    pub(super) asked: Option<usize>,
    /// Where the next victim search starts (rotates, so that ties spread).
    pub(super) victim_start: usize,
    /// The cores asked in this idle spell (bit per core id): each is asked at most
    /// once per spell, so a refusal is not asked again at once.
    pub(super) spell_asked: u64,
}

/// What other OS threads hand a core through its injection queue.
#[derive(Default)]
pub(super) struct Inbox {
    pub(super) threads: Vec<TcbPtr>,
    pub(super) timers: Vec<Timer>,
    /// Set by a leaving core once it stopped taking injections.
    pub(super) closed: bool,
}

/// Figures a core publishes for placement, with relaxed stores (single writer), each
/// on its own cache line: `load` changes whenever the core goes idle or gets work,
/// while `level` is read by every sender (the preemption check of `send_out`) and
/// changes only when a thread of another level starts running.
#[derive(Default)]
pub(crate) struct Published {
    /// Runnable threads, plus one if a thread is running.
    pub(crate) load: CachePadded<AtomicU32>,
    /// Level of the thread running, or of the last one that ran if the core is idle
    /// (`load` 0): not rewritten when the core goes idle, so that a core handing
    /// threads back and forth does not move this line at every hop. `IDLE_LEVEL`
    /// before the first thread.
    pub(crate) level: CachePadded<AtomicU8>,
}

/// One core: a scheduler that one OS thread at a time runs (its carrier: `carrier`).
pub(crate) struct Core {
    pub(crate) id: usize,
    /// The set this core belongs to (it lives inside it).
    set: *const CoreSet,
    /// What the core does besides running threads (`role`): written before the core's
    /// OS thread first starts, read only by that thread.
    role: std::cell::UnsafeCell<*const dyn CoreRole>,
    /// On cache lines of its own: the core writes it all the time, and the fields
    /// other cores read (state, doorbell, flags) must not share a line with it.
    local: CachePadded<UnsafeCell<CoreLocal>>,
    /// Threads and timers handed to this core by OS threads that are not its peers.
    pub(super) inject: Mutex<Inbox>,
    pub(crate) doorbell: Doorbell,
    /// How long the idle loop spins before sleeping in the kernel (zero: the core
    /// shares its CPU, and never spins, nor polls for a result).
    pub(crate) spin: Duration,
    /// `CoreState` as a byte.
    state: AtomicU8,
    /// The core's type index (set before the core first starts).
    pub(crate) ty: AtomicUsize,
    /// The CPU it is pinned to, `usize::MAX` if unpinned.
    pub(crate) cpu: AtomicUsize,
    /// Asks the core to go to its scheduler context at its next schedule point
    /// (shutdown, or removal).
    pub(crate) halt: AtomicBool,
    /// A reschedule request: a more urgent thread was sent to this core.
    pub(crate) resched: Resched,
    /// The balancer's request (`requests`).
    pub(crate) balance: RebalanceWord,
    /// Smoothed load (runnable threads, ×256), kept by the stats maintenance thread.
    pub(crate) load_avg: AtomicU32,
    pub(crate) published: Published,
    /// Bumped at every schedule point and idle-loop round; a leaving core waits for
    /// every other core's epoch to move (see `runtime`).
    pub(crate) epoch: CachePadded<AtomicU64>,
    /// Live threads per type counted on this core: spawned here minus exited here
    /// (single writer; the sum over all cores is the live count of a type).
    pub(crate) typed: [AtomicI64; MAX_TYPES],
    /// Which OS thread holds the core, and its handoff to another (`carrier`).
    pub(crate) carrier: super::carrier::Carrier,
    /// Where the core's carrier keeps its scheduler context for a thread that goes
    /// adrift (`carrier::HOME`, a thread-local of the carrier): written by the carrier
    /// when it takes the core, read by whoever lets the core go.
    pub(crate) carrier_home: std::sync::atomic::AtomicPtr<crate::arch::Context>,
    /// What the core publishes for the tick (schedule points, slice start, running
    /// thread) and the preemption signal's counters.
    pub(crate) clock: CachePadded<CoreClock>,
    /// This core's trace ring (`trace`), null while the runtime does not trace.
    pub(crate) trace: std::sync::atomic::AtomicPtr<super::trace::Ring>,
    /// A waker handed this idle core the type's spinning token (`steal`): it spins
    /// for work when it wakes.
    pub(super) spin_token: AtomicBool,
    /// The core's counters as last published for other threads (`Core::publish_stats`).
    stats: Mutex<CoreStats>,
}

/// A TCB pointer in transit to its core's injection queue.
pub(super) struct TcbPtr(pub(super) *mut Tcb);
// SAFETY: the pointer is only dereferenced by the core that owns the TCB, after it took it out of the queue (the queue's mutex orders the hand-off).
unsafe impl Send for TcbPtr {}

// SAFETY: `local` is only accessed by the core's own OS thread (see `local`); the other fields are synchronised (mutex, atomics) or immutable.
unsafe impl Sync for Core {}
// SAFETY: as above; a core is created on one thread and handed to its OS thread.
unsafe impl Send for Core {}

impl Core {
    pub(crate) fn new(id: usize, set: *const CoreSet, spin: Duration) -> Core {
        Core {
            id,
            set,
            role: std::cell::UnsafeCell::new(&NoRole as &dyn CoreRole as *const dyn CoreRole),
            local: CachePadded::new(UnsafeCell::new(CoreLocal {
                runq: RunQueue::default(),
                timers: BinaryHeap::new(),
                sched_ctx: Context::default(),
                current: std::ptr::null_mut(),
                prev: std::ptr::null_mut(),
                prev_after: After::Sleep,
                pool: StackPool::default(),
                free_slots: Vec::new(),
                out: vec![OutList::EMPTY; MAX_CORES].into_boxed_slice(),
                out_mask: 0,
                load_seen: 0,
                level_seen: IDLE_LEVEL,
                epoch: 0,
                stats: CoreStats::default(),
                asked: None,
                victim_start: id,
                spell_asked: 0,
            })),
            inject: Mutex::new(Inbox::default()),
            doorbell: Doorbell::new(),
            spin,
            state: AtomicU8::new(CoreState::Unused as u8),
            ty: AtomicUsize::new(0),
            cpu: AtomicUsize::new(usize::MAX),
            halt: AtomicBool::new(false),
            resched: Resched::default(),
            balance: RebalanceWord::default(),
            load_avg: AtomicU32::new(0),
            published: Published {
                load: CachePadded::new(AtomicU32::new(0)),
                level: CachePadded::new(AtomicU8::new(IDLE_LEVEL)),
            },
            epoch: CachePadded::new(AtomicU64::new(0)),
            typed: std::array::from_fn(|_| AtomicI64::new(0)),
            carrier: super::carrier::Carrier::default(),
            carrier_home: std::sync::atomic::AtomicPtr::new(std::ptr::null_mut()),
            clock: CachePadded::new(CoreClock::default()),
            trace: std::sync::atomic::AtomicPtr::new(std::ptr::null_mut()),
            spin_token: AtomicBool::new(false),
            stats: Mutex::new(CoreStats::default()),
        }
    }

    /// Publishes this core's counters for other threads (at idle, every 1024 schedule
    /// points, and when the core stops); skipped if a reader holds them.
    pub(super) fn publish_stats(&self, l: &CoreLocal) {
        if let Ok(mut s) = self.stats.try_lock() {
            *s = l.stats;
            s.preempt_signals = self.clock.signals_sent();
            s.async_preemptions = self.clock.preemptions();
        }
    }

    /// The counters this core published last (`Handle::stats`).
    pub(crate) fn published_stats(&self) -> CoreStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// The set of cores this core belongs to.
    #[inline(always)]
    pub(crate) fn set(&self) -> &CoreSet {
        // SAFETY: a core lives inside its set, which outlives it.
        unsafe { &*self.set }
    }

    /// The address of this core's set (to tell whether two cores are of one runtime).
    #[inline(always)]
    pub(crate) fn set_ptr(&self) -> *const CoreSet {
        self.set
    }

    /// This core as the opaque owner handle a TCB keeps (`Tcb::core`).
    #[inline(always)]
    pub(crate) fn owner(&self) -> *const CoreOwner {
        (self as *const Core).cast()
    }

    /// The core that owns thread `t`.
    ///
    /// # Safety
    ///
    /// `t` is a live TCB whose core is set (it runs, or was placed), read by its
    /// owner or by the waker that won its wake; the `'a` chosen must not outlive the
    /// core's runtime.
    #[inline(always)]
    pub(crate) unsafe fn of<'a>(t: *const Tcb) -> &'a Core {
        // SAFETY: per the contract, `core` holds the address of a live `Core`.
        unsafe { &*(*t).core.get().cast::<Core>() }
    }

    /// The id of the core the running thread `t` is on (the panic report's
    /// `task::panic_hook::CoreIdOf`).
    ///
    /// # Safety
    ///
    /// `t` is the running thread.
    pub(crate) unsafe fn id_of_running(t: *mut Tcb) -> usize {
        // SAFETY: the running thread's core is set and alive while it runs.
        unsafe { Core::of(t).id }
    }

    /// The core an owner handle names.
    ///
    /// # Safety
    ///
    /// `owner` came from [`Core::owner`] of a core that is still alive.
    #[inline(always)]
    pub(crate) unsafe fn from_owner<'a>(owner: *const CoreOwner) -> &'a Core {
        // SAFETY: per the contract.
        unsafe { &*owner.cast::<Core>() }
    }

    /// Installs the core's role.
    ///
    /// # Safety
    ///
    /// Called before the core's OS thread first starts (or while it is stopped), and
    /// `role` outlives the core.
    pub(crate) unsafe fn set_role(&self, role: *const dyn CoreRole) {
        // SAFETY: per the contract nobody reads the cell meanwhile.
        unsafe { *self.role.get() = role };
    }

    /// The core's role. Called by the core's own OS thread.
    #[inline(always)]
    pub(crate) fn role(&self) -> &dyn CoreRole {
        // SAFETY: written before the OS thread started (`set_role`), never after while it runs; the role outlives the core.
        unsafe { &**self.role.get() }
    }

    /// The core's life-cycle state.
    #[inline]
    pub(crate) fn state(&self) -> CoreState {
        // SeqCst: the removal protocol orders this load against the leaving core's
        // store (see `lifecycle`); on x86 it is a plain load.
        CoreState::from_byte(self.state.load(Ordering::SeqCst))
    }
    pub(crate) fn set_state(&self, s: CoreState) {
        self.state.store(s as u8, Ordering::SeqCst);
    }
    /// The core-local state.
    ///
    /// Only the core's own OS thread may call this (a spindle thread running on the
    /// core, or the core's scheduler context), and no reference obtained from it may
    /// be held across a context switch. Callers dereference it in short, non-
    /// overlapping scopes.
    #[inline(always)]
    pub(super) fn local(&self) -> *mut CoreLocal {
        self.local.get()
    }
    /// Counts a thread of type `ty` born (+1) or gone (-1) on this core. Only the
    /// core's own OS thread calls this (single writer: load + store, no RMW).
    #[inline]
    pub(crate) fn count_typed(&self, ty: u8, delta: i64) {
        let c = &self.typed[ty as usize];
        c.store(c.load(Ordering::Relaxed) + delta, Ordering::Relaxed);
    }
    /// Whether an OS thread runs the core now (its carrier published itself and has
    /// not stopped or let go).
    pub(crate) fn carried(&self) -> bool {
        self.clock.tid.load(Ordering::Relaxed) != 0
    }
}
