//! Spawning: choosing the core, building the thread eagerly (stack block, TCB,
//! context) on the caller's core, and handing it over.

use std::marker::PhantomData;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use crate::arch;
use crate::error::SpawnError;
use crate::sched::CoreCtx;
use crate::sched::guard::PreemptGuard;
use crate::sched::placement::Target;
use crate::sched::wait::preempt_for;
use crate::shared::Shared;
use crate::stack::{self, StackPool};
use crate::task::id::ThreadId;
use crate::task::priority::level_of;
use crate::task::slot;
use crate::task::slot::{Slot, table};
use crate::task::tcb::{State, Tcb, TcbInit};

use super::api::Thread;
use super::builder::SpawnOpts;
use super::entry::{VtableOf, inline_closure, thread_entry};
use super::join::JoinHandle;
use super::lazy::build_lazy;

/// Join slots for spawns by OS threads that are not cores (their threads are built
/// lazily: the stack block comes from the target core's pool).
pub(super) static FOREIGN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Spawns a thread into `shared`: picks its core, builds it from the caller's core's
/// pool (or a process-wide one for OS threads), and hands it over — onto the local run
/// queue, through the exchange slot, or through the target core's injection queue.
///
/// # Safety
///
/// If `F` or `T` are not `'static` or not `Send`, the caller must guarantee that the
/// thread finishes (it is joined) before anything they borrow goes away, and that
/// sending them to another OS thread is sound.
pub(crate) unsafe fn spawn_unchecked<F, T>(
    shared: &Shared,
    f: F,
    opts: SpawnOpts,
) -> Result<JoinHandle<T>, SpawnError>
where
    F: FnOnce() -> T,
{
    let _g = PreemptGuard::new();
    if shared.shutdown.load(Ordering::Acquire) || crate::fork::forked() {
        return Err(SpawnError::not_running());
    }
    // The caller's core, if it is a thread of this runtime.
    let here =
        CoreCtx::current().filter(|(ctx, _)| std::ptr::eq(ctx.core().set_ptr(), &shared.set));
    let level = level_of(opts.priority);
    let caller = here.as_ref().map(|(ctx, me)| {
        // SAFETY: `me` is the running thread; its type is its own to read.
        let ty = unsafe { (**me).ty };
        (ctx.core().id, ty as usize)
    });
    let (ty, dst) = shared.resolve(&opts.target, level, caller)?;
    let stack_size = opts.stack_size.unwrap_or(shared.default_stack);
    let on_core = here.as_ref().map(|(ctx, _)| ctx.core().id);
    let (index, generation) = match here {
        Some((mut ctx, _)) => {
            let core = ctx.core();
            // A lazy spawn for another core leaves only a heap record here: its
            // stack is taken and first touched by the core that runs it.
            let (t, index, generation) = if dst == core.id || !opts.lazy {
                let (pool, free) = ctx.pool_and_free_slots();
                // SAFETY: the pool and free list are our core's, for this call.
                unsafe { build(pool, free, shared, f, &opts, stack_size, ty)? }
            } else {
                // SAFETY: as above, for the free list.
                unsafe { build_lazy(ctx.free_slots(), shared, f, &opts, stack_size, ty)? }
            };
            core.count_typed(ty as u8, 1);
            ctx.note_spawned();
            // SAFETY: `t` is a fresh embryo that nobody else knows, on no list.
            unsafe {
                if dst == core.id {
                    ctx.push_here(t);
                } else {
                    (*t).set_core(shared.cores[dst].owner());
                    ctx.send(dst, t);
                }
            }
            (index, generation)
        }
        None => {
            let (t, index, generation) = {
                let mut slots = FOREIGN.lock().unwrap_or_else(|e| e.into_inner());
                // SAFETY: the process-wide slot list is ours under the lock.
                unsafe { build_lazy(&mut slots, shared, f, &opts, stack_size, ty)? }
            };
            shared.foreign_typed[ty].fetch_add(1, Ordering::Relaxed);
            // SAFETY: `t` is a fresh embryo; its core is set by the core taking it in.
            unsafe { (*t).set_core(shared.cores[dst].owner()) };
            let mut to = dst;
            let mut t = t;
            while let Err(back) = shared.cores[to].inject(t) {
                t = back;
                to = shared.place_woken(ty as u8, None);
                std::thread::yield_now();
            }
            (index, generation)
        }
    };
    // The handle is made from what we know, not from the TCB: on another core the
    // thread may already have run and exited.
    let thread = Thread {
        id: ThreadId { index, generation },
        name: opts.name.clone(),
    };
    if on_core == Some(dst) {
        preempt_for(level);
    }
    Ok(JoinHandle {
        thread,
        variant: None,
        _result: PhantomData,
    })
}

