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

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{ConfigError, CoreError};
use crate::names::Choices;
use crate::sched::exchange::Slots;
use crate::sched::placement::Target;
use crate::sched::role::CoreRole;
use crate::sched::{Core, CoreSet, CoreState, CoreStats, MAX_CORES, MAX_TYPES, TypeInfo};
use crate::stack::overflow::AltStack;
use crate::stack::{DEFAULT_STACK_SIZE, MAX_STACK_SIZE, MIN_STACK_SIZE};
use crate::task::tcb::Name;
use crate::thread::{self, JoinHandle, SpawnOpts, ThreadId};
use crate::topology::{self, FeatureSet};
pub use crate::topology::{DEFAULT_TYPE, SERVICE_TYPE};

/// Default spin before an idle core sleeps in the kernel. Waking a sleeping OS thread
/// costs ~25 µs on the reference machine, so spinning a little longer than that
/// before sleeping saves a full wake-up whenever work arrives within the window.
pub const DEFAULT_IDLE_SPIN: Duration = Duration::from_micros(50);

/// Stack size of the main thread of [`run`] and [`Runtime::block_on`].
pub const MAIN_STACK_SIZE: usize = 8 << 20;

/// A class of cores with the same CPUs and CPU features.
///
/// # Examples
///
/// ```
/// use spindle::{CoreType, Runtime};
/// let rt = Runtime::builder()
///     .core_type(CoreType::new("compute").cores(2))
///     .core_type(CoreType::new("io").cores(1))
///     .build()
///     .unwrap();
/// let types: Vec<_> = rt.handle().cores().into_iter().map(|c| c.core_type).collect();
/// assert_eq!(types, ["compute", "compute", "io"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreType {
    name: String,
    cpus: Option<Vec<usize>>,
    features: Option<Vec<String>>,
    cores: Option<usize>,
}

impl CoreType {
    /// A type named `name`: by default on every CPU the process may use, one core per
    /// CPU, no required features.
    pub fn new(name: impl Into<String>) -> CoreType {
        CoreType {
            name: name.into(),
            cpus: None,
            features: None,
            cores: None,
        }
    }

    /// The CPUs the type's cores run on (each pinned to one of them when pinning is
    /// on; confined to the set when it is off).
    pub fn cpus(mut self, cpus: impl IntoIterator<Item = usize>) -> CoreType {
        self.cpus = Some(cpus.into_iter().collect());
        self
    }

    /// The CPU features of the type (names as in
    /// [`topology::known_features`](crate::topology::known_features), e.g. `"avx2"`),
    /// with the features they imply. The machine's CPUs must have them; the set may be
    /// a subset of what they have (a type `lite` without AVX-512), and named threads
    /// then run the variants this set allows. Default: every feature of the machine.
    pub fn features<S: Into<String>>(mut self, features: impl IntoIterator<Item = S>) -> CoreType {
        self.features = Some(features.into_iter().map(Into::into).collect());
        self
    }

    /// Number of cores of this type at start (default: one per CPU of its set).
    pub fn cores(mut self, n: usize) -> CoreType {
        self.cores = Some(n);
        self
    }
}

