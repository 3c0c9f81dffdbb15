//! A thread's entry and exit: the per-closure-type vtable, the first code a thread
//! runs, and the exit that publishes its result and retires it.

use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;

use crate::arch;
use crate::sched::guard::PreemptGuard;
use crate::sched::retire::{FreeTo, retire};
use crate::sched::{After, Core, CoreCtx};
use crate::task::abandon::Abandoned;
use crate::task::slot;
use crate::task::slot::ResultBuf;
use crate::task::tcb::{State, Tcb, ThreadVtable};

use super::lazy::{free_record, materialize_as};

/// Closures up to this size are stored in the thread's own stack block (no heap
/// allocation); larger ones are boxed.
pub(super) const INLINE_CLOSURE: usize = 1024;

pub(super) const fn inline_closure<F>() -> bool {
    size_of::<F>() <= INLINE_CLOSURE && align_of::<F>() <= 64
}

pub(super) struct VtableOf<F, T>(PhantomData<(F, T)>);

impl<F: FnOnce() -> T, T> VtableOf<F, T> {
    pub(super) const VTABLE: ThreadVtable = ThreadVtable {
        drop_closure: drop_closure::<F>,
        write_abandoned: write_abandoned::<T>,
        write_error: write_error::<T>,
        materialize: materialize_as::<F>,
        free_record: free_record::<F>,
    };
}

/// # Safety
///
/// `p` is the closure pointer of a thread that never ran.
pub(super) unsafe fn drop_closure<F>(p: *mut u8) {
    // SAFETY: the closure was stored at `p` by spawn_raw and never moved out.
    unsafe {
        if inline_closure::<F>() {
            std::ptr::drop_in_place(p.cast::<F>());
        } else {
            drop(Box::from_raw(p.cast::<F>()));
        }
    }
}

/// # Safety
///
/// `buf` is the result buffer of a thread that never wrote it.
pub(super) unsafe fn write_abandoned<T>(buf: *mut ResultBuf) {
    let r: std::thread::Result<T> = Err(crate::task::abandon::abandoned_payload());
    // SAFETY: the buffer is empty (the thread never finished).
    unsafe { slot::write_result(buf, r) };
}

/// # Safety
///
/// `buf` is the result buffer of a thread that never wrote it.
pub(super) unsafe fn write_error<T>(buf: *mut ResultBuf, payload: Box<dyn std::any::Any + Send>) {
    let r: std::thread::Result<T> = Err(payload);
    // SAFETY: the buffer is empty (the thread never ran).
    unsafe { slot::write_result(buf, r) };
}

/// First code a thread runs (called by `arch`'s thread start with the TCB address).
///
/// # Safety
///
/// Only called through a context built by `init_context` for a TCB made by `spawn_raw`
/// with these `F` and `T`.
pub(super) unsafe extern "C" fn thread_entry<F: FnOnce() -> T, T>(arg: usize) -> ! {
    let me = arg as *mut Tcb;
    // SAFETY: we were just switched into on our core: finish that switch first; then move the closure out of where spawn_raw stored it (exactly once).
    let f: F = unsafe {
        crate::sched::Core::of(me).finish_switch();
        // Out of the runtime: asynchronous preemption may start (the count starts
        // at 1).
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        (*me).preempt_count.store(0, Ordering::Relaxed);
        let p = (*me).closure.cast::<F>();
        if inline_closure::<F>() {
            p.read()
        } else {
            *Box::from_raw(p)
        }
    };
    let result = catch_unwind(AssertUnwindSafe(|| {
        // Frames below this point are the thread's own (`preempt::code`).
        // SAFETY: our own TCB, while we run.
        unsafe { (*me).user_base.set(arch::stack_pointer()) };
        // A thread cancelled before it started never runs its closure.
        // SAFETY: our own TCB and slot, while we run.
        if unsafe { (*me).slot() }.word.flags() & crate::task::slot::F_CANCEL != 0 {
            drop(f);
            crate::task::cancel::unwind();
        }
        f()
    }))
    .map_err(|p| {
        if p.is::<Abandoned>() {
            crate::task::abandon::abandoned_payload()
        } else {
            p
        }
    });
    // The thread's `local!` values go before its result is published, so a joiner
    // sees what their destructors did (std's order for thread-locals).
    // SAFETY: our own TCB; the closure is gone, so no reference to a value is alive.
    unsafe { crate::task::locals::destroy(&(*me).locals) };
    // SAFETY: our slot's result buffer is empty until now and only we write it.
    unsafe { slot::write_result((*me).slot().result.get(), result) };
    // SAFETY: `me` is the running thread, on its own stack.
    unsafe { exit(me) }
}

/// Publishes the result, wakes a joiner, gives up the slot, and switches away for good.
///
/// # Safety
///
/// `me` is the running thread, its result written.
pub(super) unsafe fn exit(me: *mut Tcb) -> ! {
    // SAFETY: we are `me`; the slot is ours until `finish` sets F_DONE.
    unsafe {
        // Inside the runtime for good: never preempted again (the name is dropped
        // here, and the signal handler reads it when the count is zero).
        std::mem::forget(PreemptGuard::of(me));
        let slot = (*me).slot();
        std::ptr::drop_in_place(&raw mut (*me).name);
        let (mut ctx, _) = CoreCtx::current().expect("an exiting thread runs on its core");
        retire(slot, (*me).index, FreeTo::Core(ctx.free_slots()));
        (*me).set_state(State::Zombie);
        Core::of(me).schedule(me, After::Exit);
    }
    // A zombie is never switched back into.
    std::process::abort()
}
