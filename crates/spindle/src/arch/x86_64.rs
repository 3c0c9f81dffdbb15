//! x86_64 System V context switch.
//!
//! A switch is an ordinary function call as far as the compiler is concerned, so only
//! the state the SysV ABI calls callee-saved has to survive it; the compiler has
//! already spilled every caller-saved register it still needs before the `call`.
//! That state is:
//!
//! - `rbx`, `rbp`, `r12`–`r15`;
//! - `rsp`, and the return address, which `call` pushed at `[rsp]`;
//! - the control bits of `MXCSR` (SSE rounding, exception masks) and the x87 control
//!   word — the ABI makes both callee-saved.
//!
//! ## Saved context
//!
//! ```text
//! Context (repr(C))           offset
//! +--------------------+
//! | rsp                |  0   points at the return address of the `switch` call
//! | rbx                |  8
//! | rbp                | 16
//! | r12                | 24
//! | r13                | 32
//! | r14                | 40
//! | r15                | 48
//! | mxcsr (u32)        | 56
//! | x87 cw (u16)       | 60
//! +--------------------+
//! ```
//!
//! The return address is not copied into the context: it stays on the suspended
//! stack, where `call` put it, and `switch` resumes the other side with `ret`. Using
//! `ret` (rather than `jmp`) keeps every `call` matched by one `ret`, so the CPU's
//! return-stack predictor stays in step with the real stack on both sides.
//!
//! ## Stack of a suspended thread
//!
//! ```text
//! +----------------------+  <- higher addresses (stack top, TCB above)
//! | caller frames ...    |
//! +----------------------+
//! | return address       |  <- Context::rsp
//! +----------------------+
//! | (unused)             |  <- lower addresses
//! ```
//!
//! ## First frame of a new thread
//!
//! ```text
//! +----------------------+  <- stack_top (16-byte aligned)
//! | &thread_start        |  <- Context::rsp = stack_top - 8
//! +----------------------+
//! r12 = entry, r13 = arg, rbp = 0 (end of the frame-pointer chain)
//! ```
//!
//! `switch` restores `r12`/`r13` and executes `ret`, which pops `&thread_start` and
//! leaves `rsp == stack_top`, 16-byte aligned. `thread_start` moves `r13` into `rdi`
//! and calls `r12`; the `call` pushes a return address so the entry function sees the
//! ABI's entry alignment (`rsp + 8` is a multiple of 16). The entry never returns.

use core::arch::{asm, global_asm};
use core::mem::offset_of;

/// Alignment of the stack pointer required at a `call` instruction.
pub(crate) const STACK_ALIGNMENT: usize = 16;

/// Callee-saved state of a suspended thread. Field order is the asm's offsets.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Context {
    rsp: usize,
    rbx: usize,
    rbp: usize,
    r12: usize,
    r13: usize,
    r14: usize,
    r15: usize,
    mxcsr: u32,
    fpucw: u16,
}

impl Context {
    /// A context with every field zero (not resumable): a place to save one.
    pub(crate) const ZERO: Context = Context {
        rsp: 0,
        rbx: 0,
        rbp: 0,
        r12: 0,
        r13: 0,
        r14: 0,
        r15: 0,
        mxcsr: 0,
        fpucw: 0,
    };
}

const OFF_RSP: usize = 0;
const OFF_RBX: usize = 8;
const OFF_RBP: usize = 16;
const OFF_R12: usize = 24;
const OFF_R13: usize = 32;
const OFF_R14: usize = 40;
const OFF_R15: usize = 48;
const OFF_MXCSR: usize = 56;
const OFF_FPUCW: usize = 60;

const _: () = assert!(offset_of!(Context, rsp) == OFF_RSP);
const _: () = assert!(offset_of!(Context, rbx) == OFF_RBX);
const _: () = assert!(offset_of!(Context, rbp) == OFF_RBP);
const _: () = assert!(offset_of!(Context, r12) == OFF_R12);
const _: () = assert!(offset_of!(Context, r13) == OFF_R13);
const _: () = assert!(offset_of!(Context, r14) == OFF_R14);
const _: () = assert!(offset_of!(Context, r15) == OFF_R15);
const _: () = assert!(offset_of!(Context, mxcsr) == OFF_MXCSR);
const _: () = assert!(offset_of!(Context, fpucw) == OFF_FPUCW);

/// MXCSR as the ABI hands it to a new thread: all exceptions masked, round to nearest.
const MXCSR_DEFAULT: u32 = 0x1F80;
/// x87 control word as the ABI hands it to a new thread: all exceptions masked,
/// 64-bit precision, round to nearest.
const FPUCW_DEFAULT: u16 = 0x037F;

