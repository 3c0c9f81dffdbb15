//! The architecture boundary: saved contexts, the context switch and the first frame.
//!
//! Every ISA file exports the same names:
//!
//! - [`Context`]: the callee-saved state of a suspended thread, `repr(C)`;
//! - `switch(from, to)`: save the running state into `from`, resume `to`;
//! - `init_context(ctx, stack_top, entry, arg)`: build the first frame of a thread so
//!   that switching to it calls `entry(arg)` on the new stack;
//! - `stack_pointer()`: the current stack pointer, for `current()`;
//! - `call_on_stack(top, f, arg)`: call `f(arg)` on another stack, as a nested call
//!   that backtraces follow back to the caller;
//! - `STACK_ALIGNMENT`: the alignment the ABI requires at a call.
//!
//! Nothing in this module knows about threads, cores or scheduling.

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub(crate) use self::x86_64::*;

#[cfg(not(target_arch = "x86_64"))]
compile_error!(
    "spindle supports x86_64 only for now: add src/arch/<isa>.rs exporting Context, switch, \
     init_context, stack_pointer, call_on_stack and STACK_ALIGNMENT (aarch64 is next)"
);
