//! System calls handed to the hypercore (exception-less system calls).
//!
//! On a spindle thread of a worker core, each call here writes its number and
//! arguments to a request slot of its core, publishes it, and sleeps; the hypercore's
//! service loop runs the call and the core wakes the thread when it collects the
//! result. The core runs other threads meanwhile and never enters the kernel for the
//! call. Errors come back as [`std::io::Error`] built from `errno`.
//!
//! The calls run **directly** (an ordinary system call on the calling OS thread) on a
//! plain OS thread, on the hypercore itself, in a runtime built with
//! [`RuntimeBuilder::hypercore(false)`](crate::RuntimeBuilder::hypercore), and after
//! the service loop failed ([`service_stats`] says so). The result is the same either
//! way. A thread that finds all of its core's [`SLOTS`] request slots taken yields
//! until one is free, so under load the calls are still served by the hypercore.
//!
//! The service makes the calls one plain system call each ([`Backend::Epoll`], the
//! default), or in batches through an io_uring ([`Backend::IoUring`],
//! [`RuntimeBuilder::io_uring`](crate::RuntimeBuilder::io_uring)).
//!
//! ```
//! let pid = spindle::run(|| spindle::sys::getpid()); // offloaded to the hypercore
//! assert_eq!(pid, std::process::id());
//! assert_eq!(spindle::sys::getpid(), std::process::id()); // directly, on this OS thread
//! ```
//!
//! [`read`] and [`write()`] never make the hypercore wait on a pipe, a terminal or a
//! socket: they are tried with `RWF_NOWAIT`, and the thread waits for readiness on the
//! runtime's poller (kernels without `RWF_NOWAIT` for a descriptor take the plain
//! call). The other calls are raw: a call that blocks makes the hypercore wait with
//! it, and every other offloaded call waits behind it. [`crate::net`] keeps its
//! descriptors non-blocking and waits for readiness on the poller;
//! [`crate::blocking`] runs anything else that may block (a cold read of a regular
//! file, say).

mod nowait;
mod offload;
mod slow;
pub(crate) mod source;

use std::ffi::CString;
use std::io::{self, SeekFrom};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub use crate::offload::{Backend, SLOTS, ServiceStats, WaitStrategy};
use crate::runtime::Handle;

/// Turns a raw kernel result into a `Result`.
#[inline]
pub(crate) fn cvt(r: i64) -> io::Result<usize> {
    if (-4095..0).contains(&r) {
        Err(io::Error::from_raw_os_error(-r as i32))
    } else {
        Ok(r as usize)
    }
}

/// Calls system call `nr` with `args` (unused ones are ignored by the kernel),
/// offloaded to the hypercore when the caller is a spindle thread on a worker core,
/// directly otherwise. Returns the kernel's non-negative result, or its `errno` as an
/// error.
///
/// # Safety
///
/// The arguments must be valid for the call, as for `libc::syscall`: pointers point
/// at live buffers of the sizes the call expects, descriptors belong to the caller,
/// and the call must not change memory or process state that Rust code relies on
/// (no `munmap` of live data, no `exit`, no `clone`). The call may run on another OS
/// thread (the hypercore's): per-thread calls (`gettid`, signal masks, `prctl` on the
/// thread) act on that thread.
///
/// Calls that exist to wait — sleeps, `wait4`, `fsync`, `open`, `flock`, a futex wait,
/// `poll`-like waits — run on the runtime's blocking pool instead, so they never hold
/// the hypercore (the caller sleeps until they return, even if it is being unwound).
/// A `read` or `write` passed here runs as given: use [`read()`] and [`write()`] for a
/// descriptor that may not be ready.
///
/// # Examples
///
/// ```
/// // SAFETY: getpid takes no arguments.
/// let pid = unsafe { spindle::sys::syscall(libc::SYS_getpid, [0; 6]) }.unwrap();
/// assert_eq!(pid as u32, std::process::id());
/// ```
pub unsafe fn syscall(nr: libc::c_long, args: [usize; 6]) -> io::Result<usize> {
    let nr = u32::try_from(nr).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("spindle::sys::syscall: {nr} is not a system call number (use libc::SYS_*)"),
        )
    })?;
    let args = args.map(|a| a as u64);
    if slow::waits(nr.into()) {
        // SAFETY: as below; the caller waits for the pool thread even while unwinding (`slow::call`), so what the arguments point at outlives the call.
        return unsafe { slow::call_raw(nr.into(), args) };
    }
    // SAFETY: the caller vouches for the arguments (this function's contract).
    cvt(unsafe { offload::syscall(nr, args) })
}

