//! A runtime's cores: starting one (at build, or added while it runs), removing one,
//! and the leaving core's evacuation (its OS threads are in `carriers`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Handle;
use crate::error::CoreError;
use crate::limits::MAX_CORES;
use crate::sched::role::CoreRole;
use crate::sched::{Core, CoreCtx, CoreState};
use crate::shared::Shared;

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
        // A reused core's last carrier set `Retired` as its last touch of the core.
        let cpus = &shared.types[ty].cpus;
        let cpu = if Some(ty) == shared.service_ty {
            // Service cores start in order, after the workers: the kth takes the kth
            // CPU of its type (shared round the list if there are fewer).
            let k = id - shared.hyper.unwrap_or(id);
            (!shared.one_cpu).then(|| cpus[k % cpus.len()])
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
        let role: &dyn CoreRole = match shared.hyper {
            Some(h) if shared.is_service(id) => &shared.serve_roles[id - h],
            _ => &shared.collect_role,
        };
        if reuse.is_none() && !shared.is_service(id) && shared.services > 0 {
            // A core id is routed once, before it first starts, and keeps its server.
            let service_cpus = shared
                .service_ty
                .map_or(&[][..], |s| &shared.types[s].cpus[..]);
            let llc = crate::topology::llc_groups(&crate::topology::allowed_cpus());
            let mut load = vec![0usize; shared.services];
            for c in shared.started() {
                if !shared.is_service(c.id) {
                    load[shared.offload.route(c.id)] += 1;
                }
            }
            let k = super::config::route(
                if shared.pinned { cpu } else { None },
                service_cpus,
                &llc,
                &load,
            );
            shared.offload.set_route(id, k);
        }
        // SAFETY: no OS thread runs the core (it has not started, or it is retired: its last carrier wrote that after its last touch); the role lives in the runtime, which outlives the core.
        unsafe { core.set_role(role) };
        if let Some(t) = &shared.trace {
            t.attach(core);
        }
        core.halt.store(false, Ordering::Relaxed);
        core.resched.clear();
        core.reopen_inbox();
        core.set_state(CoreState::Active);
        if reuse.is_none() {
            // Release: the core's fields are set before others scan it.
            shared.hwm.store(id + 1, Ordering::Release);
        }
        match super::carriers::start(shared, Some(id)) {
            Ok(()) => Ok(id),
            Err(e) => {
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

/// The leaving core's side of removal (see the module docs and `sched::lifecycle`),
/// up to `Evacuating` with everything handed over: its carrier writes `Retired` once
/// it stopped touching the core. Runs in the core's scheduler context, after the
/// `finish_switch` of the last thread it ran.
pub(super) fn retire(shared: &Shared, core: &Core) {
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
}
