//! [`Handle`]: a cloneable reference to a runtime, and what it reports about its
//! cores.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::MAIN_STACK_SIZE;
use crate::error::SpawnError;
use crate::sched::placement::Target;
use crate::sched::{Core, CoreState, CoreStats};
use crate::shared::Shared;
use crate::task::priority::DEFAULT_PRIORITY;
use crate::task::tcb::Name;
use crate::thread::{Builder, JoinHandle, SpawnOpts, spawn_unchecked};

/// A cloneable reference to a runtime, usable from any thread: spawn into it, add and
/// remove cores, list them. Operations on a runtime that has shut down fail.
#[derive(Clone)]
pub struct Handle {
    pub(super) shared: Arc<Shared>,
}

/// The counters of a runtime's cores ([`Handle::stats`]), each as its core last
/// published them: when it went idle, every 1,024 schedule points while busy, and
/// when it stopped. [`core_stats`](crate::core_stats) reads the running core's own
/// counters fresh.
#[derive(Debug, Clone, Default)]
pub struct RuntimeStats {
    /// Every started core (the service core included): its id and its counters.
    pub cores: Vec<(usize, CoreStats)>,
}

impl RuntimeStats {
    /// The counters of every core added up.
    pub fn total(&self) -> CoreStats {
        let mut t = CoreStats::default();
        for (_, s) in &self.cores {
            t += *s;
        }
        t
    }
}

/// What [`Handle::cores`] reports about one core.
#[derive(Debug, Clone, PartialEq)]
pub struct CoreInfo {
    /// The core's id (for `spawn_on`, `Builder::core`, `migrate_to`, `remove_core`).
    pub id: usize,
    /// Its type's name.
    pub core_type: String,
    /// The CPU it is pinned to, if pinned.
    pub cpu: Option<usize>,
    /// Runnable threads plus the running one, as last published.
    pub load: u32,
    /// The load smoothed over the last ~80 ms by the stats maintenance thread.
    pub load_avg: f64,
}

impl Handle {
    /// The runtime of the running spindle thread, or `None` on an OS thread.
    pub fn try_current() -> Option<Handle> {
        let p: *const Shared = Shared::current()?;
        // SAFETY: the running thread's runtime is alive and lives in an Arc (built by `Arc::new_cyclic`); we add a strong count for the new Arc.
        unsafe {
            Arc::increment_strong_count(p);
            Some(Handle {
                shared: Arc::from_raw(p),
            })
        }
    }

    /// The runtime of the running spindle thread.
    ///
    /// # Panics
    ///
    /// On an OS thread; use [`Handle::try_current`] there.
    pub fn current() -> Handle {
        Handle::try_current()
            .expect("spindle::Handle::current() called outside a spindle thread: use try_current()")
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// See [`Runtime::block_on`](crate::Runtime::block_on).
    pub fn block_on<F, R>(&self, f: F) -> R
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let opts = SpawnOpts {
            name: Some(Name::Static("main")),
            stack_size: Some(MAIN_STACK_SIZE),
            priority: DEFAULT_PRIORITY,
            main: true,
            target: Target::Any,
            lazy: true,
            time_slice: None,
            preemptible: None,
        };
        // SAFETY: we join the thread before returning, so whatever `f` and `R` borrow outlives it; both are Send.
        let h: JoinHandle<R> = match unsafe { spawn_unchecked(&self.shared, f, opts) } {
            Ok(h) => h,
            Err(e) => panic!("spindle: cannot start the main thread: {e}"),
        };
        match h.join() {
            Ok(v) => v,
            Err(payload) => std::panic::resume_unwind(payload),
        }
    }