// The symbol names carry the crate name and a version so two copies of spindle in
// one binary cannot collide.
global_asm!(
    ".text",
    ".p2align 4",
    ".globl spindle_arch_switch_v1",
    ".hidden spindle_arch_switch_v1",
    ".type spindle_arch_switch_v1, @function",
    "spindle_arch_switch_v1:",
    ".cfi_startproc",
    // On entry: rdi = from (*mut Context), rsi = to (*const Context),
    // [rsp] = our return address into the caller.
    //
    // Save the stack pointer as it is, pointing at our return address; the
    // return address itself stays on this stack.
    "mov [rdi + {rsp}], rsp",
    // Save the six callee-saved general registers.
    "mov [rdi + {rbx}], rbx",
    "mov [rdi + {rbp}], rbp",
    "mov [rdi + {r12}], r12",
    "mov [rdi + {r13}], r13",
    "mov [rdi + {r14}], r14",
    "mov [rdi + {r15}], r15",
    // Save the SSE control/status register (its control bits are callee-saved).
    "stmxcsr [rdi + {mxcsr}]",
    // Save the x87 control word (callee-saved).
    "fnstcw [rdi + {fpucw}]",
    // Restore the other side's callee-saved general registers.
    "mov rbx, [rsi + {rbx}]",
    "mov rbp, [rsi + {rbp}]",
    "mov r12, [rsi + {r12}]",
    "mov r13, [rsi + {r13}]",
    "mov r14, [rsi + {r14}]",
    "mov r15, [rsi + {r15}]",
    // Restore its MXCSR, but only if it differs from ours: `ldmxcsr` is microcoded
    // and slow, and threads almost never change it. eax and the flags are
    // caller-saved, so they are free to use here.
    "mov eax, [rsi + {mxcsr}]",
    "cmp eax, [rdi + {mxcsr}]",
    "je 2f",
    "ldmxcsr [rsi + {mxcsr}]",
    "2:",
    // Same for the x87 control word (`fldcw` is slow too).
    "movzx eax, word ptr [rsi + {fpucw}]",
    "cmp ax, word ptr [rdi + {fpucw}]",
    "je 3f",
    "fldcw [rsi + {fpucw}]",
    "3:",
    // Switch stacks: from here on we run on the other side's stack.
    "mov rsp, [rsi + {rsp}]",
    // Pop the other side's return address and continue there: either after its own
    // `switch` call, or at `spindle_arch_thread_start` for a new thread.
    "ret",
    ".cfi_endproc",
    ".size spindle_arch_switch_v1, . - spindle_arch_switch_v1",
    "",
    ".p2align 4",
    ".globl spindle_arch_thread_start_v1",
    ".hidden spindle_arch_thread_start_v1",
    ".type spindle_arch_thread_start_v1, @function",
    "spindle_arch_thread_start_v1:",
    ".cfi_startproc",
    // This frame has no caller: tell unwinders and debuggers the chain ends here.
    ".cfi_undefined rip",
    // State on entry (set by `init_context`, restored by `switch`):
    // rsp = stack top (16-byte aligned), r12 = entry function, r13 = its argument,
    // rbp = 0.
    //
    // First argument of the entry function. r13 must match `init_context`.
    "mov rdi, r13",
    // Call the entry; the pushed return address gives it the ABI entry alignment.
    // r12 must match `init_context`.
    "call r12",
    // The entry never returns; trap if it ever does.
    "ud2",
    ".cfi_endproc",
    ".size spindle_arch_thread_start_v1, . - spindle_arch_thread_start_v1",
    rsp = const OFF_RSP,
    rbx = const OFF_RBX,
    rbp = const OFF_RBP,
    r12 = const OFF_R12,
    r13 = const OFF_R13,
    r14 = const OFF_R14,
    r15 = const OFF_R15,
    mxcsr = const OFF_MXCSR,
    fpucw = const OFF_FPUCW,
);