/// State shared by the cores of one runtime.
#[repr(C)]
pub(crate) struct Shared {
    /// The cores, their exchange slots and types. First, so that a core reaches the
    /// runtime it belongs to from its set ([`Shared::of`]).
    pub(crate) set: CoreSet,
    /// Whether cores are pinned to single CPUs.
    pinned: bool,
    /// Default stack size of the runtime's threads.
    pub(crate) default_stack: usize,
    pub(crate) shutdown: AtomicBool,
    /// The variant of each named thread to run on each core type.
    pub(crate) choices: Choices,
    /// Time slices and the tick's state (see `preempt`).
    pub(crate) clock: crate::preempt::Clock,
    /// Serialises adding and removing cores, and the start of a shutdown.
    pub(crate) admin: Mutex<()>,
    /// The process may use a single CPU (the hypercore is then unpinned).
    one_cpu: bool,
    /// The system-call service: request slots per core, served by the hypercore.
    pub(crate) offload: crate::offload::Service,
    /// The service core's role (it serves `offload`) and the workers' (they collect).
    serve_role: crate::offload::ServeRole,
    collect_role: crate::offload::CollectRole,
    /// The readiness poller of `net` (epoll), run by a maintenance thread.
    pub(crate) poller: crate::io::Poller,
    /// The pool of `spindle::blocking`.
    pub(crate) blocking: crate::blocking::Pool,
    /// The runtime's own maintenance threads (`maintenance::start`), which a shutdown
    /// stops after the other threads.
    maintenance: Mutex<Vec<ThreadId>>,
    /// How long a shutdown waits for threads to unwind, and then for cores to stop.
    pub(crate) shutdown_timeout: Duration,
    /// Set when the shutdown stops the cores: maintenance threads end.
    pub(crate) stopping: AtomicBool,
    /// Core OS threads running (started minus ended).
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

    /// The runtime's own maintenance threads.
    pub(crate) fn maintenance_threads(&self) -> Vec<ThreadId> {
        self.maintenance
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records a maintenance thread of the runtime's own (`maintenance::start`).
    pub(crate) fn add_maintenance_thread(&self, id: ThreadId) {
        self.maintenance
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(id);
    }
}

/// The environment variable that sets the number of worker cores of a runtime whose
/// builder names none (like Go's `GOMAXPROCS`).
pub const CORES_ENV: &str = "SPINDLE_CORES";

/// The worker core count [`CORES_ENV`] asks for, if set.
fn cores_from_env() -> Result<Option<usize>, ConfigError> {
    let Some(v) = std::env::var_os(CORES_ENV) else {
        return Ok(None);
    };
    let value = v.to_string_lossy().into_owned();
    match value.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(Some(n)),
        _ => Err(ConfigError::Env {
            var: CORES_ENV,
            value,
        }),
    }
}

/// Configures a [`Runtime`]; see [`Runtime::builder`].
#[derive(Debug, Clone)]
#[must_use = "a RuntimeBuilder does nothing until build is called"]
pub struct RuntimeBuilder {
    cores: Option<usize>,
    pin: Option<bool>,
    types: Vec<CoreType>,
    stack_size: Option<usize>,
    idle_spin: Duration,
    hypercore: bool,
    preempt: crate::preempt::Config,
    shutdown_timeout: Duration,
}

