//! A runtime's cores: starting one (at build, or added while it runs), removing one,
//! the body of a core's OS thread, and the leaving core's evacuation.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Handle;
use crate::error::CoreError;
use crate::limits::MAX_CORES;
use crate::sched::role::CoreRole;
use crate::sched::{Core, CoreCtx, CoreState};
use crate::shared::Shared;
use crate::stack::overflow::AltStack;
use crate::topology;

impl Handle {
    /// Starts a core of type `ty` (a retired core of that type is reused). Call with
    /// the admin lock held.
    pub(super) fn start_core(&self, ty: usize, reuse: Option<usize>) -> Result<usize, CoreError> {
        let shared = &self.shared;
        let id = match reuse {
            Some(id) => id,
            None => {
                let id = shared.hwm.load(Ordering::Relaxed);
                if id >= MAX_CORES {
                    return Err(CoreError::TooManyCores);
                }
                id
            }
        };
        let core = &shared.cores[id];
        // The previous OS thread of a reused core has finished (it set Retired last).
        if let Some(h) = core
            .os_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = h.join();
        }
        let cpus = &shared.types[ty].cpus;
        let cpu = if Some(ty) == shared.service_ty {
            (!shared.one_cpu).then(|| cpus[0])
        } else if shared.pinned {
            // The CPU of the type with the fewest running cores on it.
            let busy = |cpu: usize| {
                shared
                    .started()
                    .iter()
                    .filter(|c| {
                        c.state() == CoreState::Active && c.cpu.load(Ordering::Relaxed) == cpu
                    })
                    .count()
            };
            cpus.iter().copied().min_by_key(|&c| busy(c))
        } else {
            None
        };
        core.ty.store(ty, Ordering::Relaxed);
        core.cpu.store(cpu.unwrap_or(usize::MAX), Ordering::Relaxed);
        let role: &dyn CoreRole = if shared.is_service(id) {
            &shared.serve_role
        } else {
            &shared.collect_role
        };
        // SAFETY: the core's OS thread is not running (it has not started, or a retired core's has ended: joined above); the role lives in the runtime, which outlives the core.
        unsafe { core.set_role(role) };
        core.halt.store(false, Ordering::Relaxed);
        core.resched.clear();
        core.reopen_inbox();
        core.set_state(CoreState::Active);
        if reuse.is_none() {
            // Release: the core's fields are set before others scan it.
            shared.hwm.store(id + 1, Ordering::Release);
        }
        let handle = self.clone();
        let mask = cpus.clone();
        // Counted before it starts: its end is counted in `core_main`.
        shared.running_cores.fetch_add(1, Ordering::SeqCst);
        let spawned = std::thread::Builder::new()
            .name(format!("spindle-core-{id}"))
            .spawn(move || {
                // A panic here is a bug in the scheduler, with threads' state half
                // updated: stop the process rather than leave it hanging.
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    core_main(handle, id, cpu, mask)
                }));
                if r.is_err() {
                    eprintln!("spindle: core {id} panicked in the scheduler; aborting");
                    std::process::abort();
                }
            });
        match spawned {
            Ok(h) => {
                *core.os_thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(h);
                Ok(id)
            }
            Err(e) => {
                shared.running_cores.fetch_sub(1, Ordering::SeqCst);
                core.set_state(CoreState::Retired);
                Err(CoreError::Os {
                    message: e.to_string(),
                })
            }
        }
    }

    /// Adds a core of the type named `name` while the runtime runs, and returns its id.
    ///
    /// # Errors
    ///
    /// [`CoreError::NoSuchType`], [`CoreError::TooManyCores`], [`CoreError::ShutDown`],
    /// or [`CoreError::Os`].
    pub fn add_core(&self, name: &str) -> Result<usize, CoreError> {
        if crate::fork::forked() {
            return Err(CoreError::Forked);
        }
        let _p = crate::sched::guard::PreemptGuard::new();
        let shared = &self.shared;
        let _g = shared.admin.lock().unwrap_or_else(|e| e.into_inner());
        if shared.shutdown.load(Ordering::Acquire) {
            return Err(CoreError::ShutDown);
        }
        let ty = shared
            .type_index(name)
            .ok_or_else(|| CoreError::NoSuchType {
                name: name.to_owned(),
            })?;
        if let Some(core) = shared.hyper.filter(|_| Some(ty) == shared.service_ty) {
            return Err(CoreError::ServiceCore { core });
        }
        let reuse = shared
            .started()
            .iter()
            .position(|c| c.state() == CoreState::Retired && c.ty.load(Ordering::Relaxed) == ty);
        self.start_core(ty, reuse)
    }

    /// Removes core `id` while the runtime runs: every thread it holds (runnable,
    /// sleeping, parked) moves to the remaining cores of its type. Waits until the
    /// core has handed over its threads, which happens at its next schedule point.
    ///
    /// # Errors
    ///
    /// [`CoreError::NoSuchCore`], [`CoreError::LastCore`],
    /// [`CoreError::LastCoreOfType`] (its type still has threads), or
    /// [`CoreError::ShutDown`]. Nothing changes then.
    pub fn remove_core(&self, id: usize) -> Result<(), CoreError> {
        if crate::fork::forked() {
            return Err(CoreError::Forked);
        }
        let _p = crate::sched::guard::PreemptGuard::new();
        let shared = &self.shared;
        {
            let _g = shared.admin.lock().unwrap_or_else(|e| e.into_inner());
            if shared.shutdown.load(Ordering::Acquire) {
                return Err(CoreError::ShutDown);
            }
            let started = shared.started();
            let Some(core) = started.get(id).filter(|c| c.state() == CoreState::Active) else {
                return Err(CoreError::NoSuchCore { core: id });
            };
            if shared.is_service(id) {
                return Err(CoreError::ServiceCore { core: id });
            }
            let active: Vec<&Core> = started
                .iter()
                .filter(|c| c.state() == CoreState::Active && !shared.is_service(c.id))
                .collect();
            if active.len() == 1 {
                return Err(CoreError::LastCore { core: id });
            }
            let ty = core.ty.load(Ordering::Relaxed);
            let same_type = active
                .iter()
                .filter(|c| c.ty.load(Ordering::Relaxed) == ty)
                .count();
            let threads = shared.live_of_type(ty);
            if same_type == 1 && threads > 0 {
                return Err(CoreError::LastCoreOfType {
                    core: id,
                    name: shared.types[ty].name.clone(),
                    threads,
                });
            }
            core.set_state(CoreState::Leaving);
            core.halt.store(true, Ordering::Release);
            core.nudge();
        }
        // Wait for the core to retire (it may be the caller's own core: sleep, so the
        // caller is handed over too).
        let core = &shared.cores[id];
        while matches!(core.state(), CoreState::Leaving | CoreState::Evacuating)
            && !shared.shutdown.load(Ordering::Acquire)
        {
            crate::sched::wait::sleep(Duration::from_micros(100));
        }
        Ok(())
    }
}

