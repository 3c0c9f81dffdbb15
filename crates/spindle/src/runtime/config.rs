//! A runtime's configuration: the builder, the core types, and [`plan`], the pure
//! check that turns a builder and a description of the machine into what the runtime
//! starts (unit-tested below, without starting anything).

use std::time::Duration;

use super::DEFAULT_IDLE_SPIN;
use crate::error::ConfigError;
use crate::limits::{MAX_CORES, MAX_TYPES};
use crate::registry::{Choices, TableError};
use crate::sched::TypeInfo;
use crate::stack::{DEFAULT_STACK_SIZE, MAX_STACK_SIZE, MIN_STACK_SIZE};
use crate::topology::{self, DEFAULT_TYPE, DetectedType, FeatureSet, SERVICE_TYPE};

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

/// The environment variable that sets the number of worker cores of a runtime whose
/// builder names none (like Go's `GOMAXPROCS`).
pub const CORES_ENV: &str = "SPINDLE_CORES";

/// The environment variable that turns the service core's io_uring on (`1`) or off
/// (`0`) for runtimes whose builder does not say ([`RuntimeBuilder::io_uring`]).
pub const IO_URING_ENV: &str = "SPINDLE_IO_URING";

/// The environment variable that sets the number of service cores of runtimes whose
/// builder does not say ([`RuntimeBuilder::service_cores`]).
pub const SERVICE_CORES_ENV: &str = "SPINDLE_SERVICE_CORES";

/// Configures a [`Runtime`](crate::Runtime); see [`Runtime::builder`](crate::Runtime::builder).
#[derive(Debug, Clone)]
#[must_use = "a RuntimeBuilder does nothing until build is called"]
pub struct RuntimeBuilder {
    pub(super) cores: Option<usize>,
    pub(super) pin: Option<bool>,
    pub(super) types: Vec<CoreType>,
    pub(super) stack_size: Option<usize>,
    pub(super) idle_spin: Duration,
    pub(super) hypercore: bool,
    pub(super) service_cores: Option<usize>,
    pub(super) io_uring: Option<bool>,
    pub(super) dump_on_sigquit: bool,
    pub(super) stats: Option<bool>,
    pub(super) trace: Option<std::path::PathBuf>,
    pub(super) preempt: crate::preempt::config::Config,
    pub(super) shutdown_timeout: Duration,
}

