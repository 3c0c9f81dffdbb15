//! Errors.

use std::fmt;

use crate::limits::{MAX_CORES, MAX_TYPES};
use crate::registry::TableError;
use crate::stack::{MAX_STACK_SIZE, MIN_STACK_SIZE};
use crate::task::priority::MAX_PRIORITY;

/// Why a thread could not be spawned. Nothing is lost: the closure is dropped on the
/// spawning thread and no runtime state changes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpawnError {
    /// The stack size is not a power of two between 16 KiB and 8 MiB.
    StackSize {
        /// The size asked for, in bytes.
        requested: usize,
    },
    /// The priority is above [`MAX_PRIORITY`].
    Priority {
        /// The priority asked for.
        requested: u8,
    },
    /// No stack block or join slot could be had.
    OutOfMemory {
        /// Stack size of the failed spawn, in bytes.
        stack_size: usize,
        /// The OS error number, if the kernel refused memory (0 if a table was full).
        errno: i32,
    },
    /// The stack arena's region for this stack size has no room left: it holds
    /// `region_bytes` of address space (sized when the first runtime started, to what
    /// the process could reserve).
    StackRegionFull {
        /// Stack size of the failed spawn, in bytes.
        stack_size: usize,
        /// Address space of the region for this size, in bytes.
        region_bytes: usize,
    },
    /// Called outside a spindle runtime.
    NoRuntime,
    /// The process forked: in the child, the runtime's other OS threads do not exist,
    /// so no runtime can be used there (exec or exit instead).
    Forked,
    /// No running core has this id.
    NoSuchCore {
        /// The id given.
        core: usize,
    },
    /// No core type has this name.
    NoSuchType {
        /// The name given.
        name: String,
    },
    /// The core type exists but has no running core.
    NoCoreOfType {
        /// The type's name.
        name: String,
    },
    /// The runtime has shut down.
    ShutDown,
    /// The target is the service core (the hypercore), which runs maintenance threads
    /// only.
    ServiceCore {
        /// The service core's id.
        core: usize,
    },
    /// The time slice is zero.
    TimeSlice,
    /// No `#[spindle::thread]` has this name.
    UnknownName {
        /// The name given.
        name: String,
        /// The names in the table.
        known: Vec<String>,
    },
    /// The named thread takes or returns other types than the spawn gave.
    TypeMismatch {
        /// The thread's name.
        name: String,
        /// Its signature, `fn(A) -> R`.
        expected: String,
        /// The signature the spawn asked for.
        given: String,
    },
    /// No variant of the named thread can run on the chosen core's type.
    NoRunnableVariant {
        /// The thread's name.
        name: String,
        /// The core type chosen.
        core_type: String,
        /// Each variant with the features that type lacks for it.
        variants: Vec<String>,
    },
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::StackSize { requested } => write!(
                f,
                "stack size {requested} bytes is invalid: use a power of two from {MIN_STACK_SIZE} \
                 (16 KiB) to {MAX_STACK_SIZE} (8 MiB), for example Builder::stack_size(64 * 1024)"
            ),
            SpawnError::Priority { requested } => write!(
                f,
                "priority {requested} is out of range: use 0 (least urgent) to {MAX_PRIORITY} \
                 (most urgent); the default is {}",
                crate::task::priority::DEFAULT_PRIORITY
            ),
            SpawnError::OutOfMemory { stack_size, errno } => {
                write!(f, "no memory for a {stack_size}-byte stack")?;
                if *errno != 0 {
                    write!(f, " ({})", std::io::Error::from_raw_os_error(*errno))?;
                }
                write!(
                    f,
                    ": join or drop finished threads, use a smaller stack size, or raise \
                     vm.max_map_count if guard pages fall back to mprotect"
                )
            }
            SpawnError::StackRegionFull {
                stack_size,
                region_bytes,
            } => write!(
                f,
                "no room for another {stack_size}-byte stack: the stack arena's region for \
                 this size is full ({} stacks in {} MiB of address space, all the arena \
                 reserved per size class): join or drop finished threads, use a smaller stack \
                 size, or let the arena reserve more (raise the address-space limit, ulimit \
                 -v, or {})",
                region_bytes / stack_size,
                region_bytes >> 20,
                crate::stack::ARENA_ENV
            ),
            SpawnError::Forked => f.write_str(FORKED),
            SpawnError::NoRuntime => f.write_str(
                "not inside a spindle runtime: spawn from a thread started by spindle::run \
                 or #[spindle::main], or through a runtime Handle",
            ),
            SpawnError::NoSuchCore { core } => write!(
                f,
                "core {core} does not exist or is not running: pick one from Handle::cores()"
            ),
            SpawnError::ServiceCore { core } => write!(
                f,
                "core {core} is the service core (the hypercore), which runs maintenance \
                 threads only: spawn there with spindle::spawn_maintenance or \
                 Builder::maintenance(), or pick a worker core from Handle::cores()"
            ),
            SpawnError::NoSuchType { name } => write!(
                f,
                "no core type is named '{name}': declare it with RuntimeBuilder::core_type"
            ),
            SpawnError::NoCoreOfType { name } => write!(
                f,
                "core type '{name}' has no running core: add one with Handle::add_core(\"{name}\")"
            ),
            SpawnError::ShutDown => f.write_str("the runtime has shut down: build a new one"),
            SpawnError::TimeSlice => f.write_str(
                "the time slice is zero: give Builder::time_slice a positive duration (it is \
                 rounded up to whole ticks, 1 ms by default)",
            ),
            SpawnError::UnknownName { name, known } => write!(
                f,
                "no named thread '{name}': mark a fn(A) -> R with #[spindle::thread(name = \
                 \"{name}\", variant = \"generic\")] or use one of {known:?} (`spindle names` \
                 lists them)"
            ),
            SpawnError::TypeMismatch {
                name,
                expected,
                given,
            } => write!(
                f,
                "named thread '{name}' is {expected}, but was spawned as {given}: call \
                 spawn_named::<A, R> with its argument and return types"
            ),
            SpawnError::NoRunnableVariant {
                name,
                core_type,
                variants,
            } => write!(
                f,
                "no variant of named thread '{name}' can run on core type '{core_type}' ({}): \
                 spawn it on a core type with those features (Builder::core_type), or add a \
                 `generic` variant",
                variants.join(", ")
            ),
        }
    }
}