/// The body of a core's OS thread: pin, run the scheduler until halted, then retire
/// (removal) or stop (shutdown).
fn core_main(handle: Handle, id: usize, cpu: Option<usize>, mask: Vec<usize>) {
    let shared = handle.shared();
    let core = &shared.cores[id];
    match cpu {
        // Pinning is best effort: a CPU set that changed since `build` leaves the core
        // unpinned rather than failing it.
        Some(cpu) => {
            let _ = topology::pin_current(cpu);
        }
        None => {
            let _ = topology::confine_current(&mask);
        }
    }
    let _alt = AltStack::install();
    core.clock.started();
    loop {
        if core.halt.load(Ordering::Acquire) {
            break;
        }
        // SAFETY: this is the core's scheduler context, on its own OS thread.
        if !unsafe { core.run_next() } && !core.halt.load(Ordering::Acquire) {
            core.idle();
        }
    }
    // SAFETY: scheduler context: complete the switch that brought us back.
    unsafe { core.finish_switch() };
    if core.state() == CoreState::Leaving && !shared.shutdown.load(Ordering::Acquire) {
        retire(shared, core);
    }
    core.drop_spin_token();
    // SAFETY: the core's scheduler context, on its own OS thread, after its last switch.
    unsafe { CoreCtx::stopped(core) }.publish_stats();
    core.clock.stopped();
    super::shutdown::core_stopped(shared);
}

/// The leaving core's side of removal (see the module docs and `sched::lifecycle`).
/// Runs in the core's scheduler context, after the `finish_switch` of the last thread
/// it ran.
fn retire(shared: &Shared, core: &Core) {
    // None of our threads is on a CPU any more: from now on wakers send them to other
    // cores, and senders stop offering to us.
    core.set_state(CoreState::Evacuating);
    // Grace period: every other started core passes a schedule point.
    let mut waiting: Vec<(usize, u64)> = shared
        .started()
        .iter()
        .filter(|c| c.id != core.id && c.state().is_running())
        .map(|c| (c.id, c.epoch.load(Ordering::Acquire)))
        .collect();
    for &(id, _) in &waiting {
        shared.cores[id].nudge();
    }
    while !waiting.is_empty() {
        if shared.shutdown.load(Ordering::Acquire) {
            return;
        }
        waiting.retain(|&(id, e0)| {
            let c = &shared.cores[id];
            c.state().is_running() && c.epoch.load(Ordering::Acquire) == e0
        });
        // SAFETY: the scheduler context of `core`, on its OS thread.
        unsafe { CoreCtx::stopped(core) }.take_in();
        core.bump_epoch();
        std::thread::yield_now();
    }
    // SAFETY: scheduler context of `core`, after the grace period.
    unsafe {
        core.close_inbox();
        core.evacuate();
    }
    core.halt.store(false, Ordering::Relaxed);
    core.set_state(CoreState::Retired);
}
