//! The runtime: its shared state, `run`, and shutdown.
//!
//! `spindle::run(f)` turns the calling OS thread into core 0: it runs `f` as the first
//! spindle thread (the main thread) and schedules every thread spawned from it, and
//! returns `f`'s value once `f` returns. Threads still alive then are abandoned, as a
//! process abandons its threads when `main` returns: they never run again, their
//! stacks are reclaimed without unwinding (destructors of values on those stacks do
//! not run), and their handles report an error from `join`.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::sched::{Core, CoreStats};
use crate::stack::overflow::AltStack;
use crate::thread::slot::{Channel, F_DONE, F_HANDLE_GONE, F_JOINED, F_LIVE, table};
use crate::thread::tcb::{Name, Tcb};
use crate::thread::{self, SpawnOpts};

/// Default spin before an idle core sleeps in the kernel. Waking a sleeping OS thread
/// costs ~25 µs on the reference machine, so spinning a little longer than that
/// before sleeping saves a full wake-up whenever work arrives within the window.
pub const DEFAULT_IDLE_SPIN: Duration = Duration::from_micros(50);

/// Stack size of the main thread of [`run`].
pub const MAIN_STACK_SIZE: usize = 8 << 20;

/// State shared by the cores of one runtime.
pub(crate) struct Shared {
    pub(crate) cores: Box<[Core]>,
}

impl Shared {
    fn new(cores: usize, spin: Duration) -> Arc<Shared> {
        Arc::new_cyclic(|weak| {
            let p = weak.as_ptr();
            Shared {
                cores: (0..cores).map(|i| Core::new(i, p, spin)).collect(),
            }
        })
    }
}

/// Runs `f` as the main thread of a new single-core runtime on the calling OS thread,
/// and returns its value.
///
/// Threads spawned inside (with [`spawn`](crate::spawn) or a [`Builder`](crate::Builder))
/// run on the same core. When `f` returns, `run` returns; threads that are still alive
/// are abandoned (see the module docs of `runtime`). A panic in `f` is resumed on the
/// caller after the runtime is torn down.
///
/// # Panics
///
/// If called from inside a spindle thread (use `spawn` there), or if the main thread's
/// stack cannot be allocated.
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
    F: FnOnce() -> R,
{
    assert!(
        thread::current_tcb().is_none(),
        "spindle::run called from inside a spindle thread: use spindle::spawn there"
    );
    let shared = Shared::new(1, DEFAULT_IDLE_SPIN);
    let core = &shared.cores[0];
    let _alt = AltStack::install();
    let opts = SpawnOpts {
        name: Some(Name::Static("main")),
        stack_size: MAIN_STACK_SIZE,
        priority: thread::DEFAULT_PRIORITY,
        main: true,
    };
    // SAFETY: we are about to become core 0's OS thread and nothing else runs it; `f`
    // may borrow from our stack, which is sound because we do not return before the
    // main thread has finished and its result has been read.
    let (index, generation) = match unsafe { thread::spawn_raw(core, f, opts) } {
        Ok(v) => v,
        Err(e) => panic!("spindle::run: cannot start the main thread: {e}"),
    };
    let slot = table().get(index).expect("main slot");
    loop {
        // SAFETY: this is core 0's scheduler context.
        let ran = unsafe { core.run_next() };
        if slot
            .word
            .flags_if(generation)
            .is_some_and(|f| f & F_DONE != 0)
        {
            break;
        }
        if !ran {
            core.idle();
        }
    }
    // SAFETY: F_DONE was observed (acquire): the result of type
    // `std::thread::Result<R>` is written and nobody else reads it.
    let result: std::thread::Result<R> =
        unsafe { crate::thread::slot::read_result(slot.result.get()) };
    // SAFETY: core 0's scheduler context; main is done and its result taken: last owner.
    unsafe {
        core.finish_switch();
        slot.release(F_DONE | F_HANDLE_GONE | F_JOINED);
    }
    table().free(index);
    abandon_all(&shared);
    match result {
        Ok(v) => v,
        Err(payload) => std::panic::resume_unwind(payload),
    }
}

/// The message of the error `join` returns for a thread abandoned at shutdown.
pub const ABANDONED: &str = "spindle: the runtime shut down before this thread finished";

/// Abandons every thread still alive and hands the stacks back to the process pool.
fn abandon_all(shared: &Arc<Shared>) {
    let core = &shared.cores[0];
    let me = Arc::as_ptr(shared) as usize;
    for index in 0..table().allocated() {
        let Some(slot) = table().get(index) else {
            continue;
        };
        let flags = slot.word.flags();
        // Relaxed: our own threads' owner was written on this OS thread; other
        // runtimes' slots never carry our address.
        if flags & F_LIVE == 0 || flags & F_DONE != 0 || slot.owner.load(Ordering::Relaxed) != me {
            continue;
        }
        // SAFETY: our core stopped, so this thread never runs again; its TCB is ours.
        unsafe {
            let tcb: *mut Tcb = *slot.tcb.get();
            // It will never sleep again: later wakes must only leave tokens.
            let generation = slot.word.generation();
            slot.word.cancel_block(Channel::Internal, generation);
            slot.word.cancel_block(Channel::Park, generation);
            ((*tcb).vtable.write_abandoned)(slot.result.get());
            Tcb::discard(tcb, &mut (*core.local()).pool);
            let (old, joiner) = slot.finish();
            if old & F_HANDLE_GONE != 0 {
                slot.release(old | F_DONE);
                table().free(index);
            }
            thread::wake(joiner);
        }
    }
    // SAFETY: we are core 0's OS thread and nothing runs on it any more: pool and list are ours.
    unsafe {
        (*core.local()).pool.drain_to_spare();
        table().give_back(&mut (*core.local()).free_slots);
    }
}

/// Statistics of the core the caller runs on, or `None` outside a runtime.
pub fn core_stats() -> Option<CoreStats> {
    let me = thread::current_tcb()?;
    // SAFETY: `me` runs on its core, so the core is alive.
    Some(unsafe { (*(*me).core.get()).stats() })
}

/// Payload of the panic-like error of an abandoned thread.
pub(crate) fn abandoned_payload() -> Box<dyn Any + Send> {
    Box::new(ABANDONED)
}
