//! The service core's io_uring: the requests of one pass go to the kernel as one
//! batch, and the calls that must wait (a socket with no data, a page-cache miss)
//! wait in the kernel, not on the service core.
//!
//! - **Who touches it**: only the service core's OS thread (the service loop and its
//!   idle sleep). The ring is created at build and dropped with the runtime.
//! - **What goes in**: only requests whose caller marked them [`RING`]: the caller
//!   accepts io_uring's semantics, under which a read of a socket or pipe waits for
//!   data even if the descriptor is non-blocking, and a read that misses the page
//!   cache completes from io_uring's worker threads. A request without the mark, or
//!   whose call has no io_uring operation here ([`Ring::prepare`]), runs as a plain
//!   system call on the service core.
//! - **Identity**: an operation's `user_data` is `core << 8 | slot`; the three
//!   values at the top of the range are the ring's own operations: the doorbell's
//!   eventfd read ([`KICK`]), the poll of the readiness poller's epoll set
//!   ([`EPOLL`]) and cancellations ([`CANCEL`], whose completions are dropped).
//! - **Cancellation**: a request whose caller gave up (a timeout, an unwind) gets an
//!   `ASYNC_CANCEL` by `user_data`. Its own completion still arrives, with
//!   `-ECANCELED` or with its result if it finished first; the slot is completed from
//!   that completion only, so the caller's buffer stays lent until the kernel is done
//!   with it.
//! - **Sleep**: the service core sleeps in `io_uring_enter` waiting for one
//!   completion, with the idle loop's timeout. The doorbell's eventfd read and the
//!   epoll poll are kept armed, so a new request, socket readiness and any completion
//!   all end the sleep.
//! - **Drop**: every operation still in the kernel is cancelled and waited for, so
//!   no completion writes into memory freed after the ring.

use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::{IoUring, Probe, cqueue, opcode, squeue, types};

/// The mark a caller sets in a request's call number to let it run through the ring.
pub(crate) const RING: u32 = 1 << 31;

/// `user_data` of the doorbell's eventfd read.
const KICK: u64 = u64::MAX;
/// `user_data` of the multishot poll of the epoll set.
const EPOLL: u64 = u64::MAX - 1;
/// `user_data` of a cancellation.
const CANCEL: u64 = u64::MAX - 2;

/// Entries of the submission queue: a pass submits at most one per request slot of
/// every core before it submits, in chunks of this size.
const ENTRIES: u32 = 256;

/// What a completion was.
pub(crate) enum Done {
    /// A request's: the slot (`core << 8 | slot`) and the kernel's result.
    Request(u64, i32),
    /// The epoll set has events: dispatch them.
    Readiness,
}

/// The service core's ring.
pub(crate) struct Ring {
    ring: IoUring,
    probe: Probe,
    /// The doorbell's eventfd (owned by the service).
    kick: RawFd,
    /// The readiness poller's epoll set, watched while armed.
    epoll: Option<RawFd>,
    /// Where the eventfd read lands; boxed so that its address is stable.
    kick_buf: Box<u64>,
    kick_armed: bool,
    epoll_armed: bool,
    /// Requests in the kernel (not counting the ring's own operations).
    pub(crate) inflight: usize,
    /// `io_uring_enter` calls made to submit.
    pub(crate) enters: u64,
    /// Entries queued and not submitted yet.
    queued: usize,
}

