//! The readiness side of a spindle descriptor: an operation retried until it does not
//! fail with `EAGAIN`, waiting in between for the runtime's poller (`crate::io`), or
//! with `poll(2)` on an OS thread.

use std::io;
use std::os::fd::RawFd;
use std::sync::OnceLock;
use std::time::Instant;

use crate::io::{Dir, Registration, timed_out};
use crate::shared::Shared;

/// The readiness side of a spindle descriptor: registered lazily, at its first
/// `EAGAIN` on a spindle thread.
#[derive(Default)]
pub(crate) struct Source {
    reg: OnceLock<Registration>,
}

impl Source {
    /// Runs `op` until it does not fail with `EAGAIN`, waiting for `dir` readiness in
    /// between; `TimedOut` after `deadline`.
    pub(crate) fn io<T>(
        &self,
        fd: RawFd,
        dir: Dir,
        deadline: Option<Instant>,
        mut op: impl FnMut() -> io::Result<T>,
    ) -> io::Result<T> {
        loop {
            let seq = self.reg.get().map(|r| r.seq(dir));
            match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return r,
            }
            if let Some(d) = deadline
                && Instant::now() >= d
            {
                return Err(timed_out());
            }
            let Some(shared) = Shared::current() else {
                poll_fd(fd, dir, deadline)?;
                continue;
            };
            match (seq, self.reg.get()) {
                (Some(seq), Some(reg)) => reg.wait(dir, seq, deadline)?,
                // Registered now: the registration reports the current readiness,
                // so retry before waiting.
                _ => {
                    if self.reg.get().is_none() {
                        let _ = self.reg.set(shared.poller.register(fd)?);
                    }
                }
            }
        }
    }
}

/// Waits with `poll(2)` (an OS thread).
fn poll_fd(fd: RawFd, dir: Dir, deadline: Option<Instant>) -> io::Result<()> {
    let events = match dir {
        Dir::Read => libc::POLLIN,
        Dir::Write => libc::POLLOUT,
    };
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let timeout = deadline.map_or(-1, |d| {
        let left = d.saturating_duration_since(Instant::now());
        left.as_millis().clamp(1, i32::MAX as u128) as i32
    });
    // SAFETY: `p` is a valid pollfd on this stack.
    let rc = unsafe { libc::poll(&mut p, 1, timeout) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}
