//! The calling side of an offloaded system call: claim a request slot of the caller's
//! core, publish the call, sleep until the service completed it; or run it directly.

use std::sync::atomic::Ordering;

use crate::offload::{POLL_SPINS, SLOTS, Service, slot};
use crate::os::raw_syscall;
use crate::sched::CoreCtx;
use crate::shared::Shared;

/// Runs system call `nr`: offloaded to the hypercore when the caller is a spindle
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

/// The offloaded path; `None` if the call must run directly.
fn offload(nr: u32, args: [u64; 6]) -> Option<i64> {
    // Claim and publish with no schedule point in between: the threads of this core
    // run one at a time, so the claim needs no RMW. Asynchronous preemption and the
    // core's handoff are held off until the call is published (and while polling for
    // its result).
    let guard = crate::sched::guard::PreemptGuard::new();
    let (mut ctx, me) = CoreCtx::current()?;
    let core = ctx.core();
    // SAFETY: the running thread's own TCB.
    let id = unsafe { (*me).id() };
    let shared = Shared::of(core);
    let hyper = shared.hyper?;
    if core.id == hyper {
        return None;
    }
    let svc = &shared.offload;
    if svc.dead.load(Ordering::Acquire) {
        svc.direct_failed.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    let r = &svc.regions[core.id];
    let Some(i) = (0..SLOTS).find(|&i| r.slots[i].try_claim()) else {
        svc.direct_full.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    let s = &r.slots[i];
    r.waiters[i].store(id.as_u64(), Ordering::Relaxed);
    // SAFETY: we run on the core's OS thread, with no schedule point until `block`.
    unsafe { (*r.local.get()).inflight |= 1 << i };
    s.publish(nr, args);
    shared.cores[hyper].doorbell.wake_if_sleeping();
    // With nothing else to run on this core, poll the slot for a while, as the idle
    // loop would, but without the two switches; stop as soon as work arrives here.
    if ctx.runq_len() == 0 {
        for _ in 0..POLL_SPINS {
            if let Some(res) = s.result() {
                // No schedule point since the publish: we are still on `core`.
                // SAFETY: as above.
                unsafe { (*r.local.get()).inflight &= !(1 << i) };
                s.release();
                return Some(res);
            }
            if core.has_incoming() || svc.dead.load(Ordering::Relaxed) {
                break;
            }
            std::hint::spin_loop();
        }
    }
    drop(guard);
    /// A caller that unwinds while its call is in flight (a shutdown abandons it) may
    /// not leave: the service would still run the call on buffers its unwinding frees.
    /// It waits (as an unwinding thread, it sleeps normally) until the call completed
    /// or the service died, then frees the slot.
    struct AwaitOnUnwind<'a> {
        s: &'a slot::ReqSlot,
        svc: &'a Service,
    }
    impl Drop for AwaitOnUnwind<'_> {
        fn drop(&mut self) {
            loop {
                let dead = self.svc.dead.load(Ordering::Acquire);
                if self.s.result().is_some() || dead {
                    self.s.release();
                    return;
                }
                crate::sched::wait::block_internal(None);
            }
        }
    }
    let unwinding = AwaitOnUnwind { s, svc };
    loop {
        // Dead first, then the state: a service that died after completing us has
        // its DONE visible once we saw `dead`.
        let dead = svc.dead.load(Ordering::Acquire);
        if let Some(res) = s.result() {
            std::mem::forget(unwinding);
            s.release();
            return Some(res);
        }
        if dead {
            // READY, and the service will never touch it again: run it ourselves.
            std::mem::forget(unwinding);
            s.release();
            svc.direct_failed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        crate::sched::wait::block_internal(None);
    }
}
