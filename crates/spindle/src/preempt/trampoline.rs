//! The trampoline a preempted thread resumes in: it saves every register the
//! interrupted code may use, yields through [`preempted`], restores them and returns
//! to the interrupted instruction.

use std::arch::global_asm;
use std::sync::atomic::{AtomicU64, compiler_fence};

use super::code;
use crate::loom::Ordering;
use crate::sched::{After, Core};
use crate::task::current::current_tcb;
use crate::task::tcb::State;

/// Save-area kind: 0 = `fxsave64`, 1 = `xsave64`. Written once by `handler::install`, before
/// any preemption signal is sent; read by the trampoline.
static XSAVE_MODE: AtomicU64 = AtomicU64::new(0);
/// Bytes the trampoline reserves for the vector/x87 state (a multiple of 64).
static XSAVE_SIZE: AtomicU64 = AtomicU64::new(512);
/// The `xsave64`/`xrstor64` feature mask: XCR0, every state the OS enabled.
static XSAVE_MASK: AtomicU64 = AtomicU64::new(0);

/// Fills `XSAVE_*` from CPUID: leaf 1 ECX bit 27 (OSXSAVE: the OS enabled XSAVE),
/// XCR0 (the enabled states) and leaf 0xD sub-leaf 0 EBX (the area size they need).
pub(super) fn measure_xsave() {
    use std::arch::x86_64::{__cpuid, __cpuid_count, _xgetbv};
    // cpuid leaf 1 exists on every x86_64 CPU.
    let leaf1 = __cpuid(1);
    if leaf1.ecx & (1 << 27) == 0 {
        return;
    }
    // SAFETY: OSXSAVE is set, so xgetbv is enabled and XCR0 readable.
    let xcr0 = unsafe { _xgetbv(0) };
    // Leaf 0xD exists when XSAVE is supported.
    let size = __cpuid_count(0xD, 0).ebx as u64;
    XSAVE_MASK.store(xcr0, Ordering::Relaxed);
    XSAVE_SIZE.store(size.div_ceil(64) * 64, Ordering::Relaxed);
    XSAVE_MODE.store(1, Ordering::Relaxed);
}

/// Bytes of stack the trampoline's vector/x87 save area takes.
#[inline]
pub(super) fn save_area_size() -> usize {
    XSAVE_SIZE.load(Ordering::Relaxed) as usize
}

/// The trampoline's code: `[start, end)`.
#[inline]
fn range() -> (usize, usize) {
    (
        spindle_preempt_trampoline_v1 as *const () as usize,
        spindle_preempt_trampoline_end_v1 as *const () as usize,
    )
}

/// The trampoline's entry point, where the handler sends a preempted thread.
#[inline]
pub(super) fn entry() -> usize {
    range().0
}

/// Whether `ip` lies in the trampoline.
#[inline]
pub(super) fn contains(ip: usize) -> bool {
    let (start, end) = range();
    ip >= start && ip < end
}