impl std::error::Error for SpawnError {}

/// The message of every runtime call made in the child of a `fork`.
pub(crate) const FORKED: &str = "runtime not usable after fork: in the child process the \
     runtime's cores (its OS threads) do not exist; call exec or exit there, and use spindle \
     in the parent";

impl SpawnError {
    /// The error for a spawn from an OS thread that is no spindle thread.
    pub(crate) fn not_in_runtime() -> SpawnError {
        if crate::fork::forked() {
            SpawnError::Forked
        } else {
            SpawnError::NoRuntime
        }
    }

    /// The error for a spawn into a runtime that cannot take it (shut down, or left
    /// behind by a fork).
    pub(crate) fn not_running() -> SpawnError {
        if crate::fork::forked() {
            SpawnError::Forked
        } else {
            SpawnError::ShutDown
        }
    }

    /// The error for a stack block that could not be had.
    pub(crate) fn from_stack(stack_size: usize, e: crate::stack::StackError) -> SpawnError {
        use crate::stack::{ArenaError, StackError};
        match e {
            StackError::RegionFull { region } => SpawnError::StackRegionFull {
                stack_size,
                region_bytes: region,
            },
            StackError::Os(errno) | StackError::Arena(ArenaError::Reserve { errno, .. }) => {
                SpawnError::OutOfMemory { stack_size, errno }
            }
            StackError::Arena(ArenaError::Env { .. }) => SpawnError::OutOfMemory {
                stack_size,
                errno: libc::EINVAL,
            },
        }
    }
}

