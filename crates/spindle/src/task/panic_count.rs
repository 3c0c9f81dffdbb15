//! The panic count follows the spindle thread, not the OS thread.
//!
//! std keeps the number of panics in progress per OS thread: it answers
//! `std::thread::panicking()`, decides lock poisoning (std's and spindle's), and a
//! `catch_unwind` takes one off the OS thread it runs on. A spindle thread that
//! switches out while it unwinds (a destructor on its way sleeps, locks, joins, or
//! migrates) would leave its count on its core's OS thread — every other thread of
//! that core would then be "panicking" — and, resumed on another core, its catch would
//! take one off a count that never had it there.
//!
//! So the count moves with the thread. When a thread switches out while its OS
//! thread's count is not zero, the scheduler takes the count off the OS thread and
//! keeps it in the TCB (`Tcb::panic_depth`); when the thread resumes, on whichever
//! core, the count is put back. The OS thread's count is therefore always the running
//! thread's own, and `std::thread::panicking()` and [`panicking`] agree.
//!
//! ## Tokens
//!
//! std has no call that sets the count, but it has two that change it: starting an
//! unwind with `resume_unwind` adds one on the calling OS thread (and runs no panic
//! hook), and the `catch_unwind` that catches it takes one off the OS thread it runs
//! on. A **token** is an unwind suspended half-way: a context on a small stack of its
//! own whose body starts an unwind under a `catch_unwind`, and whose destructor on the
//! way switches back to whoever started it.
//!
//! - [`raise`] starts a new token: +1 on this OS thread; the token is kept suspended.
//! - [`lower`] resumes a suspended token: its unwind ends in its catch, -1 on this OS
//!   thread; the token switches back for good and its stack is reused.
//!
//! A suspended token carries the +1 of the OS thread that raised it. Tokens raised
//! when a thread resumes are balanced by that thread's own catch later; the first
//! tokens are raised by a short-lived OS thread (the *sink*) whose count ends with it,
//! so lowering never needs a count that is not there. The process-wide part of std's
//! count then stays at the number of pooled tokens, and `std::thread::panicking()`
//! reads its thread-local count instead of answering from the process-wide one alone:
//! one thread-local load more, in programs that ever blocked while unwinding.
//!
//! A token's unwind is only suspended in the destructor (a landing pad): no frame of
//! the unwinder is on its stack then, so it may finish on any OS thread.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Mutex;

use crate::arch::{self, Context};
use crate::task::tcb::Tcb;

/// Bytes of a token's stack (the unwinder's frames are its largest user).
const TOKEN_STACK: usize = 64 << 10;
/// Tokens the sink raises at once.
const SINK_BATCH: usize = 8;

/// A token's stack: an anonymous mapping with a guard page at the bottom.
struct TokenStack {
    base: usize,
}

// SAFETY: a stack is plain memory owned by whoever holds the value.
unsafe impl Send for TokenStack {}

impl TokenStack {
    fn new() -> TokenStack {
        let page = crate::os::page_size();
        // SAFETY: a fresh anonymous private mapping; nothing else refers to it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                TOKEN_STACK,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            // Only reachable when a thread blocks while unwinding and the process is
            // out of address space: nothing sensible is left to do.
            eprintln!("spindle: cannot map a stack to carry a panic count; aborting");
            std::process::abort();
        }
        // SAFETY: the lowest page of the mapping just made; a guard against overflow.
        unsafe { libc::mprotect(p, page, libc::PROT_NONE) };
        TokenStack { base: p as usize }
    }

    fn top(&self) -> usize {
        self.base + TOKEN_STACK
    }
}

/// A suspended unwind (see the module docs).
struct Token {
    /// The token's context while it is suspended.
    ctx: Context,
    /// Where the token switches to when it suspends or finishes: the context of the
    /// `raise` or `lower` that resumed it.
    back: *mut Context,
    /// Set by the token once its unwind was caught.
    finished: bool,
    stack: TokenStack,
}

// SAFETY: a suspended token is resumed by one OS thread at a time (it is taken out of the pool under its lock); its unwind may end on any OS thread (see the module docs).
unsafe impl Send for Token {}

/// Suspended tokens, ready to be lowered. Boxed: a suspended token's body holds its
/// address, so it may not move.
#[allow(clippy::vec_box)]
static POOL: Mutex<Vec<Box<Token>>> = Mutex::new(Vec::new());
/// Stacks of finished tokens, for the next raise.
static STACKS: Mutex<Vec<TokenStack>> = Mutex::new(Vec::new());

/// The payload of a token's unwind (never seen outside this module).
struct TokenPayload;

/// Switches back to `back` when dropped: the token's suspension point.
struct Suspend(*mut Token);

impl Drop for Suspend {
    fn drop(&mut self) {
        let tok = self.0;
        // SAFETY: the token is alive (its body is running) and `back` is the context of the raise that started it; it resumes us (lower) from the same kind of call.
        unsafe { arch::switch(&raw mut (*tok).ctx, (*tok).back) };
    }
}

