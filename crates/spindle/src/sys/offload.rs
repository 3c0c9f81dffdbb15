//! The calling side of an offloaded system call: claim a request slot of the caller's
//! core, publish the call, sleep until the service completed it; or run it directly.
//!
//! - A plain call ([`syscall`]) runs on the service core as a system call (or in its
//!   ring, if it is a call the ring batches), and directly where there is no service.
//! - A ring call ([`in_ring`]) accepts io_uring's semantics: it may wait in the
//!   kernel for readiness or a disk, and it may have a deadline. Its slot only
//!   carries the request: the service frees it as soon as it took the request, and
//!   the answer comes in a [`Pending`] record on the caller's stack, so a call that
//!   waits long (an idle connection) holds no slot. A caller past its deadline, or
//!   unwinding, asks the server that took its request for a cancellation
//!   (`offload/cancel.rs`: its record's flag, that server's word, a ring of that
//!   server's core, wherever the caller runs now) and still waits for the record to
//!   be DONE: the kernel may be writing into its buffer until then.
//! - Each worker core is served by one service core (`Service::route`); the caller
//!   posts to, rings and watches that one.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::offload::ring::RING;
use crate::offload::{POLL_SPINS, Pending, Region, SLOTS, Server, cancel, slot};
use crate::os::raw_syscall;
use crate::sched::CoreCtx;
use crate::sched::trace::Kind;
use crate::shared::Shared;

/// Runs system call `nr`: offloaded to its core's service core when the caller is a spindle
/// thread on a worker core of a runtime with a live service, else directly. Returns
/// the raw kernel result.
///
/// # Safety
///
/// As for [`raw_syscall`].
pub(crate) unsafe fn syscall(nr: u32, args: [u64; 6]) -> i64 {
    if let Some(r) = offload(nr, args) {
        return r;
    }
    // SAFETY: as for this function.
    unsafe { raw_syscall(nr, args) }
}

/// Runs `nr` through the service core's io_uring, waiting in the kernel if the call
/// must (a socket with no data waits for it, even if non-blocking), until `deadline`;
/// past it the operation is cancelled and the result is `-ETIMEDOUT` unless it
/// completed first. `None` where there is no ring for this caller (an OS thread, the
/// service core's own threads, no io_uring, a dead service): the caller takes its
/// plain path.
///
/// # Safety
///
/// As for [`raw_syscall`]; what the arguments point at must stay valid until this
/// returns (it does not return before the kernel is done with them).
pub(crate) unsafe fn in_ring(nr: u32, args: [u64; 6], deadline: Option<Instant>) -> Option<i64> {
    let shared = Shared::current()?;
    if !shared.offload.rings() {
        return None;
    }
    let me = crate::sched::wait::Waiter::current()?;
    let pending = Pending::new(me.id());
    let at = std::ptr::from_ref(&pending) as u64;
    let (posted, server) = loop {
        match post(nr | RING, args, at) {
            Post::Posted(p, k) => break (p, k),
            Post::Full => {
                crate::sched::wait::block_internal(None, crate::task::dump::WaitReason::RequestSlot)
            }
            Post::Direct => return None,
        }
    };
    let mut waiting = RingWait {
        pending: &pending,
        nr,
        server,
        asked: false,
    };
    let srv = &shared.offload.servers[server];
    loop {
        // Dead first, then the record: a server that died completed every request
        // it had taken before it published `dead`.
        let dead = srv.dead.load(Ordering::Acquire);
        if let Some(res) = pending.result() {
            let asked = waiting.asked;
            std::mem::forget(waiting);
            return match res {
                r if r == -i64::from(libc::ECANCELED) && asked => Some(-i64::from(libc::ETIMEDOUT)),
                // The dying service cancelled it: it did not run.
                r if r == -i64::from(libc::ECANCELED) => None,
                r => Some(r),
            };
        }
        if dead {
            // Not taken: the slot is still ours, READY, and never touched again.
            std::mem::forget(waiting);
            posted.release();
            return None;
        }
        match deadline {
            Some(d) if !waiting.asked && Instant::now() >= d => waiting.ask(),
            Some(d) if !waiting.asked => {
                crate::sched::wait::block_internal(Some(d), waiting.reason())
            }
            _ => crate::sched::wait::block_internal(None, waiting.reason()),
        }
    }
}

