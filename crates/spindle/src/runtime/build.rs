//! Starting a runtime from its plan: the shared state, the cores, the maintenance
//! threads and the ticker.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicUsize};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crossbeam_utils::CachePadded;

use super::config::{Machine, RuntimeBuilder, plan};
use super::{Handle, Runtime};
use crate::error::ConfigError;
use crate::limits::MAX_CORES;
use crate::sched::exchange::Slots;
use crate::sched::{Core, CoreSet};
use crate::shared::Shared;

impl RuntimeBuilder {
    /// Checks the configuration and starts the cores.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the problem; nothing is started then.
    pub fn build(self) -> Result<Runtime, ConfigError> {
        let plan = plan(&self, &Machine::this())?;
        if crate::fork::forked() {
            return Err(ConfigError::Forked);
        }
        // Every thread's stack comes from the arena: a process that cannot have one
        // learns it here, with the reason, rather than from every spawn.
        crate::stack::ensure_arena().map_err(|e| ConfigError::StackArena {
            message: e.to_string(),
        })?;
        // Panic reports of spindle threads name them and run on a side stack; an
        // overflow report names the thread; a forked child refuses every call; the
        // preemption signal has its handler.
        crate::task::panic_hook::install(Core::id_of_running);
        crate::stack::overflow::set_describer(crate::task::tcb::describe_overflowed);
        crate::fork::install();
        crate::preempt::handler::install();
        if self.preempt.handoff {
            // The tick's handoff takes stuck cores with membarrier(2) once it is
            // registered, and through the carriers' signal handler until then.
            crate::os::register_membarrier();
        }
        // Where a service core shares a CPU with a worker, no core spins when idle:
        // the spinner would hold the CPU the other needs to answer it (a worker spinning
        // for its call's result keeps the service core that makes the call off the CPU
        // until the kernel's slice ends).
        let spin = if plan.hyper_shares_cpu {
            Duration::ZERO
        } else {
            self.idle_spin
        };
        let hyper = plan.hyper;
        let ring = self.wants_io_uring()?;
        let trace = match self.trace_path() {
            Some(p) => Some(
                crate::tracefile::Trace::create(&p).map_err(|e| ConfigError::Os {
                    message: format!("cannot create the trace file {}: {e}", p.display()),
                })?,
            ),
            None => None,
        };
        let page = if self.wants_stats()? {
            Some(
                crate::page::PageWriter::create().map_err(|e| ConfigError::Os {
                    message: format!("cannot create the stats page in /dev/shm: {e}"),
                })?,
            )
        } else {
            None
        };
        let poller = crate::io::Poller::new().map_err(|e| ConfigError::Os {
            message: format!("cannot make the readiness poller's epoll set: {e}"),
        })?;
        let shared = Arc::new_cyclic(|weak: &Weak<Shared>| {
            // The set is the first field of `Shared` (`repr(C)`): its address is the
            // runtime's, which the cores keep.
            let p = weak.as_ptr().cast::<CoreSet>();
            // The service's address in the runtime being built, for the cores' roles:
            // nothing is read through it before the runtime exists.
            // SAFETY: only an address is computed; the allocation exists.
            let service = unsafe { std::ptr::addr_of!((*weak.as_ptr()).offload) };
            // SAFETY: as above, the poller's address, for the service.
            let poller_at = unsafe { std::ptr::addr_of!((*weak.as_ptr()).poller) };
            let offload = crate::offload::Service::new(&poller, poller_at, ring, plan.services);
            Shared {
                set: CoreSet {
                    cores: (0..MAX_CORES).map(|i| Core::new(i, p, spin)).collect(),
                    slots: Slots::new(MAX_CORES),
                    hwm: AtomicUsize::new(0),
                    types: plan.types,
                    foreign_typed: std::array::from_fn(|_| AtomicI64::new(0)),
                    adrift: AtomicUsize::new(0),
                    hyper,
                    services: plan.services,
                    service_ty: plan.service_ty,
                    maint_ty: plan.service_ty.unwrap_or(0),
                    spinning: CachePadded::new(std::array::from_fn(|_| AtomicU32::new(0))),
                    sleeping: CachePadded::new(std::array::from_fn(|_| AtomicU32::new(0))),
                },
                pinned: plan.pinned,
                default_stack: plan.default_stack,
                shutdown: AtomicBool::new(false),
                choices: plan.choices,
                clock: crate::preempt::clock::Clock::new(self.preempt.clone()),
                admin: Mutex::new(()),
                one_cpu: plan.one_cpu,
                offload,
                serve_roles: (0..plan.services)
                    .map(|server| crate::offload::ServeRole { service, server })
                    .collect(),
                collect_role: crate::offload::CollectRole { service },
                poller,
                page,
                trace,
                blocking: crate::pool::Pool::default(),
                spares: crate::spares::Spares::default(),
                maintenance: Mutex::new(Vec::new()),
                shutdown_timeout: self.shutdown_timeout,
                stopping: AtomicBool::new(false),
                running_cores: AtomicUsize::new(0),
                deferred: AtomicBool::new(false),
                reclaimed: AtomicBool::new(false),
            }
        });
        let rt = Runtime {
            handle: Handle { shared },
        };
        let os_error = |e: &dyn std::fmt::Display| ConfigError::Os {
            message: e.to_string(),
        };
        {
            // Whoever sleeps on the readiness set: the service core (its doorbell
            // writes the set's eventfd), or an OS thread of its own.
            let shared = &rt.handle.shared;
            // The other service cores sleep in their own rings, or on their futex.
            match shared.hyper {
                Some(h) => {
                    shared.cores[h].doorbell.set_kick(shared.poller.kick_fd());
                    if shared.offload.stats().backend == crate::offload::Backend::Epoll {
                        shared.poller.watch_kick().map_err(|e| os_error(&e))?;
                    }
                    for k in 1..shared.services {
                        if let Some(fd) = shared.offload.own_kick(k) {
                            shared.cores[h + k].doorbell.set_kick(fd);
                        }
                    }
                }
                None => shared.poller.start_thread().map_err(|e| os_error(&e))?,
            }
        }
        {
            let _admin = rt
                .handle
                .shared
                .admin
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for (ty, &n) in plan.counts.iter().enumerate() {
                for _ in 0..n {
                    rt.handle.start_core(ty, None).map_err(|e| os_error(&e))?;
                }
            }
        }
        if self.dump_on_sigquit {
            super::dump::on_sigquit(&rt.handle.shared);
        }
        crate::maintenance::start(&rt.handle.shared, super::carriers::assign)
            .map_err(|e| os_error(&e))?;
        // Without a hypercore, the tick (time slices, preemption, watchdog) runs on an
        // OS thread of its own.
        let shared = &rt.handle.shared;
        if shared.clock.config.ticker && !shared.has_service() {
            let sh = shared.clone();
            crate::preempt::ticker::start(&shared.clock, move |now| {
                crate::preempt::tick::tick(&sh, &sh.clock, now);
                super::carriers::assign(&sh);
            })
            .map_err(|e| os_error(&e))?;
        }
        Ok(rt)
    }
}