impl RuntimeBuilder {
    /// How long dropping the runtime waits for its threads (default
    /// [`DEFAULT_SHUTDOWN_TIMEOUT`](crate::DEFAULT_SHUTDOWN_TIMEOUT), 1 s): first for
    /// the threads still blocked to unwind (their destructors run), then for the cores
    /// to stop. A thread that neither reaches a schedule point nor can be preempted
    /// keeps its core after that: the drop returns anyway, says so on stderr, and the
    /// runtime's remaining threads and memory are reclaimed when that thread stops.
    /// See [`Runtime`] for the whole sequence.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> RuntimeBuilder {
        self.shutdown_timeout = timeout;
        self
    }

    /// Whether the runtime has a service core, the hypercore (default: yes). It is one
    /// more core, of type [`SERVICE_TYPE`], on the last CPU the process may use
    /// (unpinned on a one-CPU machine), that runs only maintenance threads: the
    /// ticker, the reaper, the balancer, the stats sampler and those started with
    /// [`spawn_maintenance`](crate::spawn_maintenance). Worker cores then never run
    /// upkeep and never make its system calls.
    ///
    /// Without it, the maintenance threads run on the worker cores at the highest
    /// priority: they take worker time whenever they run (each tick, each reaper
    /// pass), and a worker core held by a thread that does not yield delays them, so
    /// slices and balancing on that core wait for its next schedule point.
    pub fn hypercore(mut self, on: bool) -> RuntimeBuilder {
        self.hypercore = on;
        self
    }

    /// Number of cores of the default type (when no core types are declared). Default:
    /// the value of the environment variable [`CORES_ENV`] (`SPINDLE_CORES`) if set,
    /// else one per CPU the process may use, minus one (kept for the service core), at
    /// least one. A `SPINDLE_CORES` that is not a positive number is a
    /// [`ConfigError::Env`].
    pub fn cores(mut self, n: usize) -> RuntimeBuilder {
        self.cores = Some(n);
        self
    }

    /// Pins each core to one CPU (`true`) or lets the OS place them within their type's
    /// CPU set (`false`). Default: pinned when there are no more cores than CPUs.
    pub fn pin(mut self, pin: bool) -> RuntimeBuilder {
        self.pin = Some(pin);
        self
    }

    /// Declares a core type. Without any, the runtime has one type, `default`.
    pub fn core_type(mut self, t: CoreType) -> RuntimeBuilder {
        self.types.push(t);
        self
    }

    /// Default stack size of the runtime's threads (a power of two, 16 KiB to 8 MiB).
    pub fn stack_size(mut self, bytes: usize) -> RuntimeBuilder {
        self.stack_size = Some(bytes);
        self
    }

    /// How long an idle core spins before sleeping in the kernel (default
    /// [`DEFAULT_IDLE_SPIN`]).
    pub fn idle_spin(mut self, spin: Duration) -> RuntimeBuilder {
        self.idle_spin = spin;
        self
    }

    /// Default time slice of the runtime's threads (default 10 ms; see
    /// [`Builder::time_slice`](crate::Builder::time_slice)). Zero is a
    /// [`ConfigError::TimeSlice`].
    pub fn time_slice(mut self, slice: Duration) -> RuntimeBuilder {
        self.preempt.time_slice = slice;
        self
    }

    /// Period of the tick that accounts time slices and preempts (default 1 ms).
    /// Slices are counted in ticks. Zero is a [`ConfigError::Tick`].
    pub fn tick(mut self, period: Duration) -> RuntimeBuilder {
        self.preempt.tick = period;
        self
    }

    /// Runs the ticker (default `true`). Without it, time slices are not enforced,
    /// nothing is preempted and the watchdog is off.
    pub fn ticker(mut self, on: bool) -> RuntimeBuilder {
        self.preempt.ticker = on;
        self
    }

    /// Whether threads are asynchronously preemptible unless their
    /// [`Builder::preemptible`](crate::Builder::preemptible) says otherwise (default
    /// `false`; read the caveat about `std` locks there first).
    pub fn preemptible(mut self, on: bool) -> RuntimeBuilder {
        self.preempt.preemptible = on;
        self
    }

    /// How many of its own time slices a thread may hold its core without reaching a
    /// schedule point before the watchdog reports it (default 10): a thread that
    /// neither yields nor can be preempted, or a core blocked in the kernel. Reports
    /// are `tracing` warnings (target `spindle::watchdog`) with the thread's name, id
    /// and core, once per occurrence. Zero is a [`ConfigError::WatchdogSlices`].
    pub fn watchdog_slices(mut self, slices: u32) -> RuntimeBuilder {
        self.preempt.watchdog_slices = slices;
        self
    }

    /// Checks the configuration and starts the cores.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the problem; nothing is started then.
    pub fn build(self) -> Result<Runtime, ConfigError> {
        self.preempt.validate()?;
        if crate::fork::forked() {
            return Err(ConfigError::Forked);
        }
        // Every thread's stack comes from the arena: a process that cannot have one
        // learns it here, with the reason, rather than from every spawn.
        crate::stack::ensure_arena().map_err(|e| ConfigError::StackArena {
            message: e.to_string(),
        })?;
        // Panic reports of spindle threads name them and run on a side stack; an
        // overflow report names the thread; a forked child refuses every call.
        crate::task::panic_hook::install();
        crate::stack::overflow::set_describer(crate::task::tcb::describe_overflowed);
        crate::fork::install();
        let allowed = topology::allowed_cpus();
        let default_stack = self.stack_size.unwrap_or(DEFAULT_STACK_SIZE);
        if !default_stack.is_power_of_two()
            || !(MIN_STACK_SIZE..=MAX_STACK_SIZE).contains(&default_stack)
        {
            return Err(ConfigError::StackSize {
                requested: default_stack,
            });
        }
        let mut types = self.types.clone();
        let detected = topology::detected_types();
        // The environment sizes the default type only.
        let cores_asked = match self.cores {
            Some(n) => Some(n),
            None if types.is_empty() => cores_from_env()?,
            None => None,
        };
        if types.is_empty() && cores_asked.is_none() && detected.len() > 1 {
            // A hybrid machine: one type per class of CPUs, one core per CPU.
            for t in detected {
                types.push(CoreType::new(t.name.clone()).cpus(t.cpus.clone()));
            }
        } else if types.is_empty() {
            let cores = cores_asked.unwrap_or(allowed.len().saturating_sub(1).max(1));
            let cpus = if allowed.len() > 1 && cores < allowed.len() {
                allowed[..allowed.len() - 1].to_vec()
            } else {
                allowed.clone()
            };
            types.push(CoreType::new(DEFAULT_TYPE).cpus(cpus).cores(cores));
        } else if self.cores.is_some() {
            return Err(ConfigError::CoresWithTypes);
        }
        if types.len() > MAX_TYPES {
            return Err(ConfigError::TooManyTypes {
                requested: types.len(),
            });
        }
        let mut infos = Vec::new();
        let mut counts = Vec::new();
        for (i, t) in types.iter().enumerate() {
            if t.name.is_empty() {
                return Err(ConfigError::EmptyName);
            }
            if types[..i].iter().any(|u| u.name == t.name) {
                return Err(ConfigError::DuplicateType {
                    name: t.name.clone(),
                });
            }
            let cpus = t.cpus.clone().unwrap_or_else(|| allowed.clone());
            if cpus.is_empty() {
                return Err(ConfigError::EmptyType {
                    name: t.name.clone(),
                });
            }
            if let Some(&cpu) = cpus.iter().find(|c| !allowed.contains(c)) {
                return Err(ConfigError::NoSuchCpu {
                    name: t.name.clone(),
                    cpu,
                    allowed: allowed.clone(),
                });
            }
            for feature in t.features.iter().flatten() {
                match topology::has_feature(feature) {
                    None => {
                        return Err(ConfigError::UnknownFeature {
                            name: t.name.clone(),
                            feature: feature.clone(),
                        });
                    }
                    Some(false) => {
                        return Err(ConfigError::MissingFeature {
                            name: t.name.clone(),
                            feature: feature.clone(),
                        });
                    }
                    Some(true) => {}
                }
            }
            counts.push(t.cores.unwrap_or(cpus.len()));
            let features = match &t.features {
                Some(f) => FeatureSet::parse(f).unwrap_or_default().closure(),
                None => detected
                    .iter()
                    .find(|d| cpus.iter().all(|c| d.cpus.contains(c)))
                    .map_or_else(topology::machine_features, |d| d.features),
            };
            infos.push(TypeInfo {
                name: t.name.clone(),
                cpus,
                features,
            });
        }
        let total: usize = counts.iter().sum();
        if total == 0 {
            return Err(ConfigError::ZeroCores);
        }
        if total > MAX_CORES {
            return Err(ConfigError::TooManyCores {
                requested: total,
                service_core: false,
            });
        }
        let pinned = self.pin.unwrap_or_else(|| {
            total <= allowed.len() && infos.iter().zip(&counts).all(|(t, &n)| n <= t.cpus.len())
        });
        let table_types: Vec<(String, FeatureSet)> =
            infos.iter().map(|t| (t.name.clone(), t.features)).collect();
        let choices = crate::names::validate(&table_types).map_err(ConfigError::ThreadTable)?;
        let workers = total;
        let mut service_ty = None;
        if self.hypercore {
            if let Some(t) = infos.iter().find(|t| t.name == SERVICE_TYPE) {
                return Err(ConfigError::ReservedTypeName {
                    name: t.name.clone(),
                });
            }
            if total + 1 > MAX_CORES {
                return Err(ConfigError::TooManyCores {
                    requested: total + 1,
                    service_core: true,
                });
            }
            // The last CPU; on a one-CPU machine, that CPU unpinned.
            let cpus = vec![*allowed.last().unwrap_or(&0)];
            service_ty = Some(infos.len());
            infos.push(TypeInfo {
                name: SERVICE_TYPE.to_owned(),
                cpus,
                features: topology::machine_features(),
            });
            counts.push(1);
        }
        // The hypercore starts after the workers, so its id is the number of workers.
        let hyper = service_ty.map(|_| workers);
        // A hypercore that shares its CPU with a worker core does not spin when idle:
        // its spinning would take that worker's time.
        let shares_cpu = service_ty.is_some_and(|s| {
            let cpu = infos[s].cpus[0];
            allowed.len() == 1 || infos[..s].iter().any(|t| t.cpus.contains(&cpu))
        });
        let spin = self.idle_spin;
        let clock = crate::preempt::Clock::new(self.preempt.clone());
        let shared = Arc::new_cyclic(|weak: &std::sync::Weak<Shared>| {
            // The set is the first field of `Shared` (`repr(C)`): its address is the
            // runtime's, which the cores keep.
            let p = weak.as_ptr().cast::<CoreSet>();
            // The service's address in the runtime being built, for the cores' roles:
            // nothing is read through it before the runtime exists.
            // SAFETY: only an address is computed; the allocation exists.
            let service = unsafe { std::ptr::addr_of!((*weak.as_ptr()).offload) };
            Shared {
                set: CoreSet {
                    cores: (0..MAX_CORES)
                        .map(|i| {
                            let spin = if Some(i) == hyper && shares_cpu {
                                Duration::ZERO
                            } else {
                                spin
                            };
                            Core::new(i, p, spin)
                        })
                        .collect(),
                    slots: Slots::new(MAX_CORES),
                    hwm: AtomicUsize::new(0),
                    types: infos,
                    foreign_typed: std::array::from_fn(|_| AtomicI64::new(0)),
                    hyper,
                    service_ty,
                    maint_ty: service_ty.unwrap_or(0),
                },
                pinned,
                default_stack,
                shutdown: AtomicBool::new(false),
                choices,
                clock,
                admin: Mutex::new(()),
                one_cpu: allowed.len() == 1,
                offload: crate::offload::Service::new(),
                serve_role: crate::offload::ServeRole { service },
                collect_role: crate::offload::CollectRole { service },
                poller: crate::io::Poller::new(),
                blocking: crate::blocking::Pool::default(),
                maintenance: Mutex::new(Vec::new()),
                shutdown_timeout: self.shutdown_timeout,
                stopping: AtomicBool::new(false),
                running_cores: AtomicUsize::new(0),
                deferred: AtomicBool::new(false),
                reclaimed: AtomicBool::new(false),
            }
        });
        let rt = Runtime {
            handle: Handle { shared },
        };
        let _g = rt
            .handle
            .shared
            .admin
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (ty, &n) in counts.iter().enumerate() {
            for _ in 0..n {
                rt.handle
                    .start_core(ty, None)
                    .map_err(|e| ConfigError::Os {
                        message: e.to_string(),
                    })?;
            }
        }
        drop(_g);
        crate::maintenance::start(&rt.handle.shared).map_err(|e| ConfigError::Os {
            message: e.to_string(),
        })?;
        // The ticker (time slices, preemption, watchdog).
        crate::preempt::start_ticker(&rt.handle.shared).map_err(|e| ConfigError::Os {
            message: e.to_string(),
        })?;
        Ok(rt)
    }
}

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