/// Runs `nr` through the service core's io_uring, where the caller has one
/// (`offload::in_ring`): a socket call then waits in the kernel until it can be made
/// (readiness and the call in one step), until `deadline` (a `TimedOut` error after
/// it, unless the call completed first). `None`: no ring for this caller; take the
/// plain path.
///
/// # Safety
///
/// As for [`syscall`], and the call may wait even on a non-blocking descriptor.
pub(crate) unsafe fn ring_call(
    nr: libc::c_long,
    args: [u64; 6],
    deadline: Option<std::time::Instant>,
) -> Option<io::Result<usize>> {
    // SAFETY: the caller vouches for the arguments; they stay valid until `in_ring` returns, which is after the kernel is done with them.
    let r = unsafe { offload::in_ring(nr as u32, args, deadline) }?;
    if r == -i64::from(libc::ETIMEDOUT) {
        return Some(Err(crate::io::timed_out()));
    }
    Some(cvt(r))
}

/// Raw call with `u64` arguments (internal shorthand).
///
/// # Safety
///
/// As for [`syscall`].
#[inline]
pub(crate) unsafe fn call(nr: libc::c_long, args: [u64; 6]) -> io::Result<usize> {
    // SAFETY: the caller vouches for the arguments, as for `syscall`.
    cvt(unsafe { offload::syscall(nr as u32, args) })
}

/// The process id (`getpid`): the smallest call, used to measure the round trip.
pub fn getpid() -> u32 {
    // SAFETY: getpid takes no arguments.
    unsafe { call(libc::SYS_getpid, [0; 6]) }.map_or(0, |p| p as u32)
}

/// `read(2)` into `buf`; returns the bytes read.
///
/// On a pipe, a terminal or a socket that has nothing to read, the thread waits for
/// readiness on the runtime's poller: the hypercore never waits with it (see the
/// module docs). A descriptor made non-blocking returns `WouldBlock` as `read(2)`
/// does.
pub fn read(fd: impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    nowait::read(fd.as_fd().as_raw_fd(), buf)
}

/// `write(2)` of `buf`; returns the bytes written.
///
/// On a full pipe, a terminal or a socket, the thread waits for readiness on the
/// runtime's poller, as [`read`] does.
pub fn write(fd: impl AsFd, buf: &[u8]) -> io::Result<usize> {
    nowait::write(fd.as_fd().as_raw_fd(), buf)
}

/// `pread64(2)`: reads at `offset` without moving the file position.
///
/// Tried first with `RWF_NOWAIT` (served at once from the page cache); a read that
/// would wait for the disk runs on the blocking pool, not on the service core.
pub fn pread(fd: impl AsFd, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    nowait::pread(fd.as_fd().as_raw_fd(), buf, offset)
}

/// `pwrite64(2)`: writes at `offset` without moving the file position.
///
/// Tried first with `RWF_NOWAIT`; a write that would wait runs on the blocking pool,
/// not on the service core.
pub fn pwrite(fd: impl AsFd, buf: &[u8], offset: u64) -> io::Result<usize> {
    nowait::pwrite(fd.as_fd().as_raw_fd(), buf, offset)
}

/// `lseek(2)`; returns the new position.
pub fn lseek(fd: impl AsFd, pos: SeekFrom) -> io::Result<u64> {
    let fd = fd.as_fd().as_raw_fd();
    let (off, whence) = match pos {
        SeekFrom::Start(o) => (o as i64, libc::SEEK_SET),
        SeekFrom::End(o) => (o, libc::SEEK_END),
        SeekFrom::Current(o) => (o, libc::SEEK_CUR),
    };
    // SAFETY: lseek takes no pointers.
    unsafe {
        call(
            libc::SYS_lseek,
            [fd as u64, off as u64, whence as u64, 0, 0, 0],
        )
    }
    .map(|p| p as u64)
}

