//! Thin wrappers over the Linux system calls the runtime makes for itself (futexes, page
//! size, errno); the public, offloaded calls are in `crate::sys`.

use std::io;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

#[cfg_attr(loom, allow(dead_code))]
/// Sleeps while `*word == expected`, at most `timeout` (forever if `None`).
/// Returns on a wake, a timeout, a signal or a changed value; callers re-check.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live, aligned u32 for the duration of the call; `ts_ptr` is null or points at a timespec on this stack. FUTEX_WAIT only reads both.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            ts_ptr,
        )
    };
}

#[cfg_attr(loom, allow(dead_code))]
/// Wakes up to `n` OS threads sleeping in [`futex_wait`] on `word`.
pub(crate) fn futex_wake(word: &AtomicU32, n: i32) {
    // SAFETY: FUTEX_WAKE only uses the address as a key; `word` is live.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            n,
        )
    };
}

/// A new non-blocking eventfd (close-on-exec), counter 0.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn eventfd() -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: eventfd has no memory preconditions.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just made and is owned by nobody else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Adds 1 to eventfd `fd`'s counter: whoever sleeps on it wakes.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn eventfd_kick(fd: i32) {
    let one = 1u64;
    // SAFETY: an eight-byte write from a live value; an eventfd's counter only saturates (EAGAIN), which still leaves it readable.
    unsafe { libc::write(fd, std::ptr::from_ref(&one).cast(), 8) };
}

/// Milliseconds of the coarse monotonic clock (`CLOCK_MONOTONIC_COARSE`: a vDSO
/// read of the last tick, a few nanoseconds).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn coarse_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live timespec the call writes.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    (ts.tv_sec as u64) * 1000 + (ts.tv_nsec as u64) / 1_000_000
}

/// The page size of this machine.
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as usize } else { 4096 }
}

/// `errno` of the last failed call, as an `io::Error`.
pub(crate) fn last_error() -> io::Error {
    io::Error::last_os_error()
}

/// Runs system call `nr` directly and returns the raw kernel result (a negative errno
/// on failure).
///
/// # Safety
///
/// The arguments must be valid for the call (pointers to live buffers of the right
/// size, and so on), as for `libc::syscall`.
#[inline]
pub(crate) unsafe fn raw_syscall(nr: u32, a: [u64; 6]) -> i64 {
    let ret: i64;
    // SAFETY: the caller vouches for the arguments; the kernel clobbers only rax, rcx and r11.
    unsafe {
        std::arch::asm!(
            // enter the kernel: number in rax, arguments in rdi, rsi, rdx, r10, r8,
            // r9; the result (or -errno) comes back in rax, rcx and r11 are clobbered
            "syscall",
            inlateout("rax") u64::from(nr) => ret,
            in("rdi") a[0],
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
            in("r8") a[4],
            in("r9") a[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// `membarrier(2)` commands (`linux/membarrier.h`).
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

/// Whether this process registered for expedited private membarriers: 0 not yet
/// tried, 1 yes, 2 unavailable (an old kernel, or a seccomp profile that refuses it),
/// 3 registering.
static MEMBARRIER: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Registers the process for [`membarrier`], once, on an OS thread of its own: in a
/// process with several threads the kernel waits for a grace period (milliseconds),
/// which no caller should wait for. [`membarrier_ready`] says when it is done.
pub(crate) fn register_membarrier() {
    use std::sync::atomic::Ordering;
    if MEMBARRIER
        .compare_exchange(0, 3, Ordering::Relaxed, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    let register = || {
        // SAFETY: membarrier takes plain integers; an unknown command is an error.
        let r = unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
                0,
                0,
            )
        };
        MEMBARRIER.store(if r == 0 { 1 } else { 2 }, Ordering::Release);
    };
    if std::thread::Builder::new()
        .name("spindle-membarrier".into())
        .spawn(register)
        .is_err()
    {
        MEMBARRIER.store(2, Ordering::Release);
    }
}

/// Whether [`membarrier`] may be used (registered).
pub(crate) fn membarrier_ready() -> bool {
    MEMBARRIER.load(std::sync::atomic::Ordering::Acquire) == 1
}

/// A full memory barrier on every running thread of the process (the heavy side of an
/// asymmetric fence: the other side needs only a compiler fence). Call only after
/// [`membarrier_ready`] returned true.
pub(crate) fn membarrier() {
    // SAFETY: as above; registration succeeded, so the command is allowed.
    unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) };
}
