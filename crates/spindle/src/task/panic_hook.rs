//! The panic report of a spindle thread.
//!
//! std's panic hook names the OS thread that panicked — for a spindle thread, its
//! core's (`spindle-core-0`) — and prints the report, with a backtrace when
//! `RUST_BACKTRACE` asks for one, on the stack of the panicking thread. Symbolising a
//! backtrace takes about 20 KiB of stack, more than a 16 KiB thread has left.
//!
//! So the first runtime of a process wraps the panic hook it finds (std's own, or the
//! user's) in one that, on a spindle thread:
//!
//! 1. prints a line naming the spindle thread, its id and its core, then
//! 2. calls the wrapped hook on a **side stack** (`side_stack`) of 256 KiB
//!    (`arch::call_on_stack`, whose frame backtraces follow back into the thread's
//!    own frames), so the report never overflows the thread's stack.
//!
//! A side stack is taken for the duration of the hook. `current_tcb` finds the thread
//! while it runs there, so spindle calls a hook makes (`spindle::current()`, a lock,
//! even a sleep) work as on the thread's own stack. With every side stack in use
//! (hooks that block), the hook runs in place.
//!
//! A hook installed after the first runtime started replaces the wrapper: it runs in
//! place, and the report names the OS thread only.

use std::panic::PanicHookInfo;
use std::sync::{Once, OnceLock};

use super::side_stack::{self, OWNER_BYTES, SIDE_SIZE};
use crate::arch;
use crate::task::tcb::Tcb;

static INSTALL: Once = Once::new();

type Hook = Box<dyn Fn(&PanicHookInfo<'_>) + Sync + Send + 'static>;

/// The id of the core the running thread `t` is on (the scheduler's, set at install:
/// this layer does not know cores).
///
/// # Safety
///
/// `t` is the running thread.
pub(crate) type CoreIdOf = unsafe fn(*mut Tcb) -> usize;

/// The scheduler's [`CoreIdOf`], set once by `install`.
static CORE_ID_OF: OnceLock<CoreIdOf> = OnceLock::new();

/// Wraps the current panic hook, once per process (the first runtime's `build`).
/// `core_id_of` names the core of a panicking thread in its report.
pub(crate) fn install(core_id_of: CoreIdOf) {
    let _ = CORE_ID_OF.set(core_id_of);
    INSTALL.call_once(|| {
        let prev: Hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| report(info, &prev)));
    });
}

/// The wrapper (see the module docs).
fn report(info: &PanicHookInfo<'_>, prev: &Hook) {
    // A cancellation raised as a panic (`panic_any(Cancelled)`) is not one to report.
    if info.payload().is::<crate::task::cancel::Cancelled>() {
        return;
    }
    let Some(me) = crate::task::current::current_tcb() else {
        return prev(info);
    };
    // SAFETY: the running thread's TCB and core are alive while it runs.
    let (id, core) = unsafe {
        let core = CORE_ID_OF.get().map_or(usize::MAX, |f| f(me));
        ((*me).id_u64(), core)
    };
    // SAFETY: as above; the name lives as long as the thread runs.
    let name = unsafe { (*me).name.as_ref().map_or("<unnamed>", |n| n.as_str()) };
    eprintln!(
        "spindle: thread '{name}' (id {id}) on core {core} panicked; the report below names \
         its core's OS thread"
    );
    let Some(slot) = side_stack::take(me) else {
        return prev(info);
    };
    struct Call<'a, 'b> {
        info: &'a PanicHookInfo<'b>,
        prev: &'a Hook,
    }
    /// Runs the wrapped hook (on the side stack).
    ///
    /// # Safety
    ///
    /// `arg` points to a live `Call`.
    unsafe extern "C" fn run(arg: *mut u8) {
        // SAFETY: `report` passes its `Call`, alive until `call_on_stack` returns.
        let call = unsafe { &*arg.cast::<Call<'_, '_>>() };
        (call.prev)(call.info);
    }
    let mut call = Call { info, prev };
    // SAFETY: the slot is ours until we give it back below; its top (below the owner word) is 16-byte aligned with SIDE_SIZE bytes of writable stack beneath (less the guard page); `run` does not unwind (a panic in a panic hook aborts the process anyway).
    unsafe {
        arch::call_on_stack(
            slot + SIDE_SIZE - OWNER_BYTES,
            run,
            (&raw mut call).cast::<u8>(),
        )
    };
    side_stack::give(slot);
}
