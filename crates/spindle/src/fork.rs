//! `fork` from a process that runs a runtime.
//!
//! The child of a `fork` has one OS thread, the one that called it; every other OS
//! thread, and so every core of every runtime but possibly that one's, does not exist
//! there. Nothing of a runtime can work in the child, so a `pthread_atfork` handler
//! (registered when the stack arena is first reserved) marks the child: every runtime
//! call there either returns a typed error (`SpawnError::Forked`, `CoreError::Forked`,
//! `ConfigError::Forked`; a `join` returns `Err` with the same message) or behaves as
//! on a plain OS thread (park, sleep, the `sync` types), because the child also forgets
//! the stack arena, so `current()` finds no spindle thread there. The child should
//! exec or exit, as POSIX advises for any multithreaded program.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set in the child of a `fork`, never cleared.
static FORKED: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

/// Whether this process is the child of a `fork` made after a runtime started.
#[inline]
pub(crate) fn forked() -> bool {
    // Relaxed: written once, by the only OS thread of the child, before anything else
    // runs there.
    FORKED.load(Ordering::Relaxed)
}

/// Registers the child handler, once per process.
pub(crate) fn install() {
    INSTALL.call_once(|| {
        // SAFETY: registers a handler that only stores to two atomics (async-signal-safe, as the child side of fork requires).
        unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
    });
}

/// Runs in the child right after `fork`.
extern "C" fn in_child() {
    FORKED.store(true, Ordering::Relaxed);
    crate::stack::forget_arena();
}
