//! Which thread is running: found from the stack pointer, without a thread-local.

use crate::arch;
use crate::stack;
use crate::task::tcb::Tcb;

/// The TCB of the running spindle thread, found by masking the stack pointer; `None`
/// on an OS thread's own stack. (A thread running its panic hook on a side stack is
/// found through the side stack's owner word: `panic_hook`.)
#[inline(always)]
pub(crate) fn current_tcb() -> Option<*mut Tcb> {
    let sp = arch::stack_pointer();
    match stack::block_of(sp) {
        Some((base, size)) => Some(Tcb::at_top_of(base, size)),
        None => crate::task::side_stack::owner(sp),
    }
}