/// Called by the trampoline on the preempted thread's stack: yields, unless a frame
/// of `std` between the interrupted instruction and the thread's closure may hold a
/// lock of the OS thread (`code::frames_hold_no_std`); then it only leaves the
/// reschedule flag set and returns to the thread.
extern "C" fn preempted() {
    let Some(me) = current_tcb() else {
        // The handler only redirects spindle threads.
        std::process::abort()
    };
    let trampoline = range();
    // SAFETY: we are the running thread `me`, outside any runtime critical section (the handler checked the count was zero, then raised it to 1 for us).
    unsafe {
        if code::frames_hold_no_std(trampoline, (*me).user_base.get()) {
            let k = &Core::of(me).clock;
            // Single writer: the core's OS thread (this handler's and trampoline's).
            k.preemptions
                .store(k.preemptions.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            Core::of(me).trace(crate::sched::trace::Kind::Preempt, (*me).id_u64(), 0);
            (*me).set_state(State::Runnable);
            Core::of(me).schedule(me, After::Requeue);
        } else {
            Core::of(me).resched.ask_here();
        }
        compiler_fence(Ordering::SeqCst);
        (*me).preempt_count.store(0, Ordering::Relaxed);
    }
}

unsafe extern "C" {
    fn spindle_preempt_trampoline_v1();
    fn spindle_preempt_trampoline_end_v1();
}

// The trampoline a preempted thread resumes in. The handler made it look as if the
// interrupted instruction had called it from 128 bytes further down the stack: on
// entry every register holds what the thread had when the signal came, except
//   rsp = interrupted rsp - 136, [rsp] = interrupted rip,
// and [rsp + 8, rsp + 136) is the thread's red zone, which nothing here touches.
//
// Its CFI describes the interrupted frame as its caller, so that `preempted` can walk
// the thread's frames with the unwinder (`code::frames_hold_no_std`): the CFA is the
// interrupted rsp (entry rsp + 136), the "return address" is at CFA - 136, and each
// saved register is recorded as it is pushed. `.cfi_signal_frame` tells the unwinder
// that this return address is the interrupted instruction itself, not the one after
// a call (it must not look up `rip - 1`).
global_asm!(
    ".text",
    ".p2align 4",
    ".globl spindle_preempt_trampoline_v1",
    ".hidden spindle_preempt_trampoline_v1",
    ".type spindle_preempt_trampoline_v1, @function",
    "spindle_preempt_trampoline_v1:",
    ".cfi_startproc",
    ".cfi_signal_frame",
    // CFA = the interrupted rsp; the interrupted rip is at CFA - 136.
    ".cfi_def_cfa rsp, 136",
    ".cfi_offset rip, -136",
    // Save rflags first, before any instruction below changes them.
    "pushfq",
    ".cfi_adjust_cfa_offset 8",
    // Save the fifteen general registers other than rsp, recording where each went
    // (CFA - 136 - 8 for the flags, then 8 bytes further down per push).
    "push rax",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset rax, -152",
    "push rcx",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset rcx, -160",
    "push rdx",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset rdx, -168",
    "push rbx",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset rbx, -176",
    "push rbp",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset rbp, -184",
    "push rsi",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset rsi, -192",
    "push rdi",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset rdi, -200",
    "push r8",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset r8, -208",
    "push r9",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset r9, -216",
    "push r10",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset r10, -224",
    "push r11",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset r11, -232",
    "push r12",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset r12, -240",
    "push r13",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset r13, -248",
    "push r14",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset r14, -256",
    "push r15",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset r15, -264",
    // rbx (saved above, callee-saved across the call below) keeps the address of the
    // saved registers, to come back to after the vector state.
    "mov rbx, rsp",
    // rsp is realigned below: from here the CFA is found through rbx (rsp + 264 at
    // this point).
    ".cfi_def_cfa_register rbx",
    // Reserve the vector/x87 save area: its size (a multiple of 64) from XSAVE_SIZE.
    "sub rsp, qword ptr [rip + {size}]",
    // Align it to 64 bytes, as xsave64 requires (fxsave64 needs 16).
    "and rsp, -64",
    // XSAVE_MODE = 0: no XSAVE on this machine, use fxsave64.
    "cmp qword ptr [rip + {mode}], 0",
    "je 2f",
    // rax = 0, to clear the XSAVE header below.
    "xor eax, eax",
    // Zero the 64-byte XSAVE header at offset 512: xsave64 writes only its first
    // word (XSTATE_BV), and xrstor64 faults if the reserved bytes after it are not
    // zero (this is stack garbage).
    "mov qword ptr [rsp + 512], rax",
    "mov qword ptr [rsp + 520], rax",
    "mov qword ptr [rsp + 528], rax",
    "mov qword ptr [rsp + 536], rax",
    "mov qword ptr [rsp + 544], rax",
    "mov qword ptr [rsp + 552], rax",
    "mov qword ptr [rsp + 560], rax",
    "mov qword ptr [rsp + 568], rax",
    // edx:eax = the feature mask (XCR0): low half into eax...
    "mov eax, dword ptr [rip + {mask}]",
    // ... and high half into edx.
    "mov edx, dword ptr [rip + {mask} + 4]",
    // Save every enabled state component: x87, SSE, AVX, AVX-512, ...
    "xsave64 [rsp]",
    // Skip the fxsave64 path.
    "jmp 3f",
    "2:",
    // No XSAVE: save x87, MXCSR and xmm0-xmm15.
    "fxsave64 [rsp]",
    "3:",
    // The ABI requires the direction flag clear at a call; the thread may have set it
    // (its value is in the saved rflags).
    "cld",
    // Yield. rsp is 64-byte aligned, so 16-byte aligned at the call as the ABI wants.
    "call {preempted}",
    // Back, possibly on another core. Same test as above for the restore.
    "cmp qword ptr [rip + {mode}], 0",
    "je 4f",
    // edx:eax = the same feature mask: low half...
    "mov eax, dword ptr [rip + {mask}]",
    // ... and high half.
    "mov edx, dword ptr [rip + {mask} + 4]",
    // Restore every state component saved above.
    "xrstor64 [rsp]",
    // Skip the fxrstor64 path.
    "jmp 5f",
    "4:",
    // No XSAVE: restore x87, MXCSR and xmm0-xmm15.
    "fxrstor64 [rsp]",
    "5:",
    // Drop the save area: rsp points at the saved general registers again.
    "mov rsp, rbx",
    // The CFA is found through rsp again.
    ".cfi_def_cfa_register rsp",
    // Restore the general registers in reverse order (rbx last of its group, so the
    // pointer it held is no longer needed).
    "pop r15",
    ".cfi_adjust_cfa_offset -8",
    "pop r14",
    ".cfi_adjust_cfa_offset -8",
    "pop r13",
    ".cfi_adjust_cfa_offset -8",
    "pop r12",
    ".cfi_adjust_cfa_offset -8",
    "pop r11",
    ".cfi_adjust_cfa_offset -8",
    "pop r10",
    ".cfi_adjust_cfa_offset -8",
    "pop r9",
    ".cfi_adjust_cfa_offset -8",
    "pop r8",
    ".cfi_adjust_cfa_offset -8",
    "pop rdi",
    ".cfi_adjust_cfa_offset -8",
    "pop rsi",
    ".cfi_adjust_cfa_offset -8",
    "pop rbp",
    ".cfi_adjust_cfa_offset -8",
    "pop rbx",
    ".cfi_adjust_cfa_offset -8",
    "pop rdx",
    ".cfi_adjust_cfa_offset -8",
    "pop rcx",
    ".cfi_adjust_cfa_offset -8",
    "pop rax",
    ".cfi_adjust_cfa_offset -8",
    // Restore rflags last: nothing after this changes them (`ret` does not).
    "popfq",
    ".cfi_adjust_cfa_offset -8",
    // Pop the interrupted rip and release the 128-byte red zone: rsp is exactly the
    // interrupted rsp again, and execution continues at the interrupted instruction.
    "ret 128",
    ".cfi_endproc",
    ".size spindle_preempt_trampoline_v1, . - spindle_preempt_trampoline_v1",
    // A label just past the trampoline, for `in_trampoline`.
    ".globl spindle_preempt_trampoline_end_v1",
    ".hidden spindle_preempt_trampoline_end_v1",
    "spindle_preempt_trampoline_end_v1:",
    // Never executed (keeps the label inside .text with something after it).
    "ud2",
    size = sym XSAVE_SIZE,
    mode = sym XSAVE_MODE,
    mask = sym XSAVE_MASK,
    preempted = sym preempted,
);