impl RuntimeBuilder {
    /// The defaults (`Runtime::builder`).
    pub(super) fn defaults() -> RuntimeBuilder {
        RuntimeBuilder {
            cores: None,
            pin: None,
            types: Vec::new(),
            stack_size: None,
            idle_spin: DEFAULT_IDLE_SPIN,
            hypercore: true,
            service_cores: None,
            io_uring: None,
            dump_on_sigquit: true,
            stats: None,
            trace: None,
            preempt: crate::preempt::config::Config::default(),
            shutdown_timeout: super::shutdown::DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

impl RuntimeBuilder {
    /// Whether the service core uses io_uring: the builder's word, else
    /// [`IO_URING_ENV`], else no.
    pub(super) fn wants_io_uring(&self) -> Result<bool, ConfigError> {
        switch(self.io_uring, IO_URING_ENV)
    }

    /// How long dropping the runtime waits for its threads (default
    /// [`DEFAULT_SHUTDOWN_TIMEOUT`](crate::DEFAULT_SHUTDOWN_TIMEOUT), 1 s): first for
    /// the threads still blocked to unwind (their destructors run), then for the cores
    /// to stop. A thread that neither reaches a schedule point nor can be preempted
    /// keeps its core after that: the drop returns anyway, says so on stderr, and the
    /// runtime's remaining threads and memory are reclaimed when that thread stops.
    /// See [`Runtime`](crate::Runtime) for the whole sequence.
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

    /// Whether the runtime publishes its live stats page for `spindle top PID`
    /// ([`page`](crate::page)): per core its state, threads, switches, spawns,
    /// steals and offloaded calls, and the threads that ran most, rewritten every
    /// 250 ms by a maintenance thread (workers do nothing for it). Default: the
    /// environment variable [`STATS_ENV`](crate::page::STATS_ENV) (`SPINDLE_STATS`,
    /// `1` or `0`) if set, else off.
    pub fn stats(mut self, on: bool) -> RuntimeBuilder {
        self.stats = Some(on);
        self
    }

    /// Records what the scheduler does into `path`, a Chrome trace-event JSON file
    /// that Perfetto's UI (ui.perfetto.dev) and `chrome://tracing` load: a track per
    /// core with a slice per run of each thread (and why it ended), and spawns, wakes
    /// (by whom), migrations, offloaded calls and preemptions. Each core records into
    /// a ring of its own; a maintenance thread writes them out every 10 ms, and the
    /// runtime's drop closes the file (a process that exits without dropping its
    /// runtime leaves it unfinished). Default: the environment variable
    /// [`TRACE_ENV`](crate::TRACE_ENV) (`SPINDLE_TRACE=out.json`) if set, else no
    /// trace. Off, a switch pays one relaxed load for it. `spindle trace summary
    /// FILE` sums a trace up per thread.
    pub fn trace(mut self, path: impl Into<std::path::PathBuf>) -> RuntimeBuilder {
        self.trace = Some(path.into());
        self
    }

    /// The trace file: the builder's, else `SPINDLE_TRACE`'s (empty: none). The
    /// environment's path goes to the first runtime of the process; the next ones
    /// get `NAME-2.EXT`, `NAME-3.EXT`, ... beside it, so that none overwrites another.
    pub(super) fn trace_path(&self) -> Option<std::path::PathBuf> {
        static FROM_ENV: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        if let Some(p) = &self.trace {
            return Some(p.clone());
        }
        let p: std::path::PathBuf = std::env::var_os(crate::tracefile::TRACE_ENV)
            .filter(|v| !v.is_empty())?
            .into();
        let n = FROM_ENV.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if n == 1 {
            return Some(p);
        }
        let stem = p
            .file_stem()
            .map_or_else(Default::default, |s| s.to_string_lossy().into_owned());
        let name = match p.extension() {
            Some(ext) => format!("{stem}-{n}.{}", ext.to_string_lossy()),
            None => format!("{stem}-{n}"),
        };
        Some(p.with_file_name(name))
    }

    /// Whether the runtime publishes its stats page: the builder's word, else
    /// `SPINDLE_STATS`, else no.
    pub(super) fn wants_stats(&self) -> Result<bool, ConfigError> {
        switch(self.stats, crate::page::STATS_ENV)
    }

    /// Whether `SIGQUIT` (Ctrl-\\ in a terminal) prints this runtime's thread dump
    /// ([`Handle::dump`](crate::Handle::dump)) to stderr (default: yes). The process
    /// goes on running afterwards. The handler is installed once per process, and only
    /// if the program has not given `SIGQUIT` a disposition of its own (then nothing
    /// is printed and `SIGQUIT` does what the program said).
    pub fn dump_on_sigquit(mut self, on: bool) -> RuntimeBuilder {
        self.dump_on_sigquit = on;
        self
    }

    /// Number of service cores (with the hypercore on). Each serves the offloaded calls
    /// and collects for a share of the worker cores; the first (the hypercore) also
    /// runs every maintenance thread and dispatches socket readiness. Service cores
    /// take the last CPUs the process may use, one per last-level cache when there
    /// are several, and a worker is served by a service core on its own last-level
    /// cache where there is one (the request lines stay in that cache), else by the
    /// one serving the fewest workers.
    ///
    /// Default: [`SERVICE_CORES_ENV`] (`SPINDLE_SERVICE_CORES`) if set, else one per
    /// last-level-cache domain with at least 4 CPUs the process may use, at least one
    /// (one on a single-socket machine: one service core kept up with 15 workers in
    /// the http bench of a 16-core Xeon). Zero is a
    /// [`ConfigError::ZeroServiceCores`].
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = spindle::Runtime::builder().cores(2).service_cores(2).build().unwrap();
    /// assert_eq!(spindle::sys::service_stats(rt.handle()).unwrap().service_cores, 2);
    /// ```
    pub fn service_cores(mut self, n: usize) -> RuntimeBuilder {
        self.service_cores = Some(n);
        self
    }

    /// Whether the service core makes the offloaded calls through an io_uring
    /// (`spindle::sys::Backend::IoUring`) rather than one plain system call each
    /// (`Backend::Epoll`). Default: the environment variable [`IO_URING_ENV`]
    /// (`SPINDLE_IO_URING`, `1` or `0`) if set, else off. Where io_uring is missing or
    /// refused (an older kernel, a seccomp profile), the runtime uses the plain calls
    /// whatever this says; [`crate::sys::service_stats`] reports which is in use.
    ///
    /// With the ring, the calls of one pass go to the kernel in one `io_uring_enter`,
    /// and a socket read, write or accept of [`crate::net`] waits in the kernel (one
    /// step for readiness and the call) holding no request slot. It is off by default
    /// because it measured slower on a 2-vCPU VM: the `http` bench served 56k req/s
    /// with it against 85k with plain calls (README, "System calls").
    pub fn io_uring(mut self, on: bool) -> RuntimeBuilder {
        self.io_uring = Some(on);
        self
    }

    /// Number of cores of the default type (when no core types are declared). Default:
    /// the value of the environment variable [`CORES_ENV`] (`SPINDLE_CORES`) if set,
    /// else one per CPU the process may use, minus those of the service cores (one
    /// with the default single service core), at least one. A `SPINDLE_CORES` that is not a positive number is a
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

    /// Whether a worker core whose OS thread blocks in the kernel goes to another OS
    /// thread (default `true`).
    ///
    /// With handoff, ordinary blocking code — `std::thread::sleep`, `std::fs`, a
    /// `read` on a pipe, a `std::sync::Mutex` whose holder was preempted — stalls only
    /// the thread that calls it: once the core's thread has passed no schedule point
    /// for [`handoff_after`](RuntimeBuilder::handoff_after) ticks and its OS thread
    /// sleeps in the kernel, the tick gives the core to a spare OS thread, which runs
    /// its other threads. The blocked thread runs on, off any core, until its next
    /// runtime call puts it back on a core of its type (its own core if bound). The
    /// detection costs the workers nothing: the tick reads what each core publishes,
    /// and reads `/proc` only for a core that has not moved.
    ///
    /// With `false`, a blocking call holds its core's OS thread and every thread
    /// queued on that core waits until it returns (a `std::sync::Mutex` held by a
    /// thread of the same core then deadlocks it); no spare OS thread is ever started.
    /// [`blocking`](crate::blocking) still moves a call off the core at once.
    /// Handoff needs the ticker ([`ticker`](RuntimeBuilder::ticker)), and applies to
    /// worker cores: the calls the service core serves are made not to block instead
    /// (pipes and sockets wait on the poller, disk calls run on the blocking pool).
    pub fn handoff(mut self, on: bool) -> RuntimeBuilder {
        self.preempt.handoff = on;
        self
    }

    /// Ticks a core's thread may block its OS thread in the kernel before the core
    /// is handed to a spare OS thread (default
    /// [`DEFAULT_HANDOFF_TICKS`](crate::DEFAULT_HANDOFF_TICKS), 2: about 2 ms with the
    /// default tick). Zero is a [`ConfigError::HandoffTicks`].
    pub fn handoff_after(mut self, ticks: u32) -> RuntimeBuilder {
        self.preempt.handoff_ticks = ticks;
        self
    }

    /// At most this many OS threads beyond one per core carry the cores handed off
    /// while their OS threads block (default
    /// [`DEFAULT_SPARE_THREADS`](crate::DEFAULT_SPARE_THREADS), 128). A spare that
    /// has had no core for 10 s ends. When every spare is in use, a stuck core waits
    /// for one, and stderr says so once, naming the threads blocked off their cores.
    /// Zero, with handoff on, is a [`ConfigError::SpareThreads`].
    pub fn spare_threads(mut self, n: usize) -> RuntimeBuilder {
        self.preempt.spare_threads = n;
        self
    }
}

/// Picks the variant of each named thread for a list of core types (the signature of
/// `registry::validate`).
pub(super) type Choose = fn(&[(String, FeatureSet)]) -> Result<Choices, TableError>;

/// What [`plan`] needs to know of the machine and the environment.
pub(super) struct Machine<'a> {
    /// The CPUs the process may use, ascending.
    pub(super) allowed: Vec<usize>,
    /// The machine's classes of CPUs (`topology::detected_types`).
    pub(super) detected: &'a [DetectedType],
    /// The features every CPU has (`topology::machine_features`).
    pub(super) features: FeatureSet,
    /// The value of [`CORES_ENV`], if set.
    pub(super) cores_env: Option<String>,
    /// The value of [`SERVICE_CORES_ENV`], if set.
    pub(super) service_env: Option<String>,
    /// The allowed CPUs grouped by last-level cache (`topology::llc_groups`).
    pub(super) llc: Vec<Vec<usize>>,
    /// The variant of each named thread for a list of core types
    /// (`registry::validate` on the linked table).
    pub(super) choose: Choose,
}

impl Machine<'static> {
    /// This machine, as the process sees it now.
    pub(super) fn this() -> Machine<'static> {
        Machine {
            allowed: topology::allowed_cpus(),
            detected: topology::detected_types(),
            features: topology::machine_features(),
            cores_env: std::env::var_os(CORES_ENV).map(|v| v.to_string_lossy().into_owned()),
            service_env: std::env::var_os(SERVICE_CORES_ENV)
                .map(|v| v.to_string_lossy().into_owned()),
            llc: topology::llc_groups(&topology::allowed_cpus()),
            choose: crate::registry::validate,
        }
    }
}