/// A cloneable reference to a runtime, usable from any thread: spawn into it, add and
/// remove cores, list them. Operations on a runtime that has shut down fail.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
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

impl Runtime {
    /// A builder with the defaults (see [`RuntimeBuilder`]).
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder {
            cores: None,
            pin: None,
            types: Vec::new(),
            stack_size: None,
            idle_spin: DEFAULT_IDLE_SPIN,
            hypercore: true,
            preempt: crate::preempt::Config::default(),
            shutdown_timeout: crate::shutdown::DEFAULT_SHUTDOWN_TIMEOUT,
        }
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

impl Handle {
    /// The runtime of the running spindle thread, or `None` on an OS thread.
    pub fn try_current() -> Option<Handle> {
        let (ctx, _) = crate::sched::CoreCtx::current()?;
        let p: *const Shared = Shared::of(ctx.core());
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

    /// See [`Runtime::block_on`].
    pub fn block_on<F, R>(&self, f: F) -> R
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let opts = SpawnOpts {
            name: Some(Name::Static("main")),
            stack_size: Some(MAIN_STACK_SIZE),
            priority: thread::DEFAULT_PRIORITY,
            main: true,
            target: Target::Any,
            lazy: true,
            time_slice: None,
            preemptible: None,
        };
        // SAFETY: we join the thread before returning, so whatever `f` and `R` borrow outlives it; both are Send.
        let h: JoinHandle<R> = match unsafe { thread::spawn_unchecked(&self.shared, f, opts) } {
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
            .filter(|c| c.state() == CoreState::Active && Some(c.id) != self.shared.hyper)
            .map(|c| self.info(c))
            .collect()
    }

    /// The service core (the hypercore), or `None` if the runtime runs without one
    /// ([`RuntimeBuilder::hypercore`]) or has shut down.
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

    /// Live threads of the type named `name` (a snapshot; `None` for an unknown type).
    pub fn live_threads(&self, name: &str) -> Option<i64> {
        let ty = self.shared.type_index(name)?;
        Some(self.shared.live_of_type(ty))
    }

    /// Starts a core of type `ty` (a retired core of that type is reused). Call with
    /// the admin lock held.
    fn start_core(&self, ty: usize, reuse: Option<usize>) -> Result<usize, CoreError> {
        let shared = &self.shared;
        let id = match reuse {
            Some(id) => id,
            None => {
                let id = shared.hwm.load(Ordering::Relaxed);
                if id >= MAX_CORES {
                    return Err(CoreError::TooManyCores);
                }
                id
            }
        };
        let core = &shared.cores[id];
        // The previous OS thread of a reused core has finished (it set Retired last).
        if let Some(h) = core
            .os_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = h.join();
        }
        let cpus = &shared.types[ty].cpus;
        let cpu = if Some(ty) == shared.service_ty {
            (!shared.one_cpu).then(|| cpus[0])
        } else if shared.pinned {
            // The CPU of the type with the fewest running cores on it.
            let busy = |cpu: usize| {
                shared
                    .started()
                    .iter()
                    .filter(|c| {
                        c.state() == CoreState::Active && c.cpu.load(Ordering::Relaxed) == cpu
                    })
                    .count()
            };
            cpus.iter().copied().min_by_key(|&c| busy(c))
        } else {
            None
        };
        core.ty.store(ty, Ordering::Relaxed);
        core.cpu.store(cpu.unwrap_or(usize::MAX), Ordering::Relaxed);
        let role: &dyn CoreRole = if Some(id) == shared.hyper {
            &shared.serve_role
        } else {
            &shared.collect_role
        };
        // SAFETY: the core's OS thread is not running (it has not started, or a retired core's has ended: joined above); the role lives in the runtime, which outlives the core.
        unsafe { core.set_role(role) };
        core.halt.store(false, Ordering::Relaxed);
        core.resched.store(false, Ordering::Relaxed);
        core.reopen_inbox();
        core.set_state(CoreState::Active);
        if reuse.is_none() {
            // Release: the core's fields are set before others scan it.
            shared.hwm.store(id + 1, Ordering::Release);
        }
        let handle = self.clone();
        let mask = cpus.clone();
        // Counted before it starts: its end is counted in `core_main`.
        shared.running_cores.fetch_add(1, Ordering::SeqCst);
        let spawned = std::thread::Builder::new()
            .name(format!("spindle-core-{id}"))
            .spawn(move || {
                // A panic here is a bug in the scheduler, with threads' state half
                // updated: stop the process rather than leave it hanging.
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    core_main(handle, id, cpu, mask)
                }));
                if r.is_err() {
                    eprintln!("spindle: core {id} panicked in the scheduler; aborting");
                    std::process::abort();
                }
            });
        match spawned {
            Ok(h) => {
                *core.os_thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(h);
                Ok(id)
            }
            Err(e) => {
                shared.running_cores.fetch_sub(1, Ordering::SeqCst);
                core.set_state(CoreState::Retired);
                Err(CoreError::Os {
                    message: e.to_string(),
                })
            }
        }
    }

    /// Adds a core of the type named `name` while the runtime runs, and returns its id.
    ///
    /// # Errors
    ///
    /// [`CoreError::NoSuchType`], [`CoreError::TooManyCores`], [`CoreError::ShutDown`],
    /// or [`CoreError::Os`].
    pub fn add_core(&self, name: &str) -> Result<usize, CoreError> {
        if crate::fork::forked() {
            return Err(CoreError::Forked);
        }
        let _p = crate::sched::guard::PreemptGuard::new();
        let shared = &self.shared;
        let _g = shared.admin.lock().unwrap_or_else(|e| e.into_inner());
        if shared.shutdown.load(Ordering::Acquire) {
            return Err(CoreError::ShutDown);
        }
        let ty = shared
            .type_index(name)
            .ok_or_else(|| CoreError::NoSuchType {
                name: name.to_owned(),
            })?;
        if let Some(core) = shared.hyper.filter(|_| Some(ty) == shared.service_ty) {
            return Err(CoreError::ServiceCore { core });
        }
        let reuse = shared
            .started()
            .iter()
            .position(|c| c.state() == CoreState::Retired && c.ty.load(Ordering::Relaxed) == ty);
        self.start_core(ty, reuse)
    }

    /// Removes core `id` while the runtime runs: every thread it holds (runnable,
    /// sleeping, parked) moves to the remaining cores of its type. Waits until the
    /// core has handed over its threads, which happens at its next schedule point.
    ///
    /// # Errors
    ///
    /// [`CoreError::NoSuchCore`], [`CoreError::LastCore`],
    /// [`CoreError::LastCoreOfType`] (its type still has threads), or
    /// [`CoreError::ShutDown`]. Nothing changes then.
    pub fn remove_core(&self, id: usize) -> Result<(), CoreError> {
        if crate::fork::forked() {
            return Err(CoreError::Forked);
        }
        let _p = crate::sched::guard::PreemptGuard::new();
        let shared = &self.shared;
        {
            let _g = shared.admin.lock().unwrap_or_else(|e| e.into_inner());
            if shared.shutdown.load(Ordering::Acquire) {
                return Err(CoreError::ShutDown);
            }
            let started = shared.started();
            let Some(core) = started.get(id).filter(|c| c.state() == CoreState::Active) else {
                return Err(CoreError::NoSuchCore { core: id });
            };
            if shared.hyper == Some(id) {
                return Err(CoreError::ServiceCore { core: id });
            }
            let active: Vec<&Core> = started
                .iter()
                .filter(|c| c.state() == CoreState::Active && Some(c.id) != shared.hyper)
                .collect();
            if active.len() == 1 {
                return Err(CoreError::LastCore { core: id });
            }
            let ty = core.ty.load(Ordering::Relaxed);
            let same_type = active
                .iter()
                .filter(|c| c.ty.load(Ordering::Relaxed) == ty)
                .count();
            let threads = shared.live_of_type(ty);
            if same_type == 1 && threads > 0 {
                return Err(CoreError::LastCoreOfType {
                    core: id,
                    name: shared.types[ty].name.clone(),
                    threads,
                });
            }
            core.set_state(CoreState::Leaving);
            core.halt.store(true, Ordering::Release);
            core.nudge();
        }
        // Wait for the core to retire (it may be the caller's own core: sleep, so the
        // caller is handed over too).
        let core = &shared.cores[id];
        while matches!(core.state(), CoreState::Leaving | CoreState::Evacuating)
            && !shared.shutdown.load(Ordering::Acquire)
        {
            crate::sched::wait::sleep(Duration::from_micros(100));
        }
        Ok(())
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let me = Arc::as_ptr(&self.handle.shared);
        if let Some((ctx, _)) = crate::sched::CoreCtx::current() {
            let mine: *const Shared = Shared::of(ctx.core());
            assert!(
                !std::ptr::eq(mine, me),
                "a spindle Runtime was dropped by one of its own threads: drop it on the OS \
                 thread that built it (its cores could never stop)"
            );
        }
        crate::shutdown::shut_down(&self.handle.shared);
    }
}