/// A ring call in flight. Dropped by an unwind (a shutdown abandons the thread), it
/// asks for a cancellation and waits until the record is DONE, so the kernel is done
/// with the caller's buffers before they go.
struct RingWait<'a> {
    pending: &'a Pending,
    /// The call's number (for the thread dump).
    nr: u32,
    /// The server the request was posted to.
    server: usize,
    asked: bool,
}

impl RingWait<'_> {
    fn reason(&self) -> crate::task::dump::WaitReason {
        crate::task::dump::WaitReason::Syscall { nr: self.nr }
    }

    /// Sets the cancel flag, tells the request's server and rings its core.
    fn ask(&mut self) {
        if self.asked {
            return;
        }
        self.asked = true;
        let shared = Shared::current().expect("a ring call runs on a spindle thread");
        cancel::ask(
            &self.pending.cancel,
            &shared.offload.servers[self.server].cancels,
        );
        if let Some(h) = shared.hyper {
            shared.cores[h + self.server].doorbell.wake_if_sleeping();
        }
    }
}

impl Drop for RingWait<'_> {
    fn drop(&mut self) {
        self.ask();
        let srv = &Shared::current()
            .expect("a ring call runs on a spindle thread")
            .offload
            .servers[self.server];
        while self.pending.result().is_none() && !srv.dead.load(Ordering::Acquire) {
            crate::sched::wait::block_internal(None, self.reason());
        }
    }
}

/// How posting a ring request went.
enum Post<'a> {
    /// In slot `.0` of the caller's core, READY, for server `.1`.
    Posted(&'a slot::ReqSlot, usize),
    /// Every slot of the core is taken.
    Full,
    /// No service for this caller.
    Direct,
}

/// Posts ring request `nr` with record `at` in a slot of the caller's core and rings
/// the service. The service frees the slot when it takes the request.
fn post(nr: u32, args: [u64; 6], at: u64) -> Post<'static> {
    let _guard = crate::sched::guard::PreemptGuard::new();
    let Some((ctx, me)) = CoreCtx::current() else {
        return Post::Direct;
    };
    let core = ctx.core();
    let shared = Shared::of(core);
    let Some(hyper) = shared.hyper else {
        return Post::Direct;
    };
    if shared.is_service(core.id) {
        return Post::Direct;
    }
    let svc = &shared.offload;
    let k = svc.route(core.id);
    let srv = &svc.servers[k];
    if srv.dead.load(Ordering::Acquire) {
        return Post::Direct;
    }
    let r = &svc.regions[core.id];
    let Some(i) = (0..SLOTS).find(|&i| r.slots[i].try_claim()) else {
        srv.slot_waits.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the running thread's own TCB.
        queue_for_slot(r, unsafe { (*me).id() }.as_u64());
        return Post::Full;
    };
    r.pending[i].store(at, Ordering::Relaxed);
    r.slots[i].publish(nr, args);
    shared.cores[hyper + k].doorbell.wake_if_sleeping();
    Post::Posted(&r.slots[i], k)
}

/// Queues thread `id` (packed), which found every slot of `r` taken, for the next free one: the
/// core wakes it at a schedule point once a slot is FREE (the caller then blocks, with
/// no schedule point before: a wake that comes first leaves a token).
fn queue_for_slot(r: &Region, id: u64) {
    // SAFETY: called on the region's core's OS thread, under a preempt guard, with no schedule point since the core was read.
    unsafe { (*r.local.get()).slot_waiters.push_back(id) };
}

/// The offloaded path of a plain call; `None` if the call must run directly.
fn offload(nr: u32, args: [u64; 6]) -> Option<i64> {
    loop {
        match try_offload(nr, args) {
            Claim::Done(r) => return r,
            Claim::Full => {
                // Every slot of this core is taken: sleep in its queue of slot waiters
                // (a spurious wake only means one more try).
                crate::sched::wait::block_internal(
                    None,
                    crate::task::dump::WaitReason::RequestSlot,
                );
            }
        }
    }
}

enum Claim {
    Done(Option<i64>),
    Full,
}

