//! The first run of a lazily created thread: its core moves the heap record onto a
//! stack block of its own pool.

use super::Core;
use super::core::CoreLocal;
use super::retire::{FreeTo, retire};
use crate::error::SpawnError;
use crate::stack;
use crate::task::tcb::Tcb;

/// The first pick of a lazy embryo on `core`: moves it onto a stack block of the
/// core's pool. If no block can be had, the thread ends at once with an error (its
/// `join` returns it) and `None` is returned.
///
/// # Safety
///
/// `rec` was just popped from `core`'s run queue and is a lazy record; `l` is
/// `core`'s local state, on `core`'s OS thread.
pub(super) unsafe fn materialize(
    core: &Core,
    l: &mut CoreLocal,
    rec: *mut Tcb,
) -> Option<*mut Tcb> {
    // SAFETY: per the contract the record is ours.
    unsafe {
        let e = match ((*rec).vtable.materialize)(rec, &mut l.pool) {
            Ok(t) => {
                l.stats.built += 1;
                return Some(t);
            }
            Err(e) => e,
        };
        let slot = (*rec).slot();
        let msg = format!(
            "spindle: core {} could not start this thread: {}",
            core.id,
            SpawnError::from_stack(stack::class_size((*rec).class as usize), e)
        );
        ((*rec).vtable.write_error)(slot.result.get(), Box::new(msg));
        core.count_typed((*rec).ty, -1);
        let index = (*rec).index;
        Tcb::discard(rec, &mut l.pool);
        retire(slot, index, FreeTo::Core(&mut l.free_slots));
        None
    }
}
