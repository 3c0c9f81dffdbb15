//! `read`, `write`, `pread` and `pwrite` that do not make the hypercore wait on a
//! pipe, a terminal, a socket or a disk.
//!
//! On a spindle thread the call is first tried with `RWF_NOWAIT` (`preadv2` /
//! `pwritev2` at the current file position). The kernel then fails with `EAGAIN`
//! where a plain call would block. The thread waits for readiness on the runtime's
//! poller (`sys::source`, parked, its core free) and tries again. Edge cases:
//!
//! - a descriptor the caller made non-blocking gets its `EAGAIN` back, as before;
//! - a regular file's (or block device's) `EAGAIN` means "not in the page cache", and
//!   a poller calls a regular file always ready: the plain call then runs on the
//!   blocking pool (`sys::slow`), so the disk holds a pool thread, not the hypercore;
//!   so does the plain call of a regular file whose filesystem has no `RWF_NOWAIT`;
//! - other descriptors without `RWF_NOWAIT` (`EOPNOTSUPP`, `EINVAL`), and descriptors
//!   the poller refuses (`EPERM`) or already holds (`EEXIST`), take the plain call, as
//!   before.
//!
//! On an OS thread the plain call runs directly: it blocks only that thread.

use std::io;
use std::os::fd::RawFd;

use super::call;
use super::source::Source;
use crate::io::Dir;
use crate::shared::Shared;

/// `read(2)` into `buf` without holding the hypercore on a descriptor that is not
/// ready.
pub(super) fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    read_at(fd, buf, None)
}

/// `pread64(2)` into `buf` at `offset`, without holding the hypercore on a disk.
pub(super) fn pread(fd: RawFd, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    read_at(fd, buf, Some(offset))
}

/// `write(2)` of `buf` without holding the hypercore on a descriptor that is not
/// ready.
pub(super) fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    write_at(fd, buf, None)
}

/// `pwrite64(2)` of `buf` at `offset`, without holding the hypercore on a disk.
pub(super) fn pwrite(fd: RawFd, buf: &[u8], offset: u64) -> io::Result<usize> {
    write_at(fd, buf, Some(offset))
}

/// A read at the current position (`None`) or at an offset.
fn read_at(fd: RawFd, buf: &mut [u8], offset: Option<u64>) -> io::Result<usize> {
    let (ptr, len) = (buf.as_mut_ptr(), buf.len());
    let (nr, off) = super::slow::plain(Dir::Read, offset);
    // SAFETY: `buf` is live and writable for its length during each call.
    let plain = || unsafe { call(nr, [fd as u64, ptr as u64, len as u64, off, 0, 0]) };
    // SAFETY: as above; the iovec is read by the kernel during the call only.
    let nowait = || unsafe { vectored(libc::SYS_preadv2, fd, ptr, len, offset) };
    match without_waiting(fd, Dir::Read, nowait, plain) {
        Waited::Done(r) => r,
        Waited::Disk => super::slow::read(fd, buf, offset),
    }
}

/// A write at the current position (`None`) or at an offset.
fn write_at(fd: RawFd, buf: &[u8], offset: Option<u64>) -> io::Result<usize> {
    let (ptr, len) = (buf.as_ptr().cast_mut(), buf.len());
    let (nr, off) = super::slow::plain(Dir::Write, offset);
    // SAFETY: `buf` is live for its length during each call; the kernel only reads it.
    let plain = || unsafe { call(nr, [fd as u64, ptr as u64, len as u64, off, 0, 0]) };
    // SAFETY: as above.
    let nowait = || unsafe { vectored(libc::SYS_pwritev2, fd, ptr, len, offset) };
    match without_waiting(fd, Dir::Write, nowait, plain) {
        Waited::Done(r) => r,
        Waited::Disk => super::slow::write(fd, buf, offset),
    }
}

/// `preadv2` or `pwritev2` (`nr`) of one buffer at `offset` (`None`: the current
/// position), with `RWF_NOWAIT`.
///
/// # Safety
///
/// `ptr` is valid for `len` bytes (writable for a read) during the call.
unsafe fn vectored(
    nr: libc::c_long,
    fd: RawFd,
    ptr: *mut u8,
    len: usize,
    offset: Option<u64>,
) -> io::Result<usize> {
    let iov = libc::iovec {
        iov_base: ptr.cast(),
        iov_len: len,
    };
    // Offset -1: the current position, as read and write use (the high half is
    // ignored on 64-bit kernels).
    let pos = offset.unwrap_or(-1i64 as u64);
    // SAFETY: `iov` lives on this stack until the call returns; the buffer per the contract.
    unsafe {
        call(
            nr,
            [
                fd as u64,
                std::ptr::from_ref(&iov) as u64,
                1,
                pos,
                0,
                libc::RWF_NOWAIT as u64,
            ],
        )
    }
}

/// How [`without_waiting`] ended.
enum Waited {
    /// The call's outcome.
    Done(io::Result<usize>),
    /// A regular file that would wait for the disk: the caller runs the call on the
    /// blocking pool.
    Disk,
}

/// Runs `nowait` until it does not fail with `EAGAIN`, waiting for `dir` readiness on
/// the poller in between; `plain` where waiting is not possible or not wanted, and
/// `Disk` for a regular file (see the module docs).
fn without_waiting(
    fd: RawFd,
    dir: Dir,
    mut nowait: impl FnMut() -> io::Result<usize>,
    mut plain: impl FnMut() -> io::Result<usize>,
) -> Waited {
    if Shared::current().is_none() {
        return Waited::Done(plain());
    }
    let unsupported = match nowait() {
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => false,
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL)) => true,
        r => return Waited::Done(r),
    };
    match status_flags(fd) {
        Ok(Flags::RegularFile) => return Waited::Disk,
        _ if unsupported => return Waited::Done(plain()),
        Ok(Flags::NonBlocking) => {
            return Waited::Done(Err(io::Error::from_raw_os_error(libc::EAGAIN)));
        }
        Err(_) => return Waited::Done(plain()),
        Ok(Flags::Pollable) => {}
    }
    // Registered for this call only; the registration goes with `source`.
    let source = Source::default();
    Waited::Done(match source.io(fd, dir, None, nowait) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EEXIST)) => plain(),
        r => r,
    })
}

/// What a descriptor that answered `EAGAIN` is.
enum Flags {
    /// Made non-blocking by its owner.
    NonBlocking,
    /// A regular file (or a block device): `EAGAIN` meant "not cached".
    RegularFile,
    /// Anything else: a pipe, a terminal, a socket, an eventfd, ...
    Pollable,
}

fn status_flags(fd: RawFd) -> io::Result<Flags> {
    // SAFETY: F_GETFL takes no pointer.
    let fl = unsafe {
        call(
            libc::SYS_fcntl,
            [fd as u64, libc::F_GETFL as u64, 0, 0, 0, 0],
        )
    }?;
    if fl as i32 & libc::O_NONBLOCK != 0 {
        return Ok(Flags::NonBlocking);
    }
    // SAFETY: all-zero is a valid `stat`.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` lives on this stack until the call returns.
    unsafe {
        call(
            libc::SYS_fstat,
            [fd as u64, std::ptr::from_mut(&mut st) as u64, 0, 0, 0, 0],
        )
    }?;
    Ok(match st.st_mode & libc::S_IFMT {
        libc::S_IFREG | libc::S_IFBLK => Flags::RegularFile,
        _ => Flags::Pollable,
    })
}
