//! The readiness poller: how a spindle thread waits for a non-blocking file
//! descriptor without blocking any core.
//!
//! Every descriptor of [`crate::net`] is non-blocking. A call that fails with `EAGAIN`
//! registers the descriptor once with the runtime's epoll set (edge-triggered, for
//! reading and writing, keyed by a token), then waits on its [`IoState`]:
//!
//! - each direction has a sequence number and a list of waiters under a small lock;
//!   the caller reads the sequence number *before* its attempt; on `EAGAIN` it locks,
//!   and if the number has not moved it queues itself and sleeps (`block_internal`);
//! - the poller (a maintenance thread, on the hypercore when there is one) reads
//!   events with a zero-timeout `epoll_wait`, and for each bumps the sequence numbers
//!   of the directions that became ready and wakes their waiters.
//!
//! An edge that arrives between the attempt and the lock moved the number, so the
//! caller retries instead of sleeping: no readiness is lost. The poller never blocks
//! its core: with events it yields and polls again; without, it backs off with
//! spindle sleeps (20 µs doubling to [`MAX_BACKOFF`]); with nobody waiting it sleeps
//! until a waiter arrives. On an OS thread (no runtime), the wait is a `poll(2)`.

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::sched::wait::{Waiter, block_internal};

/// Longest pause of an idle poller between two looks at the epoll set while threads
/// wait on it.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_micros(200);

/// Reading or writing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dir {
    Read = 0,
    Write = 1,
}

#[derive(Default)]
struct Ready {
    seq: [u64; 2],
    waiters: [Vec<Waiter>; 2],
}

/// The readiness of one registered descriptor.
#[derive(Default)]
pub(crate) struct IoState {
    ready: Mutex<Ready>,
}

impl IoState {
    fn seq(&self, dir: Dir) -> u64 {
        self.ready.lock().unwrap_or_else(|e| e.into_inner()).seq[dir as usize]
    }
}

/// The epoll set and the registered descriptors of one runtime.
pub(crate) struct PollerInner {
    epfd: RawFd,
    map: Mutex<HashMap<u64, Arc<IoState>>>,
    next_token: AtomicU64,
    /// Threads blocked on a readiness wait.
    waiting: AtomicUsize,
    /// The poller thread sleeps until a waiter arrives.
    parked: AtomicBool,
    poller: Mutex<Option<Waiter>>,
}

impl Drop for PollerInner {
    fn drop(&mut self) {
        // SAFETY: we own the epoll descriptor.
        unsafe { libc::close(self.epfd) };
    }
}

/// A runtime's poller, created at its first registration.
#[derive(Default)]
pub(crate) struct Poller {
    inner: OnceLock<Arc<PollerInner>>,
}

impl Poller {
    pub(crate) fn new() -> Poller {
        Poller::default()
    }

    fn get(&self) -> io::Result<&Arc<PollerInner>> {
        if let Some(p) = self.inner.get() {
            return Ok(p);
        }
        // SAFETY: epoll_create1 has no memory preconditions.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epfd < 0 {
            return Err(io::Error::last_os_error());
        }
        let p = Arc::new(PollerInner {
            epfd,
            map: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
            waiting: AtomicUsize::new(0),
            parked: AtomicBool::new(false),
            poller: Mutex::new(None),
        });
        // A racing creator's set is dropped (and closed) here if it lost.
        let _ = self.inner.set(p);
        Ok(self.inner.get().expect("just set"))
    }

    /// Registers `fd` (edge-triggered, both directions) with the runtime's epoll set,
    /// created at the first registration.
    pub(crate) fn register(&self, fd: RawFd) -> io::Result<Registration> {
        let poller = self.get()?.clone();
        let token = poller.next_token.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(IoState::default());
        poller
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token, state.clone());
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: token,
        };
        // SAFETY: `ev` is a valid event on this stack; the kernel copies it.
        let rc = unsafe { libc::epoll_ctl(poller.epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            poller
                .map
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&token);
            return Err(e);
        }
        Ok(Registration {
            poller,
            token,
            fd,
            state,
        })
    }
}

/// A descriptor's registration with a runtime's poller; deregisters on drop.
pub(crate) struct Registration {
    poller: Arc<PollerInner>,
    token: u64,
    fd: RawFd,
    state: Arc<IoState>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: removing a descriptor we added; a null event is allowed for DEL.
        unsafe {
            libc::epoll_ctl(
                self.poller.epfd,
                libc::EPOLL_CTL_DEL,
                self.fd,
                std::ptr::null_mut(),
            )
        };
        self.poller
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.token);
    }
}

