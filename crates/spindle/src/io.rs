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
//! - whoever watches the set reads its events and, for each, bumps the sequence
//!   numbers of the directions that became ready and wakes their waiters
//!   ([`Poller::dispatch`]). That is the service core (`offload`): at its passes
//!   while threads wait, and in its idle sleep, which is a wait on this set (or on
//!   its io_uring, which polls this set). A runtime without a service core has a
//!   poller OS thread of its own that sleeps in `epoll_wait`
//!   ([`Poller::start_thread`]). Nobody polls the set on a timer.
//!
//! An edge that arrives between the attempt and the lock moved the number, so the
//! caller retries instead of sleeping: no readiness is lost. A sleeper on the set is
//! woken by readiness itself, or by a write to the set's kick eventfd (the service
//! core's doorbell). On an OS thread (no runtime), the wait is a `poll(2)`.

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::sched::wait::{Waiter, block_internal};

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
    /// The eventfd that wakes whoever sleeps on this set: the service core's
    /// doorbell, or the poller OS thread's stop.
    kick: RawFd,
    /// Set when the runtime stops: the poller OS thread ends.
    stop: AtomicBool,
}

impl Drop for PollerInner {
    fn drop(&mut self) {
        // SAFETY: we own both descriptors.
        unsafe {
            libc::close(self.epfd);
            libc::close(self.kick);
        }
    }
}

/// A runtime's poller: its epoll set, created with the runtime.
pub(crate) struct Poller {
    inner: Arc<PollerInner>,
}

/// The token of the kick eventfd in the epoll set (registrations count from 1).
const KICK: u64 = 0;

impl Poller {
    /// A new epoll set and its kick eventfd.
    pub(crate) fn new() -> io::Result<Poller> {
        // SAFETY: epoll_create1 has no memory preconditions.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epfd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: eventfd has no memory preconditions.
        let kick = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if kick < 0 {
            let e = io::Error::last_os_error();
            // SAFETY: we own the descriptor just made.
            unsafe { libc::close(epfd) };
            return Err(e);
        }
        Ok(Poller {
            inner: Arc::new(PollerInner {
                epfd,
                map: Mutex::new(HashMap::new()),
                next_token: AtomicU64::new(KICK + 1),
                waiting: AtomicUsize::new(0),
                kick,
                stop: AtomicBool::new(false),
            }),
        })
    }

    fn get(&self) -> io::Result<&Arc<PollerInner>> {
        Ok(&self.inner)
    }

    /// The epoll set's descriptor (the service's ring watches it).
    pub(crate) fn epfd(&self) -> RawFd {
        self.inner.epfd
    }

    /// The kick eventfd: a write to it wakes whoever sleeps on this set.
    pub(crate) fn kick_fd(&self) -> RawFd {
        self.inner.kick
    }

    /// Threads waiting for readiness now.
    pub(crate) fn waiting(&self) -> usize {
        self.inner.waiting.load(Ordering::SeqCst)
    }

    /// Adds the kick eventfd to the epoll set, so that a sleep in [`Poller::dispatch`]
    /// ends at a kick (the service without a ring, the poller OS thread).
    pub(crate) fn watch_kick(&self) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: KICK,
        };
        // SAFETY: `ev` is a valid event on this stack; the kernel copies it.
        let rc = unsafe {
            libc::epoll_ctl(
                self.inner.epfd,
                libc::EPOLL_CTL_ADD,
                self.inner.kick,
                &mut ev,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout_ms` (0: not at all, -1: for ever) for events of the
    /// epoll set and wakes the threads whose descriptors became ready. Returns the
    /// events handled; a kick is drained and counted.
    pub(crate) fn dispatch(&self, timeout_ms: i32) -> usize {
        let p = &self.inner;
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
        let mut total = 0;
        let mut timeout = timeout_ms;
        loop {
            // SAFETY: `events` has room for its length.
            let n = unsafe {
                libc::epoll_wait(p.epfd, events.as_mut_ptr(), events.len() as i32, timeout)
            };
            if n <= 0 {
                return total;
            }
            let n = n as usize;
            total += n;
            wake_ready(p, &events[..n]);
            if n < events.len() {
                return total;
            }
            timeout = 0;
        }
    }

    /// Runs a poller OS thread for a runtime without a service core: it sleeps in
    /// `epoll_wait` and wakes the ready threads until [`Poller::stop`].
    pub(crate) fn start_thread(&self) -> io::Result<()> {
        self.watch_kick()?;
        let me = Poller {
            inner: self.inner.clone(),
        };
        std::thread::Builder::new()
            .name("spindle-poller".into())
            .spawn(move || {
                while !me.inner.stop.load(Ordering::Acquire) {
                    me.dispatch(-1);
                }
            })?;
        Ok(())
    }

    /// Ends the poller OS thread, if there is one.
    pub(crate) fn stop(&self) {
        self.inner.stop.store(true, Ordering::Release);
        crate::os::eventfd_kick(self.inner.kick);
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
        // Counted, so that the service looks at the set at its passes; whoever sleeps
        // on the set (the service, the poller OS thread) is woken by the readiness
        // itself.
        reg.poller.waiting.fetch_add(1, Ordering::SeqCst);
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
        block_internal(deadline, crate::task::dump::WaitReason::Io { fd: reg.fd });
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

fn wake_ready(p: &PollerInner, events: &[libc::epoll_event]) {
    let mut wake = Vec::new();
    for ev in events {
        let (bits, token) = (ev.events, ev.u64);
        if token == KICK {
            let mut v = 0u64;
            // SAFETY: an eight-byte read into a live value; the eventfd is non-blocking.
            unsafe { libc::read(p.kick, std::ptr::from_mut(&mut v).cast(), 8) };
            continue;
        }
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