/// A checked configuration: what the runtime starts.
pub(super) struct Plan {
    /// Every core type, the service type (if any) last.
    pub(super) types: Vec<TypeInfo>,
    /// Cores to start per type, in the order of `types`.
    pub(super) counts: Vec<usize>,
    /// The service type's index, if the runtime has a hypercore.
    pub(super) service_ty: Option<usize>,
    /// The hypercore's core id (the service cores start after the workers).
    pub(super) hyper: Option<usize>,
    /// Service cores (0 without a hypercore).
    pub(super) services: usize,
    /// Whether cores are pinned to single CPUs.
    pub(super) pinned: bool,
    /// The default stack size of the runtime's threads.
    pub(super) default_stack: usize,
    /// A service core shares its CPU with a worker core (or another service core), so
    /// no core spins when idle.
    pub(super) hyper_shares_cpu: bool,
    /// The process may use a single CPU.
    pub(super) one_cpu: bool,
    /// The variant of each named thread to run on each type.
    pub(super) choices: Choices,
}

/// Checks `b` against `m` and decides the cores: every [`ConfigError`] a builder can
/// cause, except those of the process's state (fork, stack arena, OS threads).
pub(super) fn plan(b: &RuntimeBuilder, m: &Machine<'_>) -> Result<Plan, ConfigError> {
    b.preempt.validate()?;
    let allowed = &m.allowed;
    let default_stack = b.stack_size.unwrap_or(DEFAULT_STACK_SIZE);
    if !default_stack.is_power_of_two()
        || !(MIN_STACK_SIZE..=MAX_STACK_SIZE).contains(&default_stack)
    {
        return Err(ConfigError::StackSize {
            requested: default_stack,
        });
    }
    let mut types = b.types.clone();
    let services = match b.service_cores {
        Some(0) if b.hypercore => return Err(ConfigError::ZeroServiceCores),
        Some(n) => n,
        None => match count_from_env(SERVICE_CORES_ENV, m.service_env.as_deref())? {
            Some(n) => n,
            None => m.llc.iter().filter(|g| g.len() >= 4).count().max(1),
        },
    };
    // Without a hypercore the last CPU stays free all the same (for the program's
    // own OS threads).
    let service_cpus = service_cpus(if b.hypercore { services } else { 1 }, allowed, &m.llc);
    // The environment sizes the default type only.
    let cores_asked = match b.cores {
        Some(n) => Some(n),
        None if types.is_empty() => count_from_env(CORES_ENV, m.cores_env.as_deref())?,
        None => None,
    };
    if types.is_empty() && cores_asked.is_none() && m.detected.len() > 1 {
        // A hybrid machine: one type per class of CPUs, one core per CPU.
        for t in m.detected {
            types.push(CoreType::new(t.name.clone()).cpus(t.cpus.clone()));
        }
    } else if types.is_empty() {
        // The CPUs left to the workers once the service cores have theirs.
        let rest: Vec<usize> = allowed
            .iter()
            .copied()
            .filter(|c| !service_cpus.contains(c))
            .collect();
        let cores = cores_asked.unwrap_or(rest.len().max(1));
        let cpus = if !rest.is_empty() && cores <= rest.len() {
            rest
        } else {
            allowed.clone()
        };
        types.push(CoreType::new(DEFAULT_TYPE).cpus(cpus).cores(cores));
    } else if b.cores.is_some() {
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
        let cpus = check_type(t, &types[..i], m)?;
        counts.push(t.cores.unwrap_or(cpus.len()));
        let features = match &t.features {
            Some(f) => FeatureSet::parse(f).unwrap_or_default().closure(),
            None => m
                .detected
                .iter()
                .find(|d| cpus.iter().all(|c| d.cpus.contains(c)))
                .map_or(m.features, |d| d.features),
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
            service_cores: 0,
        });
    }
    let pinned = b.pin.unwrap_or_else(|| {
        total <= allowed.len() && infos.iter().zip(&counts).all(|(t, &n)| n <= t.cpus.len())
    });
    let table_types: Vec<(String, FeatureSet)> =
        infos.iter().map(|t| (t.name.clone(), t.features)).collect();
    let choices = (m.choose)(&table_types).map_err(ConfigError::ThreadTable)?;
    let mut service_ty = None;
    if b.hypercore {
        if let Some(t) = infos.iter().find(|t| t.name == SERVICE_TYPE) {
            return Err(ConfigError::ReservedTypeName {
                name: t.name.clone(),
            });
        }
        if total + services > MAX_CORES {
            return Err(ConfigError::TooManyCores {
                requested: total + services,
                service_cores: services,
            });
        }
        // One CPU each (on a one-CPU machine, that CPU unpinned).
        service_ty = Some(infos.len());
        infos.push(TypeInfo {
            name: SERVICE_TYPE.to_owned(),
            cpus: service_cpus.clone(),
            features: m.features,
        });
        counts.push(services);
    }
    // A service core that shares its CPU with a worker core or another service core
    // does not spin when idle: its spinning would take that core's time.
    let hyper_shares_cpu = service_ty.is_some_and(|s| {
        allowed.len() == 1
            || service_cpus.len() < services
            || service_cpus
                .iter()
                .any(|cpu| infos[..s].iter().any(|t| t.cpus.contains(cpu)))
    });
    Ok(Plan {
        types: infos,
        counts,
        service_ty,
        // The service cores start after the workers, so the first one's id is the
        // number of workers.
        hyper: service_ty.map(|_| total),
        services: if service_ty.is_some() { services } else { 0 },
        pinned,
        default_stack,
        hyper_shares_cpu,
        one_cpu: allowed.len() == 1,
        choices,
    })
}

