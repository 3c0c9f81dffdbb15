//! The preemption signal, shared with the rest of the program.
//!
//! SIGURG is also the signal of out-of-band socket data, and a program (or a library)
//! may have a handler for it. So:
//!
//! - spindle's signals carry a mark: they are sent with `rt_tgsigqueueinfo` as
//!   `SI_QUEUE` with [`COOKIE`] as their value, which no other sender uses;
//! - the handler that was installed before spindle's ([`install`]) is kept, and called
//!   for every SIGURG that does not carry the mark ([`chain`]), with the handler's own
//!   calling convention (`SA_SIGINFO` or not); an ignored or default SIGURG stays
//!   ignored;
//! - a handler installed after spindle's replaces it, which silently ends asynchronous
//!   preemption. Before sending, the tick checks (at most every
//!   [`CHECK_EVERY_NS`]) that spindle's handler is still in place; if not, it says so
//!   once on stderr and sends no more signals (threads are then preempted at their
//!   runtime calls only).

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// The value spindle's signals carry.
pub(crate) const COOKIE: usize = 0x5350_494e_444c_4531; // "SPINDLE1"

/// How often, at most, the handler's presence is checked (in ns of the tick's clock).
const CHECK_EVERY_NS: u64 = 100_000_000;

/// The previous handler: its `sa_sigaction` and `sa_flags`, written once by `install`
/// before spindle's handler can run.
static PREV_ACTION: AtomicUsize = AtomicUsize::new(libc::SIG_DFL);
static PREV_FLAGS: AtomicUsize = AtomicUsize::new(0);
/// Spindle's handler, as installed.
static OURS: AtomicUsize = AtomicUsize::new(0);
/// Another handler replaced ours: no more signals are sent.
static REPLACED: AtomicBool = AtomicBool::new(false);
/// When the handler was last checked (ns since the first check).
static CHECKED_AT: AtomicU64 = AtomicU64::new(0);

/// Installs `handler` for `sig`, keeping the handler it replaces for [`chain`].
pub(crate) fn install(sig: c_int, handler: usize) {
    // SAFETY: a zeroed sigaction is a valid starting value; we fill in the handler, flags and an empty mask, then install it, reading back the previous one.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = handler;
        act.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
        libc::sigemptyset(&mut act.sa_mask);
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, &act, &mut old);
        PREV_ACTION.store(old.sa_sigaction, Ordering::Relaxed);
        PREV_FLAGS.store(old.sa_flags as usize, Ordering::Relaxed);
    }
    OURS.store(handler, Ordering::Release);
}

/// Whether the signal described by `info` is one of spindle's. Async-signal-safe.
///
/// # Safety
///
/// `info` is the `siginfo_t` the kernel passed to an `SA_SIGINFO` handler.
pub(crate) unsafe fn is_ours(info: *const libc::siginfo_t) -> bool {
    // SAFETY: per the contract; the value is only read as a number.
    unsafe { (*info).si_code == libc::SI_QUEUE && (*info).si_value().sival_ptr as usize == COOKIE }
}

/// Calls the handler spindle's replaced, for a signal that is not spindle's.
/// Async-signal-safe (as far as that handler is).
///
/// # Safety
///
/// The arguments are those the kernel passed to spindle's handler.
pub(crate) unsafe fn chain(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    let prev = PREV_ACTION.load(Ordering::Relaxed);
    if prev == libc::SIG_DFL || prev == libc::SIG_IGN {
        // SIGURG's default action is to ignore it.
        return;
    }
    if PREV_FLAGS.load(Ordering::Relaxed) & libc::SA_SIGINFO as usize != 0 {
        type SigInfoHandler = extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void);
        // SAFETY: the previous handler was installed with SA_SIGINFO, so it has this signature; we pass it what the kernel gave us.
        let f = unsafe { std::mem::transmute::<usize, SigInfoHandler>(prev) };
        f(sig, info, ctx);
    } else {
        // SAFETY: installed without SA_SIGINFO: a plain `fn(int)` handler.
        let f = unsafe { std::mem::transmute::<usize, extern "C" fn(c_int)>(prev) };
        f(sig);
    }
}

/// Whether spindle may still send its signal: false once another handler replaced
/// its own (reported once). Checks at most every [`CHECK_EVERY_NS`].
pub(crate) fn may_send() -> bool {
    if REPLACED.load(Ordering::Relaxed) {
        return false;
    }
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let now_ns = u64::try_from(
        EPOCH
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_nanos(),
    )
    .unwrap_or(u64::MAX);
    let last = CHECKED_AT.load(Ordering::Relaxed);
    if last != 0 && now_ns.saturating_sub(last) < CHECK_EVERY_NS {
        return true;
    }
    CHECKED_AT.store(now_ns.max(1), Ordering::Relaxed);
    // SAFETY: reading the current action into a zeroed struct.
    let current = unsafe {
        let mut cur: libc::sigaction = std::mem::zeroed();
        libc::sigaction(crate::preempt::PREEMPT_SIGNAL, std::ptr::null(), &mut cur);
        cur.sa_sigaction
    };
    if current == OURS.load(Ordering::Acquire) {
        return true;
    }
    if !REPLACED.swap(true, Ordering::Relaxed) {
        eprintln!(
            "spindle: the SIGURG handler was replaced after the runtime started: asynchronous \
             preemption is off, preemptible threads now yield only at their runtime calls. \
             Install your handler before the first runtime (spindle then calls it for the \
             SIGURGs that are not its own), or use RuntimeBuilder::preemptible(false)"
        );
    }
    false
}

/// Sends spindle's signal, marked with [`COOKIE`], to thread `tid` of this process.
/// Returns whether it was sent.
pub(crate) fn send(tid: i32, sig: c_int) -> bool {
    /// `siginfo_t` as `rt_tgsigqueueinfo` takes it for `SI_QUEUE` (the kernel's
    /// layout: signo, errno, code, padding, then pid, uid, value).
    #[repr(C)]
    struct QueueInfo {
        signo: c_int,
        errno: c_int,
        code: c_int,
        _pad: c_int,
        pid: libc::pid_t,
        uid: libc::uid_t,
        value: usize,
        _rest: [u8; 128 - 32],
    }
    // SAFETY: getpid and getuid have no preconditions.
    let (pid, uid) = unsafe { (libc::getpid(), libc::getuid()) };
    let info = QueueInfo {
        signo: sig,
        errno: 0,
        code: libc::SI_QUEUE,
        _pad: 0,
        pid,
        uid,
        value: COOKIE,
        _rest: [0; 128 - 32],
    };
    // SAFETY: rt_tgsigqueueinfo to a thread of our own process with a fully initialised info record; at worst the thread is gone (ESRCH).
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_tgsigqueueinfo,
            pid,
            tid,
            sig,
            &info as *const QueueInfo,
        )
    };
    r == 0
}
