//! Stack-overflow reports.
//!
//! A SIGSEGV handler, run on an alternate signal stack (the faulting stack is full),
//! checks whether the fault address lies in the guard page of a spindle stack block.
//! If it does, it prints `thread '<name>' (id N) overflowed its <S>-byte stack` and
//! aborts. Any other fault is handed to the handler that was installed before ours
//! (or the default action), so ordinary crashes behave as they would without spindle.
//!
//! Everything reachable from the handler is async-signal-safe: no allocation, no lock,
//! only loads, arithmetic, `write(2)` and `abort`.

use std::mem::MaybeUninit;
use std::sync::Once;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use super::{block_of, guard_size};

/// Names the thread whose stack block is `[base, base + size)`: its name's bytes (if
/// any) and its id. Async-signal-safe. Registered by the layer that knows what lives
/// at the top of a block ([`set_describer`]).
pub(crate) type Describe = unsafe fn(base: usize, size: usize) -> (Option<&'static [u8]>, u64);

/// The registered [`Describe`], as a `usize` (0: none, the report names no thread).
static DESCRIBE: AtomicUsize = AtomicUsize::new(0);

/// Registers how an overflow report names the thread of a block.
pub(crate) fn set_describer(f: Describe) {
    DESCRIBE.store(f as usize, Ordering::Release);
}

/// Size of each core's alternate signal stack.
const ALT_STACK_SIZE: usize = 64 << 10;

/// The SIGSEGV action that was in place before ours (a leaked `sigaction`).
static PREVIOUS: AtomicPtr<libc::sigaction> = AtomicPtr::new(std::ptr::null_mut());
static INSTALL: Once = Once::new();

/// Installs the SIGSEGV handler once per process.
pub(crate) fn install_handler() {
    INSTALL.call_once(|| {
        let mut prev = Box::new(MaybeUninit::<libc::sigaction>::zeroed());
        // SAFETY: a zeroed sigaction is a valid starting value; we fill in the handler, flags and an empty mask, then install it, saving the old action in `prev`.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_segv as *const () as usize;
            act.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut act.sa_mask);
            if libc::sigaction(libc::SIGSEGV, &act, prev.as_mut_ptr()) == 0 {
                PREVIOUS.store(Box::into_raw(prev).cast(), Ordering::Release);
            }
        }
    });
}

/// An alternate signal stack for the calling OS thread, removed on drop.
pub(crate) struct AltStack {
    mem: *mut libc::c_void,
    /// Whether we installed it (a thread that already had one keeps its own).
    ours: bool,
}

impl AltStack {
    /// Installs an alternate signal stack on this OS thread unless it has one.
    pub(crate) fn install() -> AltStack {
        // SAFETY: querying the current alternate stack into a zeroed stack_t.
        let mut old: libc::stack_t = unsafe { std::mem::zeroed() };
        // SAFETY: a null new-stack pointer only queries.
        unsafe { libc::sigaltstack(std::ptr::null(), &mut old) };
        if old.ss_flags & libc::SS_DISABLE == 0 {
            return AltStack {
                mem: std::ptr::null_mut(),
                ours: false,
            };
        }
        // SAFETY: a fresh private anonymous mapping for the signal stack.
        let mem = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ALT_STACK_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if mem == libc::MAP_FAILED {
            return AltStack {
                mem: std::ptr::null_mut(),
                ours: false,
            };
        }
        let st = libc::stack_t {
            ss_sp: mem,
            ss_flags: 0,
            ss_size: ALT_STACK_SIZE,
        };
        // SAFETY: `st` describes the mapping above, which lives until drop.
        unsafe { libc::sigaltstack(&st, std::ptr::null_mut()) };
        AltStack { mem, ours: true }
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        if !self.ours {
            return;
        }
        let st = libc::stack_t {
            ss_sp: std::ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        // SAFETY: disabling the alternate stack we installed, then unmapping it; no signal handler runs on it at this point (we are on the normal stack).
        unsafe {
            libc::sigaltstack(&st, std::ptr::null_mut());
            libc::munmap(self.mem, ALT_STACK_SIZE);
        }
    }
}

extern "C" fn on_segv(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    if let Some((base, size)) = block_of(addr)
        && addr >= base
        && addr < base + guard_size()
    {
        report_overflow(base, size);
    }
    // Not ours: restore the previous action and return, so the faulting instruction
    // runs again and faults under it (the default action dumps core).
    let prev = PREVIOUS.load(Ordering::Acquire);
    // SAFETY: `prev` is null or the leaked sigaction saved at install time.
    unsafe {
        if prev.is_null() {
            libc::signal(sig, libc::SIG_DFL);
        } else {
            let p = &*prev;
            if p.sa_flags & libc::SA_SIGINFO != 0
                && p.sa_sigaction != libc::SIG_DFL
                && p.sa_sigaction != libc::SIG_IGN
            {
                // Chain to a previous siginfo handler directly.
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    std::mem::transmute(p.sa_sigaction);
                f(sig, info, ctx);
                return;
            }
            libc::sigaction(sig, prev, std::ptr::null_mut());
        }
    }
}

fn report_overflow(base: usize, size: usize) -> ! {
    let mut buf = Buf::new();
    buf.push(b"thread '");
    let describe = DESCRIBE.load(Ordering::Acquire);
    let (name, id) = if describe == 0 {
        (None, 0)
    } else {
        // SAFETY: a `Describe` was stored here by `set_describer`.
        let f = unsafe { std::mem::transmute::<usize, Describe>(describe) };
        // SAFETY: the fault lies in this block's guard page, so the block is (or was) a thread's stack, as `Describe` requires.
        unsafe { f(base, size) }
    };
    buf.push(name.unwrap_or(b"<unnamed>"));
    buf.push(b"' (id ");
    buf.push_u64(id);
    buf.push(b") overflowed its ");
    buf.push_u64(size as u64);
    buf.push(b"-byte stack\nfatal runtime error: stack overflow, aborting\n");
    // SAFETY: write(2) and abort(3) are async-signal-safe.
    unsafe {
        libc::write(2, buf.bytes.as_ptr().cast(), buf.len);
        libc::abort();
    }
}

/// A fixed buffer for building the message without allocating.
struct Buf {
    bytes: [u8; 512],
    len: usize,
}

impl Buf {
    fn new() -> Buf {
        Buf {
            bytes: [0; 512],
            len: 0,
        }
    }

    fn push(&mut self, s: &[u8]) {
        let n = s.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
    }

    fn push_u64(&mut self, mut v: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }
}