/// Checks one declared core type against those before it and the machine, and
/// returns its CPUs.
fn check_type(
    t: &CoreType,
    before: &[CoreType],
    m: &Machine<'_>,
) -> Result<Vec<usize>, ConfigError> {
    if t.name.is_empty() {
        return Err(ConfigError::EmptyName);
    }
    if before.iter().any(|u| u.name == t.name) {
        return Err(ConfigError::DuplicateType {
            name: t.name.clone(),
        });
    }
    let cpus = t.cpus.clone().unwrap_or_else(|| m.allowed.clone());
    if cpus.is_empty() {
        return Err(ConfigError::EmptyType {
            name: t.name.clone(),
        });
    }
    if let Some(&cpu) = cpus.iter().find(|c| !m.allowed.contains(c)) {
        return Err(ConfigError::NoSuchCpu {
            name: t.name.clone(),
            cpu,
            allowed: m.allowed.clone(),
        });
    }
    for feature in t.features.iter().flatten() {
        let Some(bit) = topology::feature_bit(feature) else {
            return Err(ConfigError::UnknownFeature {
                name: t.name.clone(),
                feature: feature.clone(),
            });
        };
        if m.features.0 & (1 << bit) == 0 {
            return Err(ConfigError::MissingFeature {
                name: t.name.clone(),
                feature: feature.clone(),
            });
        }
    }
    Ok(cpus)
}

