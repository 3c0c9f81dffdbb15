//! Lazy threads: built as a heap record without a stack, and moved into a stack
//! block by the core that first runs them (so that CPU touches the stack first).

use crate::error::SpawnError;
use crate::shared::Shared;
use crate::stack::{self, StackPool};
use crate::task::slot::table;
use crate::task::tcb::Tcb;

use super::builder::SpawnOpts;
use super::spawn::{publish_slot, store_closure, tcb_init};

/// A lazily created thread before its first run: the TCB (arch-independent part:
/// entry, attributes, state `Embryo`) and the closure with its argument, on the heap.
#[repr(C)]
pub(super) struct LazyEmbryo<F> {
    tcb: Tcb,
    f: F,
}

/// Builds a thread lazily: a join slot and a heap record holding the TCB and the
/// closure, state `Embryo`, no stack block. The core that first picks it takes a
/// block from its own pool and moves the record there ([`materialize`]), so the
/// stack is first touched by the CPU that runs the thread.
///
/// # Safety
///
/// `free_slots` is the caller's own for the call.
pub(super) unsafe fn build_lazy<F, T>(
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
    let Some(index) = table().alloc(free_slots) else {
        return Err(SpawnError::OutOfMemory {
            stack_size,
            errno: 0,
        });
    };
    let slot = table().get(index).expect("allocated slot");
    let generation = slot.word.generation();
    let rec = Box::into_raw(Box::new(LazyEmbryo {
        tcb: Tcb::init(tcb_init::<F, T>(
            slot, index, generation, opts, class, ty, shared,
        )),
        f,
    }));
    let tcb = rec.cast::<Tcb>();
    // SAFETY: the record is ours (just allocated) and `repr(C)` puts the TCB first; the slot is fresh.
    unsafe {
        (*tcb).lazy = true;
        publish_slot::<T>(tcb, slot, shared);
    }
    Ok((tcb, index, generation))
}

/// Moves a lazy embryo record onto a block of `pool`: the TCB to the block top, the
/// closure beneath it; frees the record. Returns the TCB's new address, or why no
/// block could be had (the record untouched).
///
/// # Safety
///
/// `rec` is a lazy embryo record built by `build_lazy::<F, _>`, owned by the caller.
pub(super) unsafe fn materialize_as<F>(
    rec: *mut Tcb,
    pool: &mut StackPool,
) -> Result<*mut Tcb, stack::StackError> {
    let rec = rec.cast::<LazyEmbryo<F>>();
    // SAFETY: per the contract the record is ours; we move its parts out exactly once and free it without dropping them.
    unsafe {
        let class = (*rec).tcb.class as usize;
        let base = pool.get(class)?;
        let tcb = Tcb::at_top_of(base, stack::class_size(class));
        std::ptr::copy_nonoverlapping(&raw const (*rec).tcb, tcb, 1);
        (*tcb).lazy = false;
        store_closure(tcb, std::ptr::read(&raw const (*rec).f));
        *(*tcb).slot().tcb.get() = tcb;
        (*tcb)
            .slot()
            .info
            .set_stack(tcb as usize + std::mem::size_of::<Tcb>(), class as u8);
        std::alloc::dealloc(rec.cast(), std::alloc::Layout::new::<LazyEmbryo<F>>());
        Ok(tcb)
    }
}

/// Drops the closure of a lazy embryo record that never ran and frees the record.
///
/// # Safety
///
/// `rec` is a lazy embryo record built by `build_lazy::<F, _>`, owned by the caller,
/// whose name was already dropped; it is never used again.
pub(super) unsafe fn free_record<F>(rec: *mut Tcb) {
    let rec = rec.cast::<LazyEmbryo<F>>();
    // SAFETY: per the contract; the TCB part holds nothing left to drop.
    unsafe {
        std::ptr::drop_in_place(&raw mut (*rec).f);
        std::alloc::dealloc(rec.cast(), std::alloc::Layout::new::<LazyEmbryo<F>>());
    }
}