impl Ring {
    /// A ring for the service, woken by `kick` (an eventfd); `None` where io_uring is
    /// missing or refused (an older kernel, a seccomp profile).
    pub(crate) fn new(kick: RawFd) -> Option<Ring> {
        let ring = IoUring::new(ENTRIES).ok()?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe).ok()?;
        if !probe.is_supported(opcode::AsyncCancel::CODE) || !probe.is_supported(opcode::Read::CODE)
        {
            return None;
        }
        Some(Ring {
            ring,
            probe,
            kick,
            epoll: None,
            kick_buf: Box::new(0),
            kick_armed: false,
            epoll_armed: false,
            inflight: 0,
            enters: 0,
            queued: 0,
        })
    }

    /// Watches the readiness poller's epoll set from now on.
    pub(crate) fn watch(&mut self, epfd: RawFd) {
        self.epoll = Some(epfd);
    }

    /// The io_uring operation of system call `nr` with `a`, if there is one here.
    /// Calls with an address (`sendto`, `recvfrom` with one) are left to the plain
    /// path.
    fn prepare(&self, nr: u32, a: [u64; 6]) -> Option<squeue::Entry> {
        let fd = types::Fd(a[0] as i32);
        let ok = |code: u8| self.probe.is_supported(code);
        let here = u64::MAX; // offset -1: the file position, as read(2) and write(2)
        let e = match i64::from(nr) {
            libc::SYS_read if ok(opcode::Read::CODE) => {
                opcode::Read::new(fd, a[1] as *mut u8, a[2] as u32)
                    .offset(here)
                    .build()
            }
            libc::SYS_write if ok(opcode::Write::CODE) => {
                opcode::Write::new(fd, a[1] as *const u8, a[2] as u32)
                    .offset(here)
                    .build()
            }
            libc::SYS_pread64 if ok(opcode::Read::CODE) => {
                opcode::Read::new(fd, a[1] as *mut u8, a[2] as u32)
                    .offset(a[3])
                    .build()
            }
            libc::SYS_pwrite64 if ok(opcode::Write::CODE) => {
                opcode::Write::new(fd, a[1] as *const u8, a[2] as u32)
                    .offset(a[3])
                    .build()
            }
            libc::SYS_preadv2 if ok(opcode::Readv::CODE) => {
                opcode::Readv::new(fd, a[1] as *const libc::iovec, a[2] as u32)
                    .offset(a[3])
                    .rw_flags(a[5] as i32)
                    .build()
            }
            libc::SYS_pwritev2 if ok(opcode::Writev::CODE) => {
                opcode::Writev::new(fd, a[1] as *const libc::iovec, a[2] as u32)
                    .offset(a[3])
                    .rw_flags(a[5] as i32)
                    .build()
            }
            libc::SYS_recvfrom if a[4] == 0 && ok(opcode::Recv::CODE) => {
                opcode::Recv::new(fd, a[1] as *mut u8, a[2] as u32)
                    .flags(a[3] as i32)
                    .build()
            }
            libc::SYS_sendto if a[4] == 0 && ok(opcode::Send::CODE) => {
                opcode::Send::new(fd, a[1] as *const u8, a[2] as u32)
                    .flags(a[3] as i32)
                    .build()
            }
            libc::SYS_accept4 if ok(opcode::Accept::CODE) => {
                opcode::Accept::new(fd, a[1] as *mut libc::sockaddr, a[2] as *mut u32)
                    .flags(a[3] as i32)
                    .build()
            }
            libc::SYS_fsync if ok(opcode::Fsync::CODE) => opcode::Fsync::new(fd).build(),
            libc::SYS_fdatasync if ok(opcode::Fsync::CODE) => opcode::Fsync::new(fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build(),
            libc::SYS_ftruncate if ok(opcode::Ftruncate::CODE) => {
                opcode::Ftruncate::new(fd, a[1]).build()
            }
            libc::SYS_openat if ok(opcode::OpenAt::CODE) => {
                opcode::OpenAt::new(types::Fd(a[0] as i32), a[1] as *const libc::c_char)
                    .flags(a[2] as i32)
                    .mode(a[3] as u32)
                    .build()
            }
            _ => return None,
        };
        Some(e)
    }

    /// Queues request `nr` of slot `id` (`core << 8 | slot`). Returns false if the
    /// call has no operation here: the caller runs it as a plain call.
    ///
    /// # Safety
    ///
    /// The arguments must stay valid until the request's completion has been reaped
    /// ([`Ring::reap`]): the caller of the offloaded call waits for it (`sys::offload`).
    pub(crate) unsafe fn push(&mut self, nr: u32, args: [u64; 6], id: u64) -> bool {
        let Some(e) = self.prepare(nr, args) else {
            return false;
        };
        // SAFETY: the buffers the entry points at stay valid until its completion (this function's contract).
        unsafe { self.queue(&e.user_data(id)) };
        self.inflight += 1;
        true
    }

    /// Queues the cancellation of request `id`.
    pub(crate) fn cancel(&mut self, id: u64) {
        let e = opcode::AsyncCancel::new(id).build().user_data(CANCEL);
        // SAFETY: a cancellation points at no memory.
        unsafe { self.queue(&e) };
    }

    /// Pushes `e`, submitting first if the queue is full.
    ///
    /// # Safety
    ///
    /// As for `SubmissionQueue::push`: what `e` points at stays valid until its
    /// completion.
    unsafe fn queue(&mut self, e: &squeue::Entry) {
        loop {
            // SAFETY: the caller's contract.
            if unsafe { self.ring.submission().push(e) }.is_ok() {
                self.queued += 1;
                return;
            }
            self.submit();
        }
    }

    /// Submits what was queued: one `io_uring_enter` for the whole batch.
    pub(crate) fn submit(&mut self) {
        if self.queued == 0 {
            return;
        }
        self.enters += 1;
        loop {
            match self.ring.submit() {
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                // EBUSY: the completion queue is full; the caller reaps, and the
                // entries are submitted at the next call.
                _ => break,
            }
        }
        self.queued = self.ring.submission().len();
    }

    /// Hands every completion to `f`, re-arming the ring's own operations as needed.
    pub(crate) fn reap(&mut self, mut f: impl FnMut(Done)) {
        let mut rearm = false;
        for c in self.ring.completion() {
            match c.user_data() {
                KICK => {
                    self.kick_armed = false;
                    rearm = true;
                }
                EPOLL => {
                    if !cqueue::more(c.flags()) {
                        self.epoll_armed = false;
                        rearm = true;
                    }
                    f(Done::Readiness);
                }
                CANCEL => {}
                id => {
                    self.inflight -= 1;
                    f(Done::Request(id, c.result()));
                }
            }
        }
        if rearm {
            self.arm();
        }
    }

    /// Arms the doorbell's eventfd read and the epoll poll where they are not armed.
    fn arm(&mut self) {
        if !self.kick_armed {
            let e = opcode::Read::new(
                types::Fd(self.kick),
                std::ptr::from_mut::<u64>(&mut self.kick_buf).cast(),
                8,
            )
            .build()
            .user_data(KICK);
            // SAFETY: `kick_buf` is a box the ring owns; it is freed only after drop cancelled and reaped this read.
            unsafe { self.queue(&e) };
            self.kick_armed = true;
        }
        if let Some(epfd) = self.epoll
            && !self.epoll_armed
        {
            let e = opcode::PollAdd::new(types::Fd(epfd), libc::POLLIN as u32)
                .multi(true)
                .build()
                .user_data(EPOLL);
            // SAFETY: a poll points at no memory.
            unsafe { self.queue(&e) };
            self.epoll_armed = true;
        }
    }

    /// Sleeps until a completion arrives (a request's, the doorbell's, readiness) or
    /// `timeout` passes; submits what was queued on the way in.
    pub(crate) fn sleep(&mut self, timeout: Option<Duration>) {
        self.arm();
        let ts = timeout.map(types::Timespec::from);
        let args = types::SubmitArgs::new();
        let r = match &ts {
            Some(ts) => self
                .ring
                .submitter()
                .submit_with_args(1, &args.timespec(ts)),
            None => self.ring.submitter().submit_with_args(1, &args),
        };
        // ETIME (the timeout), EINTR (a signal): both end the sleep.
        let _ = r;
        self.queued = self.ring.submission().len();
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // Cancel everything still in the kernel and wait for it, so that nothing the
        // ring lent (the eventfd buffer) is written after it is freed.
        let e = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(CANCEL);
        // SAFETY: a cancellation points at no memory.
        unsafe { self.queue(&e) };
        self.submit();
        let ts = types::Timespec::from(Duration::from_millis(10));
        for _ in 0..100 {
            let mut pending = self.kick_armed || self.epoll_armed || self.inflight > 0;
            for c in self.ring.completion() {
                match c.user_data() {
                    KICK => self.kick_armed = false,
                    EPOLL if !cqueue::more(c.flags()) => self.epoll_armed = false,
                    CANCEL | EPOLL => {}
                    _ => self.inflight -= 1,
                }
            }
            pending = pending && (self.kick_armed || self.epoll_armed || self.inflight > 0);
            if !pending {
                return;
            }
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
        }
    }
}