impl Registration {
    /// The sequence number of `dir`: it moves at every readiness edge.
    pub(crate) fn seq(&self, dir: Dir) -> u64 {
        self.state.seq(dir)
    }

    /// Sleeps until `dir`'s sequence number moves past `seq`, a spurious wake, or
    /// `deadline`.
    pub(crate) fn wait(&self, dir: Dir, seq: u64, deadline: Option<Instant>) -> io::Result<()> {
        let reg = self;
        let me = Waiter::current().expect("a spindle thread");
        {
            let mut r = reg.state.ready.lock().unwrap_or_else(|e| e.into_inner());
            if r.seq[dir as usize] != seq {
                return Ok(());
            }
            r.waiters[dir as usize].push(me);
        }
        let p = &reg.poller;
        // SeqCst (both sides): Dekker with the poller's `parked` / `waiting` checks.
        p.waiting.fetch_add(1, Ordering::SeqCst);
        if p.parked.swap(false, Ordering::SeqCst)
            && let Some(w) = *p.poller.lock().unwrap_or_else(|e| e.into_inner())
        {
            w.wake();
        }
        /// Leaves the wait (count and waiter list) however `block_internal` ends: by a
        /// wake, a timeout, or the unwind of a thread a shutdown abandons.
        struct Leave<'a> {
            reg: &'a Registration,
            dir: Dir,
            me: Waiter,
        }
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.reg.poller.waiting.fetch_sub(1, Ordering::SeqCst);
                let mut r = self
                    .reg
                    .state
                    .ready
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                r.waiters[self.dir as usize].retain(|w| *w != self.me);
            }
        }
        let leave = Leave { reg, dir, me };
        block_internal(deadline);
        drop(leave);
        let r = reg.state.ready.lock().unwrap_or_else(|e| e.into_inner());
        if r.seq[dir as usize] == seq && deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(timed_out());
        }
        Ok(())
    }
}

pub(crate) fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "spindle: the operation timed out")
}

/// What the poller's thread needs of its runtime.
pub(crate) trait PollerHost: Send + Sync + 'static {
    /// The runtime's poller.
    fn poller(&self) -> &Poller;
    /// The runtime stops its maintenance threads.
    fn stopping(&self) -> bool;
}

/// The poller's maintenance thread: runs until the runtime shuts down.
pub(crate) fn poller_main<S: PollerHost>(weak: Weak<S>) {
    let me = Waiter::current().expect("the poller runs as a spindle thread");
    let mut events: Vec<libc::epoll_event> = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut backoff = Duration::ZERO;
    loop {
        let p = {
            let Some(shared) = weak.upgrade() else { return };
            if shared.stopping() {
                return;
            }
            match shared.poller().get() {
                Ok(p) => p.clone(),
                Err(_) => return,
            }
        };
        // SAFETY: `events` has room for its length; a zero timeout never blocks.
        let n = unsafe { libc::epoll_wait(p.epfd, events.as_mut_ptr(), events.len() as i32, 0) };
        if n > 0 {
            dispatch(&p, &events[..n as usize]);
            backoff = Duration::ZERO;
            crate::sched::wait::yield_now();
            continue;
        }
        if p.waiting.load(Ordering::SeqCst) == 0 {
            *p.poller.lock().unwrap_or_else(|e| e.into_inner()) = Some(me);
            p.parked.store(true, Ordering::SeqCst);
            if p.waiting.load(Ordering::SeqCst) == 0 {
                // Woken by the first waiter; the timeout lets it see a shutdown.
                block_internal(Some(Instant::now() + Duration::from_millis(100)));
            }
            p.parked.store(false, Ordering::SeqCst);
            backoff = Duration::ZERO;
            continue;
        }
        if backoff.is_zero() {
            backoff = Duration::from_micros(20);
            crate::sched::wait::yield_now();
        } else {
            crate::sched::wait::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

fn dispatch(p: &PollerInner, events: &[libc::epoll_event]) {
    let mut wake = Vec::new();
    for ev in events {
        let (bits, token) = (ev.events, ev.u64);
        let Some(state) = p
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&token)
            .cloned()
        else {
            continue;
        };
        let err = (libc::EPOLLERR | libc::EPOLLHUP) as u32;
        let mut r = state.ready.lock().unwrap_or_else(|e| e.into_inner());
        if bits & (libc::EPOLLIN as u32 | libc::EPOLLRDHUP as u32 | err) != 0 {
            r.seq[0] += 1;
            wake.append(&mut r.waiters[0]);
        }
        if bits & (libc::EPOLLOUT as u32 | err) != 0 {
            r.seq[1] += 1;
            wake.append(&mut r.waiters[1]);
        }
    }
    for w in wake {
        w.wake();
    }
}