fn try_offload(nr: u32, args: [u64; 6]) -> Claim {
    // Claim and publish with no schedule point in between: the threads of this core
    // run one at a time, so the claim needs no RMW. Asynchronous preemption and the
    // core's handoff are held off until the call is published (and while polling for
    // its result).
    let guard = crate::sched::guard::PreemptGuard::new();
    let Some((mut ctx, me)) = CoreCtx::current() else {
        return Claim::Done(None);
    };
    let core = ctx.core();
    // SAFETY: the running thread's own TCB.
    let id = unsafe { (*me).id() };
    let shared = Shared::of(core);
    let Some(hyper) = shared.hyper else {
        return Claim::Done(None);
    };
    if shared.is_service(core.id) {
        return Claim::Done(None);
    }
    let svc = &shared.offload;
    let k = svc.route(core.id);
    let srv = &svc.servers[k];
    if srv.dead.load(Ordering::Acquire) {
        srv.direct_failed.fetch_add(1, Ordering::Relaxed);
        return Claim::Done(None);
    }
    let r = &svc.regions[core.id];
    let Some(i) = (0..SLOTS).find(|&i| r.slots[i].try_claim()) else {
        srv.slot_waits.fetch_add(1, Ordering::Relaxed);
        queue_for_slot(r, id.as_u64());
        return Claim::Full;
    };
    let s = &r.slots[i];
    r.waiters[i].store(id.as_u64(), Ordering::Relaxed);
    // SAFETY: we run on the core's OS thread, with no schedule point until `block`.
    unsafe { (*r.local.get()).inflight |= 1 << i };
    s.publish(nr, args);
    shared.cores[hyper + k].doorbell.wake_if_sleeping();
    core.trace(Kind::SyscallBegin, id.as_u64(), u64::from(nr));
    // With nothing else to run on this core, poll the slot for a while, as the idle
    // loop would, but without the two switches; stop as soon as work arrives here.
    // A core that does not spin (it shares its CPU) does not poll either.
    if ctx.runq_len() == 0 && !core.spin.is_zero() {
        for _ in 0..POLL_SPINS {
            if let Some(res) = s.result() {
                core.trace(Kind::SyscallEnd, id.as_u64(), u64::from(nr));
                // No schedule point since the publish: we are still on `core`.
                // SAFETY: as above.
                unsafe { (*r.local.get()).inflight &= !(1 << i) };
                s.release();
                return Claim::Done(Some(res));
            }
            if core.has_incoming() || srv.dead.load(Ordering::Relaxed) {
                break;
            }
            std::hint::spin_loop();
        }
    }
    drop(guard);
    let waiting = Waiting { r, i, srv, nr };
    loop {
        // Dead first, then the state: a service that died after completing us has
        // its DONE visible once we saw `dead` (and it completed everything it had in
        // its ring before it died).
        let dead = srv.dead.load(Ordering::Acquire);
        if let Some(res) = s.result() {
            std::mem::forget(waiting);
            s.release();
            crate::sched::trace::here(Kind::SyscallEnd, id.as_u64(), u64::from(nr));
            return Claim::Done(Some(res));
        }
        if dead {
            // READY, and the service will never touch it again.
            std::mem::forget(waiting);
            s.release();
            srv.direct_failed.fetch_add(1, Ordering::Relaxed);
            return Claim::Done(None);
        }
        crate::sched::wait::block_internal(None, crate::task::dump::WaitReason::Syscall { nr });
    }
}

/// A caller whose plain call is in flight. If it unwinds (a shutdown abandons it), it
/// may not leave: the service would still run the call on buffers its unwinding
/// frees. It waits (as an unwinding thread, it sleeps normally) until the call
/// completed or the service died, then frees the slot.
struct Waiting<'a> {
    r: &'a Region,
    i: usize,
    srv: &'a Server,
    /// The call's number (for the thread dump).
    nr: u32,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let s: &slot::ReqSlot = &self.r.slots[self.i];
        loop {
            let dead = self.srv.dead.load(Ordering::Acquire);
            if s.result().is_some() || dead {
                s.release();
                return;
            }
            crate::sched::wait::block_internal(
                None,
                crate::task::dump::WaitReason::Syscall { nr: self.nr },
            );
        }
    }
}