// `call_on_stack`: runs a function on another stack as an ordinary nested call, with
// a frame-pointer frame that unwinders follow back to the caller's stack.
//
// ```text
// caller's stack                 the other stack (top given)
// +------------------+           +------------------+ <- top (16-byte aligned)
// | caller frames    |           | return address   | into call_on_stack
// | return address   |           | f's frames ...   |
// | saved rbp        | <- rbp    +------------------+
// +------------------+
// ```
//
// The frame's CFA is computed from rbp, which stays on the caller's stack, so a
// backtrace taken on the other stack (a panic report) continues into the caller's
// frames.
global_asm!(
    ".text",
    ".p2align 4",
    ".globl spindle_arch_call_on_stack_v1",
    ".hidden spindle_arch_call_on_stack_v1",
    ".type spindle_arch_call_on_stack_v1, @function",
    "spindle_arch_call_on_stack_v1:",
    ".cfi_startproc",
    // On entry: rdi = argument, rsi = function, rdx = top of the other stack
    // (16-byte aligned); [rsp] = our return address, so the CFA is rsp + 8.
    //
    // Save the caller's rbp; the CFA is now rsp + 16 and rbp's old value is at CFA-16.
    "push rbp",
    ".cfi_def_cfa_offset 16",
    ".cfi_offset rbp, -16",
    // rbp = this frame, on the caller's stack; from here the CFA is found through rbp,
    // whatever rsp becomes.
    "mov rbp, rsp",
    ".cfi_def_cfa_register rbp",
    // Move to the other stack (its top is 16-byte aligned, so the call below leaves
    // the callee the ABI's entry alignment).
    "mov rsp, rdx",
    // f(argument): rdi still holds the argument.
    "call rsi",
    // Back to the caller's stack, at our saved rbp.
    "mov rsp, rbp",
    // Restore the caller's rbp; the CFA is rsp + 8 again.
    "pop rbp",
    ".cfi_def_cfa rsp, 8",
    // Return to the caller.
    "ret",
    ".cfi_endproc",
    ".size spindle_arch_call_on_stack_v1, . - spindle_arch_call_on_stack_v1",
);

unsafe extern "C" {
    fn spindle_arch_switch_v1(from: *mut Context, to: *const Context);
    fn spindle_arch_thread_start_v1();
    fn spindle_arch_call_on_stack_v1(arg: *mut u8, f: unsafe extern "C" fn(*mut u8), top: usize);
}

/// Calls `f(arg)` on the stack that ends at `top`, and returns when it returns. The
/// call is an ordinary nested call for unwinders and debuggers: a backtrace taken in
/// `f` continues into the caller's frames.
///
/// # Safety
///
/// `top` must be 16-byte aligned, with writable stack memory below it that nothing
/// else uses until `f` returns, enough for `f`. `f` must not unwind (it is an
/// `extern "C"` function: a panic in it aborts).
pub(crate) unsafe fn call_on_stack(top: usize, f: unsafe extern "C" fn(*mut u8), arg: *mut u8) {
    debug_assert_eq!(
        top % STACK_ALIGNMENT,
        0,
        "call_on_stack: unaligned stack top"
    );
    // SAFETY: the caller guarantees the stack; the asm is an ordinary SysV call that preserves the callee-saved registers (rbp is saved and restored, rsp comes back to the caller's).
    unsafe { spindle_arch_call_on_stack_v1(arg, f, top) }
}

/// Saves the running state into `from` and resumes the state saved in `to`.
///
/// Returns when some later `switch` names `from` as its `to`.
///
/// # Safety
///
/// - `from` must be valid for writes and `to` valid for reads, and `to` must hold a
///   context saved by `switch` or built by [`init_context`] whose stack is still mapped
///   and is not in use by any other running context;
/// - no Rust reference to either context may be live across the call;
/// - a panic must never unwind across a switch (thread entries catch panics).
#[inline]
pub(crate) unsafe fn switch(from: *mut Context, to: *const Context) {
    // SAFETY: the caller guarantees both contexts are valid and `to` is resumable; the asm follows the SysV calling convention, so the compiler treats it as an ordinary call that preserves exactly the callee-saved registers.
    unsafe { spindle_arch_switch_v1(from, to) }
}

/// Builds the first frame of a thread on the stack that ends at `stack_top`, so that
/// switching to `ctx` calls `entry(arg)` there.
///
/// # Safety
///
/// `stack_top` must be 16-byte aligned, the 8 bytes below it must be writable stack
/// memory owned by the new thread, and `entry` must never return.
pub(crate) unsafe fn init_context(
    ctx: &mut Context,
    stack_top: usize,
    entry: unsafe extern "C" fn(usize) -> !,
    arg: usize,
) {
    debug_assert_eq!(
        stack_top % STACK_ALIGNMENT,
        0,
        "init_context: unaligned stack top"
    );
    let ret_slot = stack_top - 8;
    // SAFETY: caller: the 8 bytes below the 16-aligned `stack_top` are ours (so aligned).
    unsafe { (ret_slot as *mut usize).write(spindle_arch_thread_start_v1 as *const () as usize) };
    *ctx = Context {
        rsp: ret_slot,
        rbx: 0,
        rbp: 0,
        r12: entry as *const () as usize,
        r13: arg,
        r14: 0,
        r15: 0,
        mxcsr: MXCSR_DEFAULT,
        fpucw: FPUCW_DEFAULT,
    };
}

/// The current stack pointer.
// Inlined so the value is the caller's stack pointer, not a callee frame's; any frame
// of the caller is inside the same stack block, which is all `current()` needs.
#[inline(always)]
pub(crate) fn stack_pointer() -> usize {
    let sp: usize;
    // SAFETY: reading rsp has no side effects and touches no memory.
    unsafe { asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    sp
}
