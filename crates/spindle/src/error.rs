//! Errors.

use std::fmt;

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
