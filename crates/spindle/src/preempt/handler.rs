//! The preemption signal handler: decides whether the interrupted code may be
//! preempted, and if so redirects it into the trampoline.

use std::sync::Once;
use std::sync::atomic::AtomicUsize;

use super::trampoline;
use super::{PREEMPT_SIGNAL, code, signal, watchdog};
use crate::loom::Ordering;
use crate::sched::Core;
use crate::stack::{block_of, guard_size};
use crate::task::tcb::{State, Tcb};

/// Bytes below the interrupted stack pointer the trampoline may not touch (the
/// System V red zone).
const RED_ZONE: usize = 128;

/// Stack the trampoline's call into the scheduler may use, beyond the saved state
/// (the frame walk of `code::frames_hold_no_std` included).
const YIELD_STACK: usize = 8192;

/// Code ranges of the main executable (`[start, end)` pairs).
static TEXT: [AtomicUsize; 16] = [const { AtomicUsize::new(0) }; 16];
/// How many words of `TEXT` hold ranges.
static TEXT_LEN: AtomicUsize = AtomicUsize::new(0);
/// `install`'s once-per-process guard.
static INSTALL: Once = Once::new();

/// Installs the preemption signal handler and measures the save area, once per
/// process.
pub(crate) fn install() {
    INSTALL.call_once(|| {
        trampoline::measure_xsave();
        find_text();
        signal::install(PREEMPT_SIGNAL, on_signal as *const () as usize);
    });
}

/// Records the executable code ranges of the main program (the first object
/// `dl_iterate_phdr` reports).
fn find_text() {
    /// The `dl_iterate_phdr` callback.
    ///
    /// # Safety
    ///
    /// Called by the loader with a valid `dl_phdr_info`.
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        _data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid info record whose program headers are readable during the call.
        unsafe {
            let base = (*info).dlpi_addr as usize;
            let phdrs = std::slice::from_raw_parts((*info).dlpi_phdr, (*info).dlpi_phnum as usize);
            let mut n = 0;
            for ph in phdrs {
                if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 && n + 2 <= TEXT.len()
                {
                    let start = base + ph.p_vaddr as usize;
                    TEXT[n].store(start, Ordering::Relaxed);
                    TEXT[n + 1].store(start + ph.p_memsz as usize, Ordering::Relaxed);
                    n += 2;
                }
            }
            TEXT_LEN.store(n, Ordering::Release);
        }
        // Stop after the first object: the main program.
        1
    }
    // SAFETY: `visit` matches the callback type and only reads the records it is given.
    unsafe { libc::dl_iterate_phdr(Some(visit), std::ptr::null_mut()) };
}

/// Whether `ip` lies in the main executable's code.
#[inline]
fn in_text(ip: usize) -> bool {
    let n = TEXT_LEN.load(Ordering::Acquire);
    let mut i = 0;
    while i < n {
        if ip >= TEXT[i].load(Ordering::Relaxed) && ip < TEXT[i + 1].load(Ordering::Relaxed) {
            return true;
        }
        i += 2;
    }
    false
}

/// Whether the interrupted instruction `ip` may be preempted: in the main
/// executable's code, not in the trampoline, and not in a function of `std`
/// (`code`; without a symbol table, nowhere). Async-signal-safe.
#[inline]
fn may_interrupt(ip: usize) -> bool {
    in_text(ip)
        && !trampoline::contains(ip)
        && code::available()
        && code::kind_of(ip) != code::Kind::Std
}

/// The preemption signal handler. Async-signal-safe: loads, stores, a binary search
/// and one atomic increment (a name's reference count); no allocation, no lock, no
/// system call. A SIGURG that is not spindle's goes to the handler installed before
/// (`signal::chain`).
extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    if !unsafe { signal::is_ours(info) } {
        // SAFETY: the kernel's own arguments, forwarded.
        unsafe { signal::chain(sig, info, ctx) };
        return;
    }
    let uc = ctx.cast::<libc::ucontext_t>();
    // SAFETY: the kernel passes the interrupted context of an SA_SIGINFO handler; it is ours to read and change until we return.
    let gregs = unsafe { &mut (*uc).uc_mcontext.gregs };
    let ip = gregs[libc::REG_RIP as usize] as usize;
    let sp = gregs[libc::REG_RSP as usize] as usize;
    let Some((base, size)) = block_of(sp) else {
        // The scheduler context, a signal stack, or not a core at all.
        return;
    };
    let tcb = Tcb::at_top_of(base, size);
    // SAFETY: `sp` lies in this block, so the interrupted code runs on this thread's stack: the thread is alive, and (same OS thread) cannot change while we run. Its core lives as long as the runtime.
    unsafe {
        if (*tcb).adrift.load(std::sync::atomic::Ordering::Relaxed) != 0
            || (*tcb).core.get().is_null()
            || (*tcb).state() != State::Running
        {
            // Adrift (or being let go): its core's signals are not for it.
            return;
        }
        let core = Core::of(tcb);
        let k = &core.clock;
        if k.id.load(Ordering::Relaxed) != (*tcb).id_u64() {
            // Mid-switch: the core already published the next thread.
            return;
        }
        let count = (*tcb).preempt_count.load(Ordering::Relaxed);
        if count == 0 && core.let_go(tcb) {
            // The core goes to a spare OS thread; this one runs the thread on.
            return;
        }
        if count == 0 && k.want_name.load(Ordering::Relaxed) {
            watchdog::hand_over_name(k, tcb);
        }
        if !(*tcb).preemptible {
            return;
        }
        let need = RED_ZONE + 8 + 16 * 8 + trampoline::save_area_size() + 64 + YIELD_STACK;
        if count != 0
            || !may_interrupt(ip)
            || sp < base + guard_size() + need
            || std::thread::panicking()
        {
            core.resched.ask_here();
            return;
        }
        // Raised until `preempted` has yielded: no second preemption in between.
        (*tcb).preempt_count.store(1, Ordering::Relaxed);
        // As at every count 0 → 1 (`PreemptGuard::of`): the tick's handoff may be
        // taking the core (`sched::carrier`), and then the yield must not touch it.
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        if (*tcb).adrift.load(std::sync::atomic::Ordering::Relaxed) != 0 {
            (*tcb).preempt_count.store(0, Ordering::Relaxed);
            return;
        }
        // Below the red zone, push the interrupted instruction pointer, as a `call`
        // at that point would have; the trampoline's `ret 128` pops it and skips the
        // red zone again.
        let new_sp = sp - RED_ZONE - 8;
        (new_sp as *mut usize).write(ip);
        gregs[libc::REG_RSP as usize] = new_sp as i64;
        gregs[libc::REG_RIP as usize] = trampoline::entry() as i64;
    }
}