/// A token's body: starts an unwind, suspends in `Suspend::drop`, and when resumed lets
/// the unwind end in the catch below.
///
/// # Safety
///
/// Called once, through a context built by `raise` for the token at `arg`.
unsafe extern "C" fn token_main(arg: usize) -> ! {
    let tok = arg as *mut Token;
    let caught = catch_unwind(AssertUnwindSafe(|| {
        let _suspend = Suspend(tok);
        resume_unwind(Box::new(TokenPayload));
    }));
    drop(caught);
    // SAFETY: the token is alive; `back` is the context of the `lower` that resumed us, which never resumes this context again.
    unsafe {
        (*tok).finished = true;
        arch::switch(&raw mut (*tok).ctx, (*tok).back);
    }
    // A finished token is never switched back into.
    std::process::abort()
}

/// Adds one to this OS thread's panic count and keeps the token that carries it.
fn raise() {
    let stack = STACKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pop()
        .unwrap_or_else(TokenStack::new);
    let mut tok = Box::new(Token {
        ctx: Context::default(),
        back: std::ptr::null_mut(),
        finished: false,
        stack,
    });
    let mut here = Context::default();
    tok.back = &raw mut here;
    let top = tok.stack.top();
    let arg = &raw mut *tok as usize;
    // SAFETY: the token's stack is ours and unused; `token_main` never returns; the switch comes back here when the token suspends (its destructor switches to `here`).
    unsafe {
        arch::init_context(&mut tok.ctx, top, token_main, arg);
        arch::switch(&raw mut here, &raw const tok.ctx);
    }
    POOL.lock().unwrap_or_else(|e| e.into_inner()).push(tok);
}

/// Takes one off this OS thread's panic count, by finishing a suspended token.
fn lower() {
    let tok = loop {
        if let Some(t) = POOL.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            break t;
        }
        refill();
    };
    let mut tok = tok;
    let mut here = Context::default();
    tok.back = &raw mut here;
    // SAFETY: the token is suspended in its destructor; resuming it finishes its unwind, then it switches back to `here` for good.
    unsafe { arch::switch(&raw mut here, &raw const tok.ctx) };
    debug_assert!(tok.finished, "a lowered token did not finish");
    STACKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(tok.stack);
}

/// Raises a batch of tokens on a short-lived OS thread, whose count ends with it.
#[cold]
fn refill() {
    let sink = std::thread::Builder::new()
        .name("spindle-panic-sink".into())
        .spawn(|| {
            for _ in 0..SINK_BATCH {
                raise();
            }
        });
    match sink.map(|h| h.join()) {
        Ok(Ok(())) => {}
        _ => {
            eprintln!("spindle: cannot start a thread to carry a panic count; aborting");
            std::process::abort();
        }
    }
}

/// Takes the OS thread's panic count off it and into `me`'s TCB, if it has one; the
/// thread is about to switch out. One load of std's process-wide count when nobody
/// panics.
///
/// # Safety
///
/// `me` is the running thread, about to switch out on this OS thread.
#[inline(always)]
pub(crate) unsafe fn take_off(me: *mut Tcb) {
    if std::thread::panicking() {
        // SAFETY: forwarded from the caller.
        unsafe { take_off_slow(me) };
    }
}

/// # Safety
///
/// As for [`take_off`].
#[cold]
#[inline(never)]
unsafe fn take_off_slow(me: *mut Tcb) {
    let mut depth = 0;
    while std::thread::panicking() {
        lower();
        depth += 1;
    }
    // SAFETY: the running thread's own TCB.
    unsafe { (*me).panic_depth.set(depth) };
}

/// Puts back the panic count `me` took off when it switched out; `me` just resumed on
/// this OS thread.
///
/// # Safety
///
/// `me` is the running thread, just resumed on this OS thread.
#[inline(always)]
pub(crate) unsafe fn put_back(me: *mut Tcb) {
    // SAFETY: the running thread's own TCB.
    let depth = unsafe { (*me).panic_depth.get() };
    if depth != 0 {
        // SAFETY: forwarded from the caller.
        unsafe { put_back_slow(me, depth) };
    }
}

/// # Safety
///
/// As for [`put_back`].
#[cold]
#[inline(never)]
unsafe fn put_back_slow(me: *mut Tcb, depth: u32) {
    for _ in 0..depth {
        raise();
    }
    // SAFETY: the running thread's own TCB.
    unsafe { (*me).panic_depth.set(0) };
}

/// Whether the running thread is unwinding because of a panic: the spindle thread's
/// own state on a spindle thread (a panic of another thread of the same core, which
/// switched out while unwinding, does not count), std's on an OS thread.
///
/// The runtime keeps std's per-OS-thread count equal to the running spindle thread's
/// (see the module docs), so `std::thread::panicking()` gives the same answer;
/// spindle's `Mutex` and `RwLock` poison on it.
///
/// # Examples
///
/// ```
/// spindle::run(|| {
///     assert!(!spindle::panicking());
///     let h = spindle::spawn(|| {
///         struct Check;
///         impl Drop for Check {
///             fn drop(&mut self) {
///                 assert!(spindle::panicking());
///             }
///         }
///         let _c = Check;
///         panic!("on purpose");
///     });
///     assert!(h.join().is_err());
/// });
/// ```
#[inline]
pub fn panicking() -> bool {
    std::thread::panicking()
}