/// The CPUs of `n` service cores: the last allowed CPU of each last-level-cache
/// group in turn (groups with more CPUs first), then the CPU before it, and so on;
/// at most one per allowed CPU (more service cores share them).
fn service_cpus(n: usize, allowed: &[usize], llc: &[Vec<usize>]) -> Vec<usize> {
    let mut groups: Vec<Vec<usize>> = llc
        .iter()
        .map(|g| g.iter().copied().filter(|c| allowed.contains(c)).collect())
        .filter(|g: &Vec<usize>| !g.is_empty())
        .collect();
    let covered: usize = groups.iter().map(Vec::len).sum();
    if covered < allowed.len() {
        groups = vec![allowed.to_vec()];
    }
    groups.sort_by_key(|g| std::cmp::Reverse(g.len()));
    let mut cpus = Vec::new();
    let mut taken = vec![0usize; groups.len()];
    while cpus.len() < n.min(allowed.len()) {
        for (g, t) in groups.iter().zip(taken.iter_mut()) {
            if cpus.len() < n && *t < g.len() {
                cpus.push(g[g.len() - 1 - *t]);
                *t += 1;
            }
        }
    }
    cpus
}

/// The service core (index among the service cores) that serves a worker on `cpu`
/// (if pinned): one whose CPU shares the worker's last-level cache, else any; of
/// those, the one serving the fewest workers (`load`), the first on ties.
pub(super) fn route(
    cpu: Option<usize>,
    service_cpus: &[usize],
    llc: &[Vec<usize>],
    load: &[usize],
) -> usize {
    let group = cpu.and_then(|c| llc.iter().find(|g| g.contains(&c)));
    let near =
        |k: &usize| group.is_some_and(|g| service_cpus.get(*k).is_some_and(|sc| g.contains(sc)));
    let all = 0..load.len();
    let pick = |ks: &mut dyn Iterator<Item = usize>| ks.min_by_key(|&k| (load[k], k));
    pick(&mut all.clone().filter(near))
        .or_else(|| pick(&mut all.clone()))
        .unwrap_or(0)
}