/// The body of a core's OS thread: pin, run the scheduler until halted, then retire
/// (removal) or stop (shutdown).
fn core_main(handle: Handle, id: usize, cpu: Option<usize>, mask: Vec<usize>) {
    let shared = handle.shared();
    let core = &shared.cores[id];
    match cpu {
        // Pinning is best effort: a CPU set that changed since `build` leaves the core
        // unpinned rather than failing it.
        Some(cpu) => {
            let _ = topology::pin_current(cpu);
        }
        None => {
            let _ = topology::confine_current(&mask);
        }
    }
    let _alt = AltStack::install();
    core.clock.started();
    loop {
        if core.halt.load(Ordering::Acquire) {
            break;
        }
        // SAFETY: this is the core's scheduler context, on its own OS thread.
        if !unsafe { core.run_next() } && !core.halt.load(Ordering::Acquire) {
            core.idle();
        }
    }
    // SAFETY: scheduler context: complete the switch that brought us back.
    unsafe { core.finish_switch() };
    if core.state() == CoreState::Leaving && !shared.shutdown.load(Ordering::Acquire) {
        retire(shared, core);
    }
    core.clock.stopped();
    crate::shutdown::core_stopped(shared);
}

/// The leaving core's side of removal (see the module docs and `sched::lifecycle`).
/// Runs in the core's scheduler context, after the `finish_switch` of the last thread
/// it ran.
fn retire(shared: &Shared, core: &Core) {
    // None of our threads is on a CPU any more: from now on wakers send them to other
    // cores, and senders stop offering to us.
    core.set_state(CoreState::Evacuating);
    // Grace period: every other started core passes a schedule point.
    let mut waiting: Vec<(usize, u64)> = shared
        .started()
        .iter()
        .filter(|c| c.id != core.id && c.state().is_running())
        .map(|c| (c.id, c.epoch.load(Ordering::Acquire)))
        .collect();
    for &(id, _) in &waiting {
        shared.cores[id].nudge();
    }
    while !waiting.is_empty() {
        if shared.shutdown.load(Ordering::Acquire) {
            return;
        }
        waiting.retain(|&(id, e0)| {
            let c = &shared.cores[id];
            c.state().is_running() && c.epoch.load(Ordering::Acquire) == e0
        });
        // SAFETY: the scheduler context of `core`, on its OS thread.
        unsafe { crate::sched::CoreCtx::stopped(core) }.take_in();
        core.bump_epoch();
        std::thread::yield_now();
    }
    // SAFETY: scheduler context of `core`, after the grace period.
    unsafe {
        core.close_inbox();
        core.evacuate();
    }
    core.halt.store(false, Ordering::Relaxed);
    core.set_state(CoreState::Retired);
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

/// The message of the error `join` returns for a thread abandoned at shutdown.
pub const ABANDONED: &str = "spindle: the runtime shut down before this thread finished";

/// Statistics of the core the caller runs on, or `None` outside a runtime.
pub fn core_stats() -> Option<CoreStats> {
    let (mut ctx, _) = crate::sched::CoreCtx::current()?;
    Some(ctx.stats())
}

/// Payload of the panic-like error of an abandoned thread.
pub(crate) fn abandoned_payload() -> Box<dyn Any + Send> {
    Box::new(ABANDONED)
}
