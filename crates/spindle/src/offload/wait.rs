//! How the service loop waits when it has nothing to do: user-mode monitor/wait
//! instructions when CPUID reports them, else a futex sleep.
//!
//! - **`umonitor`/`umwait`** (Intel WAITPKG, CPUID.(7,0):ECX bit 5): arm a monitor on
//!   the doorbell's cache line, re-check it, then wait in C0.2 until the line is
//!   written or a TSC deadline passes.
//! - **`monitorx`/`mwaitx`** (AMD, CPUID.8000_0001h:ECX bit 29): the same with a
//!   timeout in TSC cycles.
//! - **futex**: the doorbell's ordinary kernel sleep.
//!
//! Both instruction paths re-check the doorbell word between arming the monitor and
//! waiting: a write that lands before the monitor is armed would not end the wait
//! (a lost wakeup), and the re-check sees it instead. The mnemonics are
//! emitted as bytes so the assembler needs no target feature; they run only when
//! CPUID said so.

use std::sync::OnceLock;

use crate::loom::AtomicU32;

/// How the service loop waits for requests once it has spun for a while.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStrategy {
    /// `umonitor`/`umwait` (Intel WAITPKG).
    Umwait,
    /// `monitorx`/`mwaitx` (AMD).
    Mwaitx,
    /// A futex sleep (no user-mode wait instruction on this CPU).
    Futex,
}

impl WaitStrategy {
    /// The name used in reports: `umwait`, `mwaitx` or `futex`.
    pub fn name(self) -> &'static str {
        match self {
            WaitStrategy::Umwait => "umwait",
            WaitStrategy::Mwaitx => "mwaitx",
            WaitStrategy::Futex => "futex",
        }
    }
}

/// The strategy this machine supports, read from CPUID once.
// `__cpuid` is an unsafe fn before Rust 1.91 and safe after.
#[allow(unused_unsafe)]
pub(crate) fn detect() -> WaitStrategy {
    static S: OnceLock<WaitStrategy> = OnceLock::new();
    *S.get_or_init(|| {
        use std::arch::x86_64::{__cpuid, __cpuid_count};
        // SAFETY: CPUID is available on every x86_64 CPU; leaf 0 reports the highest basic leaf.
        let max = unsafe { __cpuid(0) }.eax;
        if max >= 7 {
            // SAFETY: leaf 7 exists (checked above).
            let l7 = unsafe { __cpuid_count(7, 0) };
            if l7.ecx & (1 << 5) != 0 {
                return WaitStrategy::Umwait;
            }
        }
        // SAFETY: leaf 0x8000_0000 reports the highest extended leaf on every x86_64 CPU.
        let ext = unsafe { __cpuid(0x8000_0000) }.eax;
        if ext >= 0x8000_0001 {
            // SAFETY: the extended leaf exists (checked above).
            let e1 = unsafe { __cpuid(0x8000_0001) };
            if e1.ecx & (1 << 29) != 0 {
                return WaitStrategy::Mwaitx;
            }
        }
        WaitStrategy::Futex
    })
}

/// Longest single monitored wait, in TSC cycles (~30–100 µs): the caller re-checks
/// its timers and the clock after each.
const WAIT_CYCLES: u64 = 100_000;

/// Waits on `word`'s cache line while `*word == armed`, for a short bounded time.
///
/// # Safety
///
/// `strategy` must be what [`detect`] returned on this machine (the instruction must
/// exist), and must not be [`WaitStrategy::Futex`].
pub(crate) unsafe fn monitored_wait(strategy: WaitStrategy, word: &AtomicU32, armed: u32) {
    let addr = word as *const AtomicU32 as usize;
    match strategy {
        WaitStrategy::Umwait => {
            // SAFETY: WAITPKG is present (caller); umonitor only arms a monitor on a mapped address we own.
            unsafe {
                std::arch::asm!(
                    // umonitor rax: arm the monitor on the cache line at [rax]
                    ".byte 0xf3, 0x0f, 0xae, 0xf0",
                    in("rax") addr,
                    options(nostack, preserves_flags),
                );
            }
            // The re-check right before waiting: a write that landed before the
            // monitor was armed must not be slept through.
            if word.load(crate::loom::Ordering::SeqCst) != armed {
                return;
            }
            // SAFETY: reading the TSC has no preconditions.
            let deadline = unsafe { std::arch::x86_64::_rdtsc() } + WAIT_CYCLES;
            // SAFETY: WAITPKG is present (caller); umwait only waits (bounded by the deadline and the OS limit).
            unsafe {
                std::arch::asm!(
                    // umwait ecx: wait until the monitored line is written or the TSC
                    // reaches edx:eax; ecx = 0 asks for the deeper C0.2 state; sets CF
                    // when the OS time limit ended the wait
                    ".byte 0xf2, 0x0f, 0xae, 0xf1",
                    in("ecx") 0u32,
                    in("eax") deadline as u32,
                    in("edx") (deadline >> 32) as u32,
                    options(nostack),
                );
            }
        }
        WaitStrategy::Mwaitx => {
            // SAFETY: MONITORX is present (caller); monitorx only arms a monitor on a mapped address we own.
            unsafe {
                std::arch::asm!(
                    // monitorx: arm the monitor on the line at [rax]; ecx = extensions
                    // (none), edx = hints (none)
                    ".byte 0x0f, 0x01, 0xfa",
                    in("rax") addr,
                    in("ecx") 0u32,
                    in("edx") 0u32,
                    options(nostack, preserves_flags),
                );
            }
            // The re-check right before waiting (see `Umwait`).
            if word.load(crate::loom::Ordering::SeqCst) != armed {
                return;
            }
            // SAFETY: MONITORX is present (caller); mwaitx only waits, bounded by its timer. rbx is saved and restored around it (LLVM reserves it).
            unsafe {
                std::arch::asm!(
                    // keep rbx (reserved by the compiler) in a scratch register
                    "mov {save}, rbx",
                    // rbx = the timeout in TSC cycles
                    "mov rbx, {cycles}",
                    // mwaitx: wait until the monitored line is written or the timer
                    // runs out; eax = 0xf0 hints C0, ecx bit 1 enables the timer
                    ".byte 0x0f, 0x01, 0xfb",
                    // restore rbx
                    "mov rbx, {save}",
                    save = out(reg) _,
                    cycles = in(reg) WAIT_CYCLES,
                    in("eax") 0xf0u32,
                    in("ecx") 2u32,
                    options(nostack, preserves_flags),
                );
            }
        }
        WaitStrategy::Futex => {}
    }
}