/// An on/off setting: the builder's word, else environment variable `var` (`1` or
/// `0`; anything else is a [`ConfigError::Env`]), else off.
fn switch(builder: Option<bool>, var: &'static str) -> Result<bool, ConfigError> {
    if let Some(on) = builder {
        return Ok(on);
    }
    match std::env::var(var) {
        Err(_) => Ok(false),
        Ok(v) if v == "1" => Ok(true),
        Ok(v) if v == "0" => Ok(false),
        Ok(value) => Err(ConfigError::Env { var, value }),
    }
}

/// The count environment variable `var` (value `value`, if set) asks for: a positive
/// number ([`CORES_ENV`], [`SERVICE_CORES_ENV`]).
fn count_from_env(var: &'static str, value: Option<&str>) -> Result<Option<usize>, ConfigError> {
    let Some(value) = value else {
        return Ok(None);
    };
    match value.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(Some(n)),
        _ => Err(ConfigError::Env {
            var,
            value: value.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Runtime;

    /// A homogeneous machine with `cpus` CPUs and the features `features`.
    fn machine(cpus: usize, features: FeatureSet) -> Machine<'static> {
        let allowed: Vec<usize> = (0..cpus).collect();
        let detected = Box::leak(Box::new([DetectedType {
            name: DEFAULT_TYPE.to_owned(),
            cpus: allowed.clone(),
            features,
        }]));
        Machine {
            allowed,
            detected,
            features,
            cores_env: None,
            service_env: None,
            llc: vec![(0..cpus).collect()],
            choose: crate::registry::validate,
        }
    }

    fn avx2() -> FeatureSet {
        FeatureSet::parse(["avx2"]).unwrap().closure()
    }

    fn cpus_of(p: &Plan) -> Vec<(String, Vec<usize>, usize)> {
        p.types
            .iter()
            .zip(&p.counts)
            .map(|(t, &n)| (t.name.clone(), t.cpus.clone(), n))
            .collect()
    }

    #[test]
    fn the_default_keeps_the_last_cpu_for_the_hypercore() {
        let p = plan(&Runtime::builder(), &machine(4, avx2())).unwrap();
        assert_eq!(
            cpus_of(&p),
            [
                ("default".to_owned(), vec![0, 1, 2], 3),
                ("service".to_owned(), vec![3], 1)
            ]
        );
        assert_eq!((p.service_ty, p.hyper), (Some(1), Some(3)));
        assert!(p.pinned && !p.hyper_shares_cpu && !p.one_cpu);
        assert_eq!(p.default_stack, DEFAULT_STACK_SIZE);
    }

    #[test]
    fn service_cores_follow_the_last_level_caches() {
        // Two L3 domains of 8 CPUs: one service core on the last CPU of each.
        let mut m = machine(16, avx2());
        m.llc = vec![(0..8).collect(), (8..16).collect()];
        let p = plan(&Runtime::builder(), &m).unwrap();
        let workers: Vec<usize> = (0..7).chain(8..15).collect();
        assert_eq!(
            cpus_of(&p),
            [
                ("default".to_owned(), workers, 14),
                ("service".to_owned(), vec![7, 15], 2)
            ]
        );
        assert_eq!((p.hyper, p.services), (Some(14), 2));
        assert!(p.pinned && !p.hyper_shares_cpu);
        // One domain, or domains too small to spare a CPU: one service core.
        assert_eq!(
            plan(&Runtime::builder(), &machine(16, avx2()))
                .unwrap()
                .services,
            1
        );
        m.llc = vec![vec![0, 1, 2], (3..16).collect()];
        assert_eq!(plan(&Runtime::builder(), &m).unwrap().services, 1);
    }

    #[test]
    fn service_cores_can_be_asked_for() {
        let mut m = machine(4, avx2());
        let p = plan(&Runtime::builder().service_cores(2), &m).unwrap();
        assert_eq!(
            cpus_of(&p),
            [
                ("default".to_owned(), vec![0, 1], 2),
                ("service".to_owned(), vec![3, 2], 2)
            ]
        );
        // More than the CPUs: they share them, and do not spin.
        let p = plan(&Runtime::builder().cores(1).service_cores(5), &m).unwrap();
        assert_eq!(cpus_of(&p)[1], ("service".to_owned(), vec![3, 2, 1, 0], 5));
        assert!(p.hyper_shares_cpu);
        assert_eq!(
            plan(&Runtime::builder().service_cores(0), &m).err(),
            Some(ConfigError::ZeroServiceCores)
        );
        assert!(plan(&Runtime::builder().hypercore(false).service_cores(0), &m).is_ok());
        m.service_env = Some("3".to_owned());
        assert_eq!(plan(&Runtime::builder(), &m).unwrap().services, 3);
        for bad in ["x", "0", ""] {
            m.service_env = Some(bad.to_owned());
            assert_eq!(
                plan(&Runtime::builder(), &m).err(),
                Some(ConfigError::Env {
                    var: SERVICE_CORES_ENV,
                    value: bad.to_owned()
                })
            );
        }
    }

    #[test]
    fn a_worker_is_served_on_its_own_cache_else_by_the_least_loaded() {
        let llc = vec![(0..4).collect::<Vec<_>>(), (4..8).collect()];
        let service_cpus = [3, 7];
        assert_eq!(route(Some(5), &service_cpus, &llc, &[0, 9]), 1);
        assert_eq!(route(Some(1), &service_cpus, &llc, &[9, 0]), 0);
        // Unpinned, or no service core near: the least loaded, the first on ties.
        assert_eq!(route(None, &service_cpus, &llc, &[2, 1]), 1);
        assert_eq!(route(None, &service_cpus, &llc, &[1, 1]), 0);
        assert_eq!(route(Some(5), &[3, 2], &llc, &[3, 1]), 1);
    }

    #[test]
    fn one_cpu_shares_it_with_the_hypercore() {
        let p = plan(&Runtime::builder(), &machine(1, avx2())).unwrap();
        assert_eq!(
            cpus_of(&p),
            [
                ("default".to_owned(), vec![0], 1),
                ("service".to_owned(), vec![0], 1)
            ]
        );
        assert!(p.hyper_shares_cpu && p.one_cpu);
    }

    #[test]
    fn without_a_hypercore_there_is_no_service_type() {
        let p = plan(
            &Runtime::builder().hypercore(false).cores(2),
            &machine(4, avx2()),
        )
        .unwrap();
        assert_eq!(cpus_of(&p), [("default".to_owned(), vec![0, 1, 2], 2)]);
        assert_eq!((p.service_ty, p.hyper), (None, None));
    }

    #[test]
    fn the_environment_sizes_the_default_type_only() {
        let mut m = machine(4, avx2());
        m.cores_env = Some(" 6 ".to_owned());
        let p = plan(&Runtime::builder(), &m).unwrap();
        assert_eq!(cpus_of(&p)[0], ("default".to_owned(), vec![0, 1, 2, 3], 6));
        assert!(!p.pinned, "more cores than CPUs are not pinned");
        // An explicit count wins, and a bad value is not read then.
        m.cores_env = Some("lots".to_owned());
        let p = plan(&Runtime::builder().cores(2), &m).unwrap();
        assert_eq!(p.counts[0], 2);
        for bad in ["lots", "0", "-1", ""] {
            m.cores_env = Some(bad.to_owned());
            assert_eq!(
                plan(&Runtime::builder(), &m).err(),
                Some(ConfigError::Env {
                    var: CORES_ENV,
                    value: bad.to_owned()
                })
            );
        }
    }

    #[test]
    fn a_hybrid_machine_gets_one_type_per_class() {
        let mut m = machine(4, avx2());
        m.detected = Box::leak(Box::new([
            DetectedType {
                name: "performance".to_owned(),
                cpus: vec![0, 1],
                features: avx2(),
            },
            DetectedType {
                name: "efficiency".to_owned(),
                cpus: vec![2, 3],
                features: FeatureSet::default(),
            },
        ]));
        let p = plan(&Runtime::builder(), &m).unwrap();
        let names: Vec<_> = cpus_of(&p)
            .into_iter()
            .map(|(n, c, k)| (n, c.len(), k))
            .collect();
        assert_eq!(
            names,
            [
                ("performance".to_owned(), 2, 2),
                ("efficiency".to_owned(), 2, 2),
                ("service".to_owned(), 1, 1)
            ]
        );
        assert_eq!(p.types[1].features, FeatureSet::default());
    }

    #[test]
    fn declared_types_are_checked_one_by_one() {
        let m = machine(2, avx2());
        let with = |t: CoreType| plan(&Runtime::builder().core_type(t), &m).err();
        assert_eq!(with(CoreType::new("")), Some(ConfigError::EmptyName));
        assert_eq!(
            with(CoreType::new("x").cpus([])),
            Some(ConfigError::EmptyType { name: "x".into() })
        );
        assert_eq!(
            with(CoreType::new("x").cpus([5])),
            Some(ConfigError::NoSuchCpu {
                name: "x".into(),
                cpu: 5,
                allowed: vec![0, 1]
            })
        );
        assert_eq!(
            with(CoreType::new("x").features(["warp-drive"])),
            Some(ConfigError::UnknownFeature {
                name: "x".into(),
                feature: "warp-drive".into()
            })
        );
        assert_eq!(
            with(CoreType::new("x").features(["avx512f"])),
            Some(ConfigError::MissingFeature {
                name: "x".into(),
                feature: "avx512f".into()
            })
        );
        assert_eq!(
            with(CoreType::new("service")),
            Some(ConfigError::ReservedTypeName {
                name: "service".into()
            })
        );
        let two = Runtime::builder()
            .core_type(CoreType::new("a"))
            .core_type(CoreType::new("a"));
        assert_eq!(
            plan(&two, &m).err(),
            Some(ConfigError::DuplicateType { name: "a".into() })
        );
        let counted = Runtime::builder().cores(1).core_type(CoreType::new("a"));
        assert_eq!(plan(&counted, &m).err(), Some(ConfigError::CoresWithTypes));
        let zero = Runtime::builder().core_type(CoreType::new("a").cores(0));
        assert_eq!(plan(&zero, &m).err(), Some(ConfigError::ZeroCores));
    }

    #[test]
    fn the_core_limit_counts_the_service_core() {
        let m = machine(2, avx2());
        assert_eq!(
            plan(&Runtime::builder().cores(MAX_CORES), &m).err(),
            Some(ConfigError::TooManyCores {
                requested: MAX_CORES + 1,
                service_cores: 1
            })
        );
        assert_eq!(
            plan(
                &Runtime::builder().hypercore(false).cores(MAX_CORES + 1),
                &m
            )
            .err(),
            Some(ConfigError::TooManyCores {
                requested: MAX_CORES + 1,
                service_cores: 0
            })
        );
        assert!(plan(&Runtime::builder().hypercore(false).cores(MAX_CORES), &m).is_ok());
    }

    #[test]
    fn stack_sizes_and_preemption_settings_are_checked() {
        let m = machine(2, avx2());
        assert_eq!(
            plan(&Runtime::builder().stack_size(100_000), &m).err(),
            Some(ConfigError::StackSize { requested: 100_000 })
        );
        assert_eq!(
            plan(&Runtime::builder().tick(Duration::ZERO), &m).err(),
            Some(ConfigError::Tick)
        );
        assert_eq!(
            plan(&Runtime::builder().watchdog_slices(0), &m).err(),
            Some(ConfigError::WatchdogSlices)
        );
    }
}
