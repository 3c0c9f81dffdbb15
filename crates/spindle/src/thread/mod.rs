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
//!
//! Values per spindle thread are [`local!`](crate::local) keys ([`LocalKey`]);
//! `thread_local!` inside spindle is per OS thread, that is per core.

mod api;
mod builder;
mod entry;
mod future;
mod join;
mod joinset;
mod lazy;
mod local;
mod scope;
mod spawn;

pub use self::api::{
    Thread, current, current_core, migrate_to, spawn, spawn_maintenance, spawn_on, try_current,
};
pub use self::builder::Builder;
pub(crate) use self::builder::SpawnOpts;
pub use self::future::{JoinFuture, block_on, spawn_future};
pub use self::join::JoinHandle;
pub use self::joinset::JoinSet;
pub use self::local::{AccessError, LocalKey};
pub use self::scope::{Scope, ScopedJoinHandle, scope};
pub(crate) use self::spawn::spawn_unchecked;
pub use crate::sched::wait::{park, park_timeout, preempt_point, sleep, yield_now};
pub use crate::task::abandon::Abandoned;
pub use crate::task::cancel::Cancelled;
pub use crate::task::id::ThreadId;
pub use crate::task::panic_count::panicking;
pub use crate::task::priority::{DEFAULT_PRIORITY, MAX_PRIORITY};