    /// Spawns a thread in this runtime on the least loaded core of the caller's type
    /// (the first type for callers outside the runtime).
    ///
    /// # Panics
    ///
    /// With the [`SpawnError`](crate::SpawnError) message if the spawn fails (use
    /// [`Builder::spawn_in`](crate::Builder::spawn_in) to get the
    /// [`SpawnError`](crate::SpawnError)).
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match crate::Builder::new().spawn_in(self, f) {
            Ok(h) => h,
            Err(e) => panic!("spindle: spawn failed: {e}"),
        }
    }

    /// The running worker cores, by id (the service core is [`Handle::hypercore`]).
    /// None once the runtime has shut down.
    pub fn cores(&self) -> Vec<CoreInfo> {
        if self.shared.shutdown.load(Ordering::Acquire) {
            return Vec::new();
        }
        self.shared
            .started()
            .iter()
            .filter(|c| c.state() == CoreState::Active && !self.shared.is_service(c.id))
            .map(|c| self.info(c))
            .collect()
    }

    /// The service core (the hypercore), or `None` if the runtime runs without one
    /// ([`RuntimeBuilder::hypercore`](crate::RuntimeBuilder::hypercore)) or has shut down.
    pub fn hypercore(&self) -> Option<CoreInfo> {
        if self.shared.shutdown.load(Ordering::Acquire) {
            return None;
        }
        self.shared
            .hyper
            .map(|id| self.info(&self.shared.cores[id]))
    }

    fn info(&self, c: &Core) -> CoreInfo {
        let cpu = c.cpu.load(Ordering::Relaxed);
        CoreInfo {
            id: c.id,
            core_type: self.shared.types[c.ty.load(Ordering::Relaxed)].name.clone(),
            cpu: (cpu != usize::MAX).then_some(cpu),
            load: c.published.load.load(Ordering::Relaxed),
            load_avg: f64::from(c.load_avg.load(Ordering::Relaxed)) / 256.0,
        }
    }

    /// Every live thread of this runtime, by core: its state, what it waits on and for
    /// how long, its stack size and high-water mark (see [`ThreadDump`]). The same
    /// text is printed to stderr on `SIGQUIT`
    /// ([`RuntimeBuilder::dump_on_sigquit`](crate::RuntimeBuilder::dump_on_sigquit)).
    ///
    /// # Examples
    ///
    /// ```
    /// use spindle::{ThreadState, WaitReason};
    /// let rt = spindle::Runtime::builder().cores(1).build().unwrap();
    /// let parked = rt.spawn(spindle::park);
    /// std::thread::sleep(std::time::Duration::from_millis(20));
    /// let dump = rt.handle().dump();
    /// let t = dump.thread(parked.thread().id()).unwrap();
    /// assert_eq!(t.state, ThreadState::Waiting(WaitReason::Park));
    /// println!("{dump}");
    /// parked.thread().unpark();
    /// parked.join().unwrap();
    /// ```
    ///
    /// [`ThreadDump`]: crate::ThreadDump
    pub fn dump(&self) -> crate::ThreadDump {
        super::dump::take(&self.shared)
    }

    /// The counters of every core of this runtime: spawns kept local, work requests
    /// sent, answered and refused, threads stolen in and out, switches, ... (see
    /// [`RuntimeStats`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = spindle::Runtime::builder().cores(2).build().unwrap();
    /// rt.block_on(|| spindle::spawn(|| ()).join().unwrap());
    /// let spawned = rt.stats().total().spawned; // published at idle: may lag
    /// assert!(spawned <= 1);
    /// ```
    pub fn stats(&self) -> RuntimeStats {
        RuntimeStats {
            cores: self
                .shared
                .started()
                .iter()
                .map(|c| (c.id, c.published_stats()))
                .collect(),
        }
    }

    /// Live threads of the type named `name` (a snapshot; `None` for an unknown type).
    pub fn live_threads(&self, name: &str) -> Option<i64> {
        let ty = self.shared.type_index(name)?;
        Some(self.shared.live_of_type(ty))
    }
}

impl Builder {
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
        unsafe { spawn_unchecked(&handle.shared, f, opts) }
    }

    /// [`spawn_named`](crate::spawn_named) with these attributes in the runtime of
    /// `handle`, from any thread.
    ///
    /// # Errors
    ///
    /// As for [`spawn_named`](crate::spawn_named).
    pub fn spawn_named_in<A, R>(
        self,
        handle: &Handle,
        name: &str,
        arg: A,
    ) -> Result<JoinHandle<R>, SpawnError>
    where
        A: Send + 'static,
        R: Send + 'static,
    {
        crate::names::spawn_named_in(&handle.shared, name, arg, self)
    }
}
