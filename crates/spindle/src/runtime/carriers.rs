//! The carriers: the OS threads that run cores. Each core starts with one of its own;
//! when a thread blocks its carrier in the kernel, the tick hands the core to a spare
//! (`sched::carrier` has the protocol), and the blocked carrier becomes a spare once
//! its thread rejoined a core.
//!
//! A carrier runs one core's scheduler until the core halts (shutdown, removal: the
//! OS thread then ends) or is lost to a handoff; a spare waits in the runtime's
//! waiting room (`spares`) for a released core. At most
//! [`RuntimeBuilder::spare_threads`](crate::RuntimeBuilder::spare_threads) OS threads
//! run beyond one per core; when all are in use, a stuck core waits and stderr says so
//! once, naming the threads blocked off their cores.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::sched::switch::Next;
use crate::sched::{CoreCtx, CoreState};
use crate::shared::Shared;
use crate::spares::Offer;
use crate::stack::overflow::AltStack;
use crate::topology;

/// How a carrier's run of a core ended.
enum Outcome {
    /// The core halted (shutdown or removal).
    Halted,
    /// The core went to another OS thread while a thread of it blocked this one.
    Lost,
}

/// Starts a carrier OS thread: the first of core `first`, or a spare (`None`).
pub(super) fn start(shared: &Arc<Shared>, first: Option<usize>) -> std::io::Result<()> {
    // Counted before it starts: its end is counted in `carrier_main`.
    shared.running_cores.fetch_add(1, Ordering::SeqCst);
    let sh = shared.clone();
    let name = match first {
        Some(id) => format!("spindle-core-{id}"),
        None => "spindle-spare".to_owned(),
    };
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        // A panic here is a bug in the scheduler, with threads' state half updated:
        // stop the process rather than leave it hanging.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            carrier_main(&sh, first);
        }));
        if r.is_err() {
            eprintln!("spindle: a core's OS thread panicked in the scheduler; aborting");
            std::process::abort();
        }
    });
    match spawned {
        Ok(h) => {
            shared.spares.keep(h);
            Ok(())
        }
        Err(e) => {
            shared.running_cores.fetch_sub(1, Ordering::SeqCst);
            Err(e)
        }
    }
}

/// The body of a carrier OS thread: run core `first` (if any), then carry whatever
/// core the waiting room gives it, until a core it runs halts or it waits in vain.
fn carrier_main(shared: &Arc<Shared>, first: Option<usize>) {
    let _alt = AltStack::install();
    let mut next = first;
    let mut fresh = first.is_none();
    'carry: loop {
        if let Some(id) = next.take()
            && let Outcome::Halted = run_core(shared, id)
        {
            break;
        }
        loop {
            let Some(id) = shared.spares.wait(std::mem::take(&mut fresh)) else {
                break 'carry;
            };
            // Its old carrier may have taken it back meanwhile.
            if shared.cores[id].carrier.take() {
                next = Some(id);
                break;
            }
        }
    }
    super::shutdown::core_stopped(shared);
}

/// Runs core `id` on this OS thread (which holds it): pin to its CPU or its type's,
/// run its scheduler until it halts or is lost, then retire it (removal) or stop it.
fn run_core(shared: &Shared, id: usize) -> Outcome {
    let core = &shared.cores[id];
    pin(shared, core);
    core.start_carrying();
    loop {
        if core.halt.load(Ordering::Acquire) {
            break;
        }
        // SAFETY: this is the core's scheduler context, on the OS thread that holds it.
        match unsafe { core.run_next() } {
            Next::Ran => {}
            // The tick let this OS thread run anywhere while its thread was adrift.
            Next::Retook => pin(shared, core),
            Next::Lost => return Outcome::Lost,
            Next::Idle => {
                if !core.halt.load(Ordering::Acquire) {
                    core.idle();
                }
            }
        }
    }
    // SAFETY: scheduler context: complete the switch that brought us back.
    unsafe { core.finish_switch() };
    let leaving = core.state() == CoreState::Leaving && !shared.shutdown.load(Ordering::Acquire);
    if leaving {
        super::cores::retire(shared, core);
    }
    core.drop_spin_token();
    // SAFETY: the core's scheduler context, on the OS thread that holds it, after its last switch.
    unsafe { CoreCtx::stopped(core) }.publish_stats();
    core.clock.stopped();
    if leaving && core.state() == CoreState::Evacuating {
        // Last: a core `add_core` reuses is touched by nobody else.
        core.set_state(CoreState::Retired);
    }
    Outcome::Halted
}

/// Pins the calling OS thread to `core`'s CPU, or confines it to its type's CPUs.
/// Best effort: a CPU set that changed since `build` leaves the core unpinned rather
/// than failing it.
fn pin(shared: &Shared, core: &crate::sched::Core) {
    match core.cpu.load(Ordering::Relaxed) {
        usize::MAX => {
            let _ = topology::confine_current(&shared.types[core.ty.load(Ordering::Relaxed)].cpus);
        }
        cpu => {
            let _ = topology::pin_current(cpu);
        }
    }
}

/// The tick's half of a handoff: gives each released core to a spare, starting one
/// if none waits and the bound allows. Called on the service core after each tick.
pub(crate) fn assign(shared: &Arc<Shared>) {
    if !shared.clock.config.handoff || shared.stopping.load(Ordering::Acquire) {
        return;
    }
    let started = shared.started();
    for c in started {
        if !c.carrier.is_released() {
            continue;
        }
        let alive = shared.running_cores.load(Ordering::SeqCst);
        let may_start = alive < started.len() + shared.clock.config.spare_threads;
        match shared.spares.offer(c.id, may_start) {
            Offer::Queued => {}
            Offer::StartOne => {
                if start(shared, None).is_err() {
                    shared.spares.start_failed();
                }
            }
            Offer::Full => {
                if shared.spares.first_report() {
                    report_full(shared);
                }
            }
        }
    }
}

/// Says on stderr, once per runtime, that every spare OS thread is in use.
fn report_full(shared: &Shared) {
    let cores: Vec<String> = shared
        .spares
        .queued()
        .iter()
        .map(usize::to_string)
        .collect();
    eprintln!(
        "spindle: all {} spare OS threads are in use (RuntimeBuilder::spare_threads), so \
         core(s) {} wait for one; these threads block their OS threads in the kernel: {}. \
         The runtime keeps running; move such calls to spindle::blocking or raise the bound",
        shared.clock.config.spare_threads,
        cores.join(", "),
        adrift_threads(shared).join(", ")
    );
}

/// The threads of this runtime that run adrift, as "'name' (id N)".
pub(super) fn adrift_threads(shared: &Shared) -> Vec<String> {
    let mut out = Vec::new();
    for (_, slot) in shared.live_slots() {
        // SAFETY: a live thread's TCB stays valid while it runs adrift (it cannot exit without rejoining a core first); `adrift` is atomic, and `name` and `id` are written before the thread was published.
        unsafe {
            let tcb = *slot.tcb.get();
            if tcb.is_null()
                || (*tcb).adrift.load(Ordering::Relaxed) != crate::sched::carrier::ADRIFT
            {
                continue;
            }
            out.push(match &(*tcb).name {
                Some(n) => format!("'{}' (id {})", n.as_str(), (*tcb).id_u64()),
                None => format!("id {}", (*tcb).id_u64()),
            });
        }
    }
    out
}