/// Why a runtime configuration was refused. Nothing was started.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The runtime would have no core.
    ZeroCores,
    /// Zero service cores asked for while the hypercore is on.
    ZeroServiceCores,
    /// A core type is named like the service core's type, which is reserved.
    ReservedTypeName {
        /// The name given.
        name: String,
    },
    /// More cores than a runtime supports.
    TooManyCores {
        /// Cores asked for, the service cores included.
        requested: usize,
        /// Of those, service cores (0 without a hypercore).
        service_cores: usize,
    },
    /// The stack arena (the address space all thread stacks are carved from) could
    /// not be reserved; the message says how much it needs and why it failed.
    StackArena {
        /// What went wrong, in words.
        message: String,
    },
    /// More core types than a runtime supports.
    TooManyTypes {
        /// Types asked for.
        requested: usize,
    },
    /// A core type has an empty name.
    EmptyName,
    /// Two core types share a name.
    DuplicateType {
        /// The name given twice.
        name: String,
    },
    /// A core type has an empty CPU set.
    EmptyType {
        /// The type.
        name: String,
    },
    /// A CPU that does not exist or that this process may not use.
    NoSuchCpu {
        /// The type naming it.
        name: String,
        /// The CPU.
        cpu: usize,
        /// The CPUs this process may use.
        allowed: Vec<usize>,
    },
    /// A feature name spindle does not know.
    UnknownFeature {
        /// The type naming it.
        name: String,
        /// The feature.
        feature: String,
    },
    /// A feature this machine's CPUs lack.
    MissingFeature {
        /// The type naming it.
        name: String,
        /// The feature.
        feature: String,
    },
    /// `RuntimeBuilder::cores` was combined with explicit core types.
    CoresWithTypes,
    /// The default stack size is not a power of two from 16 KiB to 8 MiB.
    StackSize {
        /// The size asked for.
        requested: usize,
    },
    /// The OS refused to start a core's thread.
    Os {
        /// The OS error message.
        message: String,
    },
    /// The named-thread table is invalid for this configuration (every offender is
    /// listed).
    ThreadTable(TableError),
    /// The default time slice is zero.
    TimeSlice,
    /// The tick period is zero.
    Tick,
    /// The watchdog's slice count is zero.
    WatchdogSlices,
    /// The handoff's tick count is zero.
    HandoffTicks,
    /// The spare-thread bound is zero while handoff is on.
    SpareThreads,
    /// The process forked and this is the child: runtimes cannot be used there.
    Forked,
    /// An environment variable that configures the runtime has a value it cannot use.
    Env {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ZeroServiceCores => f.write_str(
                "service_cores(0) asks for no service core while the hypercore is on: ask for 1 \
                 or more, or run without service cores with RuntimeBuilder::hypercore(false)",
            ),
            ConfigError::ZeroCores => f.write_str(
                "a runtime needs at least one core: ask for cores(1) or more (or a core type \
                 with cores(1) or more)",
            ),
            ConfigError::TooManyCores {
                requested,
                service_cores: s @ 1..,
            } => write!(
                f,
                "{} worker cores plus {s} service core{} (the hypercore{}) make {requested}, \
                 but a runtime has at most {MAX_CORES} cores: ask for at most {} worker cores, \
                 or for fewer service cores (RuntimeBuilder::service_cores), or disable them \
                 with RuntimeBuilder::hypercore(false)",
                requested - s,
                if *s == 1 { "" } else { "s" },
                if *s == 1 { "" } else { " first" },
                MAX_CORES.saturating_sub(*s)
            ),
            ConfigError::TooManyCores {
                requested,
                service_cores: 0,
            } => write!(
                f,
                "{requested} cores asked for, but a runtime has at most {MAX_CORES}: ask for fewer"
            ),
            ConfigError::StackArena { message } => f.write_str(message),
            ConfigError::TooManyTypes { requested } => write!(
                f,
                "{requested} core types declared, but a runtime has at most {MAX_TYPES}: merge some"
            ),
            ConfigError::EmptyName => f.write_str("a core type needs a non-empty name"),
            ConfigError::ReservedTypeName { name } => write!(
                f,
                "core type name '{name}' is reserved for the service core (the hypercore): \
                 pick another name, or disable the hypercore with RuntimeBuilder::hypercore(false)"
            ),
            ConfigError::DuplicateType { name } => write!(
                f,
                "core type '{name}' is declared twice: give each type a distinct name"
            ),
            ConfigError::EmptyType { name } => write!(
                f,
                "core type '{name}' has no CPUs: give it at least one with CoreType::cpus"
            ),
            ConfigError::NoSuchCpu { name, cpu, allowed } => write!(
                f,
                "core type '{name}' names CPU {cpu}, which does not exist or which this process \
                 may not use: pick from {allowed:?}"
            ),
            ConfigError::UnknownFeature { name, feature } => write!(
                f,
                "core type '{name}' requires CPU feature '{feature}', which spindle does not \
                 know: use names like \"avx2\" (see spindle::topology::known_features)"
            ),
            ConfigError::MissingFeature { name, feature } => write!(
                f,
                "core type '{name}' requires CPU feature '{feature}', which this machine's CPUs \
                 lack: drop the requirement or run on a machine that has it"
            ),
            ConfigError::CoresWithTypes => f.write_str(
                "cores() sets the size of the default type, but core types were declared: set \
                 each type's size with CoreType::cores instead",
            ),
            ConfigError::StackSize { requested } => write!(
                f,
                "default stack size {requested} bytes is invalid: use a power of two from \
                 {MIN_STACK_SIZE} (16 KiB) to {MAX_STACK_SIZE} (8 MiB)"
            ),
            ConfigError::Os { message } => write!(f, "cannot start a core's OS thread: {message}"),
            ConfigError::ThreadTable(e) => e.fmt(f),
            ConfigError::TimeSlice => f.write_str(
                "the default time slice is zero: give RuntimeBuilder::time_slice a positive \
                 duration (the default is 10 ms)",
            ),
            ConfigError::Tick => f.write_str(
                "the tick period is zero: give RuntimeBuilder::tick a positive duration (the \
                 default is 1 ms), or turn the ticker off with ticker(false)",
            ),
            ConfigError::Forked => f.write_str(crate::error::FORKED),
            ConfigError::Env { var, value } if *var == "SPINDLE_IO_URING" => write!(
                f,
                "{var}={value:?} does not say whether to use io_uring: set it to 1 or 0, or \
                 unset it"
            ),
            ConfigError::Env { var, value } if *var == "SPINDLE_STATS" => write!(
                f,
                "{var}={value:?} does not say whether to publish the stats page: set it to 1 \
                 or 0, or unset it"
            ),
            ConfigError::Env { var, value } if *var == "SPINDLE_SERVICE_CORES" => write!(
                f,
                "{var}={value:?} is not a number of service cores: set it to a whole number \
                 from 1 to {} or unset it",
                MAX_CORES - 1
            ),
            ConfigError::Env { var, value } => write!(
                f,
                "{var}={value:?} is not a number of worker cores: set it to a whole number \
                 from 1 to {} or unset it",
                MAX_CORES - 1
            ),
            ConfigError::WatchdogSlices => f.write_str(
                "the watchdog's slice count is zero: give RuntimeBuilder::watchdog_slices 1 or \
                 more (the default is 10)",
            ),
            ConfigError::HandoffTicks => f.write_str(
                "the handoff's tick count is zero: give RuntimeBuilder::handoff_after 1 or more \
                 (the default is 2), or turn handoff off with handoff(false)",
            ),
            ConfigError::SpareThreads => f.write_str(
                "the spare OS thread bound is zero: give RuntimeBuilder::spare_threads 1 or more \
                 (the default is 128), or turn handoff off with handoff(false)",
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Why adding, removing or migrating to a core failed. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CoreError {
    /// No core has this id, or it is not running.
    NoSuchCore {
        /// The id given.
        core: usize,
    },
    /// No core type has this name.
    NoSuchType {
        /// The name given.
        name: String,
    },
    /// The core is the runtime's last running core.
    LastCore {
        /// The core.
        core: usize,
    },
    /// The core is the last of its type, and threads of that type are alive.
    LastCoreOfType {
        /// The core.
        core: usize,
        /// Its type.
        name: String,
        /// Live threads of the type.
        threads: i64,
    },
    /// The core is the service core (the hypercore): it cannot be removed, added, or
    /// migrated to or from.
    ServiceCore {
        /// The service core's id.
        core: usize,
    },
    /// The runtime has no room for another core.
    TooManyCores,
    /// The runtime has shut down.
    ShutDown,
    /// The caller is not a spindle thread (for `migrate_to`).
    NotInRuntime,
    /// The process forked and this is the child: runtimes cannot be used there.
    Forked,
    /// The OS refused to start the core's thread.
    Os {
        /// The OS error message.
        message: String,
    },
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::NoSuchCore { core } => write!(
                f,
                "core {core} does not exist or is not running: see Handle::cores() for the \
                 running ones"
            ),
            CoreError::NoSuchType { name } => write!(
                f,
                "no core type is named '{name}': declare it with RuntimeBuilder::core_type"
            ),
            CoreError::LastCore { core } => write!(
                f,
                "core {core} is the runtime's last running core: add another core first"
            ),
            CoreError::LastCoreOfType {
                core,
                name,
                threads,
            } => write!(
                f,
                "core {core} is the last core of type '{name}', which still has {threads} live \
                 thread(s): add another core of that type first, or let the threads finish"
            ),
            CoreError::ServiceCore { core } => write!(
                f,
                "core {core} is the service core (the hypercore): it runs the maintenance \
                 threads and is neither added, removed, nor a migration target; disable it \
                 with RuntimeBuilder::hypercore(false) to run upkeep on the worker cores"
            ),
            CoreError::TooManyCores => write!(
                f,
                "the runtime already has {MAX_CORES} cores (running or retired of other types): \
                 remove or reuse some"
            ),
            CoreError::ShutDown => f.write_str("the runtime has shut down"),
            CoreError::Forked => f.write_str(crate::error::FORKED),
            CoreError::NotInRuntime => {
                f.write_str("not a spindle thread: only a running spindle thread can migrate")
            }
            CoreError::Os { message } => write!(f, "cannot start the core's OS thread: {message}"),
        }
    }
}

impl std::error::Error for CoreError {}