/// Builds a thread: a stack block from `pool`, a join slot, the TCB at the block top
/// and the closure beneath it, state `Embryo`. The caller hands it to a core. The
/// context is built later, by the core, when it first runs the thread.
///
/// # Safety
///
/// `pool` and `free_slots` are the caller's own for the call.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn build<F, T>(
    pool: &mut StackPool,
    free_slots: &mut Vec<u32>,
    shared: &Shared,
    f: F,
    opts: &SpawnOpts,
    stack_size: usize,
    ty: usize,
) -> Result<(*mut Tcb, u32, u32), SpawnError>
where
    F: FnOnce() -> T,
{
    let class = stack::class_of(stack_size);
    let base = pool
        .get(class)
        .map_err(|e| SpawnError::from_stack(stack_size, e))?;
    let Some(index) = table().alloc(free_slots) else {
        pool.put(class, base);
        return Err(SpawnError::OutOfMemory {
            stack_size,
            errno: 0,
        });
    };
    let slot = table().get(index).expect("allocated slot");
    let generation = slot.word.generation();
    let tcb = Tcb::at_top_of(base, stack_size);
    // SAFETY: the block is ours (from the pool) and its top page is writable; the slot is ours (freshly allocated) and not yet visible to anyone.
    unsafe {
        tcb.write(Tcb::init(tcb_init::<F, T>(
            slot, index, generation, opts, class, ty, shared,
        )));
        store_closure(tcb, f);
        publish_slot::<T>(tcb, slot, shared);
    }
    if crate::sched::trace::ON.load(std::sync::atomic::Ordering::Relaxed) {
        let by = crate::task::current::current_tcb()
            // SAFETY: the running thread's TCB.
            .map_or(0, |t| unsafe { (*t).id_u64() });
        crate::sched::trace::here(
            crate::sched::trace::Kind::Spawn,
            crate::task::id::ThreadId::from_parts(index, generation).as_u64(),
            by,
        );
    }
    Ok((tcb, index, generation))
}

/// The TCB fields a spawn knows.
pub(super) fn tcb_init<F: FnOnce() -> T, T>(
    slot: &'static Slot,
    index: u32,
    generation: u32,
    opts: &SpawnOpts,
    class: usize,
    ty: usize,
    shared: &Shared,
) -> TcbInit {
    let preemptible = opts
        .preemptible
        .unwrap_or(shared.clock.default_preemptible());
    if preemptible {
        // Where it may be interrupted is known before it first runs.
        crate::preempt::code::ensure();
    }
    TcbInit {
        run_word: shared.clock.run_word(opts.time_slice, opts.preemptible),
        preemptible,
        slot,
        index,
        generation,
        level: level_of(opts.priority),
        class: class as u8,
        ty: ty as u8,
        entry: thread_entry::<F, T>,
        name: opts.name.clone(),
        vtable: &VtableOf::<F, T>::VTABLE,
        main: opts.main,
        bound: matches!(opts.target, Target::Core(_)),
    }
}

/// Stores the entry closure beneath the TCB at the top of its block (boxed if large)
/// and sets the initial stack top below it.
///
/// # Safety
///
/// `tcb` is at the top of a block that is ours, with room for the closure below it.
pub(super) unsafe fn store_closure<F>(tcb: *mut Tcb, f: F) {
    // SAFETY: per the contract, the memory below the TCB is ours.
    unsafe {
        let closure = if inline_closure::<F>() {
            let at = (tcb as usize - size_of::<F>()) & !(align_of::<F>() - 1);
            (at as *mut F).write(f);
            at
        } else {
            Box::into_raw(Box::new(f)) as usize
        };
        (*tcb).closure = closure as *mut u8;
        (*tcb).stack_top = first_stack_top(tcb as usize, closure, inline_closure::<F>());
    }
}

/// The initial stack top of a thread whose TCB is at `tcb` and whose closure is at
/// `closure`: below the closure if it is stored in the block beneath the TCB
/// (`inline`), else right below the TCB — a boxed closure lives on the heap, which may
/// lie below the block as well as above it.
fn first_stack_top(tcb: usize, closure: usize, inline: bool) -> usize {
    let top = if inline { closure.min(tcb) } else { tcb };
    top & !(arch::STACK_ALIGNMENT - 1)
}

/// Makes a new embryo `tcb` known through its slot (for a result type `T`).
///
/// # Safety
///
/// `slot` is freshly allocated for `tcb` and not yet visible to anyone.
pub(super) unsafe fn publish_slot<T>(tcb: *mut Tcb, slot: &Slot, shared: &Shared) {
    // SAFETY: per the contract the slot is ours.
    unsafe {
        *slot.tcb.get() = tcb;
        let end = if (*tcb).lazy {
            0
        } else {
            tcb as usize + std::mem::size_of::<Tcb>()
        };
        slot.info
            .publish((*tcb).name.as_ref().map(|n| n.as_str()), end, (*tcb).class);
        slot.level.store((*tcb).level, Ordering::Relaxed);
        slot.bound.store((*tcb).bound.get(), Ordering::Relaxed);
        *slot.drop_result.get() = Some(slot::drop_result::<std::thread::Result<T>>);
        // Relaxed: read by this runtime's shutdown scan after its cores stopped.
        slot.owner
            .store(shared as *const Shared as usize, Ordering::Relaxed);
        slot.word.activate();
        (*tcb).set_state(State::Embryo);
    }
}

#[cfg(test)]
mod tests {
    use super::first_stack_top;

    #[test]
    fn a_boxed_closure_below_the_block_does_not_move_the_stack_there() {
        let tcb = 0x7f00_0000_1000;
        // The heap below the block (an arena mapped lower): the stack stays under
        // the TCB. Taking the lower of the two put it on the heap, which the thread
        // then overwrote (found as `munmap_chunk(): invalid pointer` in the
        // lifecycle tests with 15 cores).
        assert_eq!(first_stack_top(tcb, 0x5555_0000_0010, false), tcb);
        assert_eq!(first_stack_top(tcb, 0x7fff_0000_0010, false), tcb);
        // A closure stored in the block, beneath the TCB: the stack starts below it.
        assert_eq!(first_stack_top(tcb, tcb - 72, true), tcb - 80);
    }
}
