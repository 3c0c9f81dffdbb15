//! The state one runtime's cores, threads and services share: its set of cores, and
//! the services around them (the system-call service, the poller, the blocking pool,
//! the clock, the named-thread choices). A core reaches it from its set
//! ([`Shared::of`]); the runtime's handles hold it in an `Arc`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::Duration;

use crate::registry::Choices;
use crate::sched::{Core, CoreCtx, CoreSet};
use crate::task::id::ThreadId;
use crate::task::slot::{F_DONE, F_LIVE, Slot, table};

/// State shared by the cores of one runtime.
#[repr(C)]
pub(crate) struct Shared {
    /// The cores, their exchange slots and types. First, so that a core reaches the
    /// runtime it belongs to from its set ([`Shared::of`]).
    pub(crate) set: CoreSet,
    /// Whether cores are pinned to single CPUs.
    pub(crate) pinned: bool,
    /// Default stack size of the runtime's threads.
    pub(crate) default_stack: usize,
    pub(crate) shutdown: AtomicBool,
    /// The variant of each named thread to run on each core type.
    pub(crate) choices: Choices,
    /// Time slices and the tick's state (see `preempt`).
    pub(crate) clock: crate::preempt::clock::Clock,
    /// Serialises adding and removing cores, and the start of a shutdown.
    pub(crate) admin: Mutex<()>,
    /// The process may use a single CPU (the hypercore is then unpinned).
    pub(crate) one_cpu: bool,
    /// The system-call service: request slots per worker core, served by the service
    /// cores.
    pub(crate) offload: crate::offload::Service,
    /// The service cores' roles (each serves its share of `offload`) and the workers'
    /// (they collect).
    pub(crate) serve_roles: Box<[crate::offload::ServeRole]>,
    pub(crate) collect_role: crate::offload::CollectRole,
    /// The readiness poller of `net` (epoll), dispatched by the service core (or by
    /// an OS thread of its own without one). Declared after `offload`, whose ring
    /// watches its set: dropped after it.
    pub(crate) poller: crate::io::Poller,
    /// The live stats page, if on (`page`): written by a maintenance thread, sampled
    /// by the ticker; its file goes with the runtime.
    pub(crate) page: Option<crate::page::PageWriter>,
    /// The trace export, if on (`tracefile`): the cores' rings and the file.
    pub(crate) trace: Option<crate::tracefile::Trace>,
    /// The pool of `spindle::blocking`.
    pub(crate) blocking: crate::pool::Pool,
    /// The spare OS threads that carry cores handed off (`spares`), and every
    /// carrier's handle.
    pub(crate) spares: crate::spares::Spares,
    /// The runtime's own maintenance threads (`maintenance::start`), which a shutdown
    /// stops after the other threads.
    pub(crate) maintenance: Mutex<Vec<ThreadId>>,
    /// How long a shutdown waits for threads to unwind, and then for cores to stop.
    pub(crate) shutdown_timeout: Duration,
    /// Set when the shutdown stops the cores: maintenance threads end.
    pub(crate) stopping: AtomicBool,
    /// Carrier OS threads running, spares included (started minus ended).
    pub(crate) running_cores: AtomicUsize,
    /// A core did not stop in time: the last core to stop reclaims (`shutdown`).
    pub(crate) deferred: AtomicBool,
    /// The shutdown's reclaim has run (or is running).
    pub(crate) reclaimed: AtomicBool,
}

impl std::ops::Deref for Shared {
    type Target = CoreSet;

    /// A runtime is its set of cores, plus the services around them.
    fn deref(&self) -> &CoreSet {
        &self.set
    }
}

impl Shared {
    /// The runtime `core` belongs to.
    pub(crate) fn of(core: &Core) -> &Shared {
        // SAFETY: every core set is the first field of a `repr(C)` `Shared` (cores are only made by `RuntimeBuilder::build`, inside one), so its address is the runtime's; the runtime outlives its cores.
        unsafe { &*(core.set() as *const CoreSet).cast::<Shared>() }
    }

    /// The runtime of the running spindle thread; `None` on an OS thread.
    pub(crate) fn current() -> Option<&'static Shared> {
        let (ctx, _) = CoreCtx::current()?;
        Some(Shared::of(ctx.core()))
    }

    /// The runtime's own maintenance threads.
    pub(crate) fn maintenance_threads(&self) -> Vec<ThreadId> {
        self.maintenance
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The join slots of this runtime's threads that are alive and not finished, with
    /// their indices. An owner is written before its thread is published, and other
    /// runtimes' slots never carry this runtime's address, so a relaxed read of it
    /// suffices.
    pub(crate) fn live_slots(&self) -> impl Iterator<Item = (u32, &'static Slot)> + '_ {
        let me = self as *const Shared as usize;
        (0..table().allocated()).filter_map(move |index| {
            let slot = table().get(index)?;
            let flags = slot.word.flags();
            (flags & F_LIVE != 0
                && flags & F_DONE == 0
                && slot.owner.load(std::sync::atomic::Ordering::Relaxed) == me)
                .then_some((index, slot))
        })
    }

    /// Records a maintenance thread of the runtime's own (`maintenance::start`).
    pub(crate) fn add_maintenance_thread(&self, id: ThreadId) {
        self.maintenance
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(id);
    }
}
