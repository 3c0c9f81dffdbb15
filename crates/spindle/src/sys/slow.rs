//! The calls that may wait on a disk or a slow filesystem — a regular-file read or
//! write that misses the page cache, `fsync`, `ftruncate`, `open` — and the raw calls
//! that exist to wait (sleeps, `wait4`, locks, readiness waits: [`waits`]) run on the
//! runtime's blocking pool while the caller sleeps, never on the service core, where
//! one of them would hold every other offloaded call.
//!
//! The pool thread works on data of its own (a buffer it fills or was given a copy
//! of, the path it was given; a raw call's arguments are the caller's), and the caller
//! waits for it even if a shutdown unwinds the caller meanwhile
//! (`blocking_to_the_end`): so a call never outlives what the caller lent it, nor the
//! caller's hold on the descriptor. On an OS thread outside a runtime the call runs
//! where it is.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;

use super::cvt;
use crate::blocking::blocking_to_the_end;
use crate::io::Dir;
use crate::os::raw_syscall;

/// The plain call of a read or write (`dir`) at the current position (`offset`
/// `None`: `read`, `write`) or at an offset (`pread64`, `pwrite64`): its number and
/// its offset argument.
pub(super) fn plain(dir: Dir, offset: Option<u64>) -> (libc::c_long, u64) {
    match (dir, offset) {
        (Dir::Read, Some(o)) => (libc::SYS_pread64, o),
        (Dir::Read, None) => (libc::SYS_read, 0),
        (Dir::Write, Some(o)) => (libc::SYS_pwrite64, o),
        (Dir::Write, None) => (libc::SYS_write, 0),
    }
}

/// Runs system call `nr` with `args`, which hold no pointer, on the pool.
pub(super) fn call(nr: libc::c_long, args: [u64; 6]) -> io::Result<usize> {
    // SAFETY: the arguments hold no pointer (the caller's contract), so nothing they name can go away during the call.
    unsafe { call_raw(nr, args) }
}

/// Runs system call `nr` with `args` on the pool, where they may point at the
/// caller's memory: the caller waits for the call even while unwinding.
///
/// # Safety
///
/// As for `sys::syscall`.
pub(super) unsafe fn call_raw(nr: libc::c_long, args: [u64; 6]) -> io::Result<usize> {
    // SAFETY: the caller vouches for the arguments, and `blocking_to_the_end` keeps it (and what it lent the call) in place until the call returned.
    cvt(blocking_to_the_end(move || unsafe {
        raw_syscall(nr as u32, args)
    }))
}

/// Whether system call `nr` exists to wait (a sleep, a child, a lock, a disk, a
/// readiness wait): one a raw `sys::syscall` runs on the pool, not on the hypercore.
pub(super) fn waits(nr: libc::c_long) -> bool {
    matches!(
        nr,
        libc::SYS_nanosleep
            | libc::SYS_clock_nanosleep
            | libc::SYS_pause
            | libc::SYS_wait4
            | libc::SYS_waitid
            | libc::SYS_fsync
            | libc::SYS_fdatasync
            | libc::SYS_sync
            | libc::SYS_syncfs
            | libc::SYS_sync_file_range
            | libc::SYS_open
            | libc::SYS_openat
            | libc::SYS_openat2
            | libc::SYS_creat
            | libc::SYS_truncate
            | libc::SYS_ftruncate
            | libc::SYS_fallocate
            | libc::SYS_flock
            | libc::SYS_futex
            | libc::SYS_poll
            | libc::SYS_ppoll
            | libc::SYS_select
            | libc::SYS_pselect6
            | libc::SYS_epoll_wait
            | libc::SYS_epoll_pwait
            | libc::SYS_msgrcv
            | libc::SYS_semop
            | libc::SYS_semtimedop
            | libc::SYS_rt_sigtimedwait
            | libc::SYS_rt_sigsuspend
    )
}

/// `read(2)` (`offset` `None`) or `pread64(2)` into `buf`, on the pool.
pub(super) fn read(fd: RawFd, buf: &mut [u8], offset: Option<u64>) -> io::Result<usize> {
    let len = buf.len();
    let (r, data) = blocking_to_the_end(move || {
        let mut data = vec![0u8; len];
        let (nr, off) = plain(Dir::Read, offset);
        // SAFETY: `data` is this closure's own, writable for `len` bytes until the call returns; `fd` is held open by the caller, which waits for us.
        let r = unsafe {
            raw_syscall(
                nr as u32,
                [fd as u64, data.as_mut_ptr() as u64, len as u64, off, 0, 0],
            )
        };
        (r, data)
    });
    let n = cvt(r)?;
    buf[..n].copy_from_slice(&data[..n]);
    Ok(n)
}

/// `write(2)` (`offset` `None`) or `pwrite64(2)` of a copy of `buf`, on the pool.
pub(super) fn write(fd: RawFd, buf: &[u8], offset: Option<u64>) -> io::Result<usize> {
    let data = buf.to_vec();
    cvt(blocking_to_the_end(move || {
        let (nr, off) = plain(Dir::Write, offset);
        // SAFETY: `data` is this closure's own, readable for its length until the call returns; `fd` is held open by the caller, which waits for us.
        unsafe {
            raw_syscall(
                nr as u32,
                [
                    fd as u64,
                    data.as_ptr() as u64,
                    data.len() as u64,
                    off,
                    0,
                    0,
                ],
            )
        }
    }))
}

/// `openat(AT_FDCWD, path, flags, mode)`, on the pool; returns the new descriptor.
pub(super) fn open(path: CString, flags: u64, mode: u32) -> io::Result<usize> {
    cvt(blocking_to_the_end(move || {
        // SAFETY: `path` is this closure's own NUL-terminated string until the call returns.
        unsafe {
            raw_syscall(
                libc::SYS_openat as u32,
                [
                    libc::AT_FDCWD as u64,
                    path.as_ptr() as u64,
                    flags,
                    u64::from(mode),
                    0,
                    0,
                ],
            )
        }
    }))
}
