//! The end of a thread's life, whoever ends it — the thread itself at exit, its core
//! when a lazy thread cannot get a stack, the shutdown's reclaim: the result is
//! published (`F_DONE`), the slot freed if the handle is gone already, the joiner
//! woken. One sequence, so the three cannot drift apart.

use crate::task::slot::{Channel, F_DONE, F_HANDLE_GONE, Joiner, Slot, table};

/// Where a freed slot's index goes.
pub(crate) enum FreeTo<'a> {
    /// A core's own free list (no lock).
    Core(&'a mut Vec<u32>),
    /// The table's shared free list (from an OS thread that is no core).
    Table,
}

/// Ends the life of thread `index` in `slot`: sets `F_DONE`, frees the slot if its
/// handle is gone (into `free`), then wakes the joiner.
///
/// # Safety
///
/// The thread's result is written, and the caller is the thread's last user: it
/// never touches the slot afterwards.
pub(crate) unsafe fn retire(slot: &Slot, index: u32, free: FreeTo<'_>) {
    let (old, joiner) = slot.finish();
    if old & F_HANDLE_GONE != 0 {
        // The handle let go first: we free the slot.
        // SAFETY: the handle is gone and the thread done: nobody else uses the slot.
        unsafe { slot.release(old | F_DONE) };
        match free {
            FreeTo::Core(list) => list.push(index),
            FreeTo::Table => table().free_remote(index),
        }
    }
    wake_joiner(joiner);
}

/// Returns a freed slot index: to the running core's free list on a spindle thread,
/// else to the table's shared list.
pub(crate) fn free_slot(index: u32) {
    match super::CoreCtx::current() {
        Some((mut ctx, _)) => ctx.free_slots().push(index),
        None => table().free_remote(index),
    }
}

/// Wakes a joiner taken by `Slot::finish`.
pub(crate) fn wake_joiner(joiner: Joiner) {
    match joiner {
        Joiner::None => {}
        Joiner::Spindle(id) => {
            super::handoff::wake(id, Channel::Internal);
        }
        Joiner::Os(w) => w.wake(),
    }
}