/// `fsync(2)`, on the blocking pool (it waits for the disk): the service core never
/// holds it.
pub fn fsync(fd: impl AsFd) -> io::Result<()> {
    let fd = fd.as_fd().as_raw_fd();
    slow::call(libc::SYS_fsync, [fd as u64, 0, 0, 0, 0, 0]).map(drop)
}

/// `ftruncate(2)`, on the blocking pool (it may wait for the filesystem).
pub fn ftruncate(fd: impl AsFd, len: u64) -> io::Result<()> {
    let fd = fd.as_fd().as_raw_fd();
    slow::call(libc::SYS_ftruncate, [fd as u64, len, 0, 0, 0, 0]).map(drop)
}

/// `fstat(2)`.
pub fn fstat(fd: impl AsFd) -> io::Result<libc::stat> {
    let fd = fd.as_fd().as_raw_fd();
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is live and writable while we wait for the result.
    unsafe { call(libc::SYS_fstat, [fd as u64, &raw mut st as u64, 0, 0, 0, 0]) }?;
    Ok(st)
}

/// `openat(AT_FDCWD, path, flags | O_CLOEXEC, mode)`, on the blocking pool (a path
/// lookup may wait for a disk or a network filesystem); returns the new descriptor.
///
/// # Errors
///
/// `InvalidInput` if `path` contains a NUL byte; otherwise the kernel's error.
pub fn open(path: &Path, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("spindle::sys::open: the path {path:?} contains a NUL byte: remove it"),
        )
    })?;
    let flags = (flags | libc::O_CLOEXEC) as u64;
    let fd = slow::open(c, flags, mode)?;
    // SAFETY: the kernel just gave us this descriptor; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `close(2)` of a descriptor this call takes over.
pub fn close(fd: OwnedFd) -> io::Result<()> {
    let raw = std::os::fd::IntoRawFd::into_raw_fd(fd);
    // SAFETY: we own `raw` (taken from the OwnedFd) and close it once.
    unsafe { call(libc::SYS_close, [raw as u64, 0, 0, 0, 0, 0]) }.map(drop)
}

/// How the service loop of this machine waits when idle: `umonitor/umwait` (Intel
/// WAITPKG) or `monitorx/mwaitx` (AMD) when CPUID reports them, else a futex sleep.
///
/// ```
/// let s = spindle::sys::wait_strategy();
/// assert!(["umwait", "mwaitx", "futex"].contains(&s.name()));
/// ```
pub fn wait_strategy() -> WaitStrategy {
    crate::offload::wait::detect()
}

/// The system-call service of `handle`'s runtime: calls served, calls run directly,
/// whether it failed, how it waits. `None` if the runtime has no hypercore (every call
/// runs directly there).
pub fn service_stats(handle: &Handle) -> Option<ServiceStats> {
    let shared = handle.shared();
    shared.has_service().then(|| shared.offload.stats())
}

/// The figures of each service core of `handle`'s runtime, the hypercore first
/// (empty without a hypercore). Their sum is [`service_stats`].
///
/// # Examples
///
/// ```
/// let rt = spindle::Runtime::builder().cores(2).service_cores(2).build().unwrap();
/// let each = spindle::sys::service_core_stats(rt.handle());
/// assert_eq!(each.len(), 2);
/// ```
pub fn service_core_stats(handle: &Handle) -> Vec<ServiceStats> {
    let shared = handle.shared();
    (0..shared.services)
        .map(|k| shared.offload.server_stats(k))
        .collect()
}

/// Test hook: stops (or, with `panic`, makes panic) the service loop of `handle`'s
/// runtime at its next pass. Pending and later calls then run directly.
#[doc(hidden)]
pub fn __stop_service(handle: &Handle, panic: bool) {
    let shared = handle.shared();
    shared.offload.request_stop(panic);
    if let Some(h) = shared.hyper {
        for k in 0..shared.services {
            shared.cores[h + k].nudge();
        }
    }
}
