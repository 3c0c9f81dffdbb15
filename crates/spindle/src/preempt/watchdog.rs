//! The watchdog: reports a core whose schedule point counter has not moved for
//! `watchdog_slices` slices of its running thread, naming the thread through a
//! one-slot hand-off with the signal handler (the only safe way to read the name of a
//! thread running on another core).

use std::sync::Arc;
use std::time::Duration;

use super::clock::{Clock, RUN_PREEMPTIBLE};
use super::tick::signal;
use crate::loom::Ordering;
use crate::sched::Core;
use crate::sched::clock::CoreClock;
use crate::task::tcb::{Name, Tcb};

/// `CoreClock::name_tag`: the thread has no name.
const NAME_NONE: u8 = 0;
/// `CoreClock::name_tag`: the name is a `&'static str`.
const NAME_STATIC: u8 = 1;
/// `CoreClock::name_tag`: the name is an `Arc<str>` whose strong count the handler
/// leaked for the tick.
const NAME_SHARED: u8 = 2;

/// What the tick remembers about one core.
#[derive(Clone, Copy, Default)]
pub(crate) struct Watch {
    /// The schedule point counter seen last.
    pub(super) points: u64,
    /// Tick at which this run got the reschedule flag.
    pub(super) flagged_at: Option<u64>,
    /// The watchdog reported (or is reporting) this run.
    pub(super) reported: bool,
    /// CPU time of the core's OS thread when the flag was set, in ns.
    pub(super) cpu_at_flag: u64,
    /// A report waiting for the thread's name.
    pending: Option<Pending>,
    /// Tick at which the schedule point counter last moved (`stuck`).
    pub(super) still_since: u64,
    /// No `/proc` read for this core's handoff check before this tick (`stuck`).
    pub(super) recheck_at: u64,
    /// The spell (its `still_since`) in which `user` and `system` were read: the
    /// times of the core's OS thread when the handoff check first saw it running.
    pub(super) times_at: Option<u64>,
    pub(super) user: u64,
    pub(super) system: u64,
}

#[derive(Clone, Copy)]
struct Pending {
    /// Ticks waited for the name so far.
    waited: u32,
    id: u64,
    ms: u64,
    slices: u64,
    what: &'static str,
}

/// The run the tick found over its slice on one core: the tick count, its run word,
/// its slice and how long it has run, in ticks.
pub(super) struct Run {
    pub(super) now: u64,
    pub(super) word: u64,
    pub(super) slice: u64,
    pub(super) elapsed: u64,
}

/// The watchdog's part of a tick for a run over its slice: starts a report when the
/// run has held its core for `watchdog_slices` slices. It counts from the reschedule
/// request, so a thread that honours it is never reported, even when the tick itself
/// ran late (then `elapsed` jumps).
pub(super) fn check(clock: &Clock, k: &CoreClock, w: &mut Watch, run: Run) {
    let Run {
        now: t,
        word,
        slice,
        elapsed,
    } = run;
    let limit = slice.saturating_mul(u64::from(clock.config.watchdog_slices));
    let ignored = w.flagged_at.map_or(0, |f| t - f);
    if w.reported || elapsed < limit || ignored + slice < limit {
        return;
    }
    // Only time the core's OS thread really ran counts (on a loaded machine the OS
    // may keep it off the CPU): since the request it must have used the rest of the
    // limit, or be asleep in the kernel.
    let tid = k.tid.load(Ordering::Relaxed);
    let used = thread_cpu_ns(tid).saturating_sub(w.cpu_at_flag);
    let spun = used >= (limit - slice).saturating_mul(clock.tick_ns);
    let blocked = !spun && blocked_in_kernel(tid);
    if !spun && !blocked {
        return;
    }
    w.reported = true;
    let what = if blocked {
        "its core's OS thread is blocked in the kernel (a blocking system call, or a std \
         lock): run blocking calls with spindle::blocking(..) (or use spindle::net and \
         spindle::fs), and use spindle::sync instead of std locks, so that only the thread \
         waits, not its core"
    } else if word & RUN_PREEMPTIBLE != 0 {
        "it is preemptible but could not be preempted (it runs in a shared library, in the \
         standard library or in the runtime): call spindle::preempt_point() in its loop"
    } else {
        "it computes without yielding and is not preemptible: spawn it with \
         Builder::preemptible(true) (or RuntimeBuilder::preemptible), or call \
         spindle::preempt_point() in its loop"
    };
    // Drop a name a late handler left behind, then ask for this one.
    take_name(k);
    k.want_name.store(true, Ordering::Relaxed);
    signal(k);
    w.pending = Some(Pending {
        waited: 0,
        id: k.id.load(Ordering::Relaxed),
        ms: elapsed.saturating_mul(clock.tick_ns) / 1_000_000,
        slices: elapsed / slice,
        what,
    });
}

/// Ticks a watchdog report waits for the signal handler to hand over the thread's
/// name (the core's OS thread may be off the CPU for a while).
const NAME_WAIT_TICKS: u32 = 50;

/// Emits the core's pending watchdog report, if any, once the handler handed over the
/// name, or after `NAME_WAIT_TICKS` ticks without it.
pub(super) fn finish_report(core: &Core, w: &mut Watch) {
    let Some(mut p) = w.pending else {
        return;
    };
    let k = &core.clock;
    let ready = k.name_ready.load(Ordering::Acquire);
    if !ready && p.waited < NAME_WAIT_TICKS {
        p.waited += 1;
        w.pending = Some(p);
        return;
    }
    w.pending = None;
    k.want_name.store(false, Ordering::Relaxed);
    let name = take_name(k).filter(|(id, _)| *id == p.id).map(|(_, n)| n);
    let name = name.as_ref().map_or("<unnamed>", |n| match n {
        Some(n) => n.as_str(),
        None => "<unnamed>",
    });
    if tracing::enabled!(target: "spindle::watchdog", tracing::Level::WARN) {
        tracing::warn!(
            target: "spindle::watchdog",
            thread = name,
            id = p.id,
            core = core.id,
            ms = p.ms,
            slices = p.slices,
            "thread '{name}' (id {}) on core {} has not reached a schedule point for {} ms ({} \
             time slices): {}",
            p.id,
            core.id,
            p.ms,
            p.slices,
            p.what
        );
    } else {
        // No subscriber takes it: the report must not vanish.
        eprintln!(
            "spindle: watchdog: thread '{name}' (id {}) on core {} has not reached a schedule \
             point for {} ms ({} time slices): {}",
            p.id, core.id, p.ms, p.slices, p.what
        );
    }
}

/// Takes the name the handler handed over, if any: (thread id, name).
#[allow(clippy::type_complexity)]
fn take_name(k: &CoreClock) -> Option<(u64, Option<Name>)> {
    if !k.name_ready.load(Ordering::Acquire) {
        return None;
    }
    let id = k.name_id.load(Ordering::Relaxed);
    let ptr = k.name_ptr.load(Ordering::Relaxed) as *const u8;
    let len = k.name_len.load(Ordering::Relaxed);
    let name = match k.name_tag.load(Ordering::Relaxed) {
        // SAFETY: the handler stored the parts of a `&'static str`.
        NAME_STATIC => Some(Name::Static(unsafe {
            std::str::from_utf8_unchecked(std::slice::from_raw_parts(ptr, len))
        })),
        // SAFETY: the handler stored the parts of an `Arc<str>` it leaked a strong count for (`Arc::into_raw`); we take that count back.
        NAME_SHARED => Some(Name::Shared(unsafe {
            Arc::from_raw(std::ptr::slice_from_raw_parts(ptr, len) as *const str)
        })),
        _ => None,
    };
    // Release: the handler may fill the slot again only after we read it.
    k.name_ready.store(false, Ordering::Release);
    Some((id, name))
}

/// Whether the OS thread `tid` of this process sleeps in the kernel (state S or D in
/// `/proc/self/task/<tid>/stat`).
fn blocked_in_kernel(tid: i32) -> bool {
    if tid == 0 {
        return false;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may contain any
    // character: look after the last ')'.
    stat.rfind(')')
        .and_then(|i| stat[i + 1..].trim_start().chars().next())
        .is_some_and(|s| s == 'S' || s == 'D')
}

/// CPU time the OS thread `tid` of this process has used, in ns (0 if unknown).
pub(super) fn thread_cpu_ns(tid: i32) -> u64 {
    if tid == 0 {
        return 0;
    }
    // The kernel's per-thread CPU clock id: MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)
    // = (~tid << 3) | CPUCLOCK_PERTHREAD_MASK (4) | CPUCLOCK_SCHED (2).
    let clock = (!tid << 3) | 6;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes `ts`; an unknown clock id (the thread is gone) is an error, not undefined behaviour.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// thread running on another core; see the module docs). Waits up to 50 ms for it.
pub(crate) fn running_thread(core: &Core) -> String {
    let k = &core.clock;
    let id = k.id.load(Ordering::Relaxed);
    drop(take_name(k));
    k.want_name.store(true, Ordering::Relaxed);
    signal(k);
    for _ in 0..50 {
        if k.name_ready.load(Ordering::Acquire) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    k.want_name.store(false, Ordering::Relaxed);
    match take_name(k).filter(|(i, _)| *i == id) {
        Some((_, Some(name))) => format!("thread '{}' (id {id})", name.as_str()),
        Some((_, None)) => format!("an unnamed thread (id {id})"),
        None => format!("thread id {id}"),
    }
}

/// Drops every name the handler handed over and nobody took (shutdown, after the
/// last tick).
pub(crate) fn drop_names(cores: &[Core]) {
    for c in cores {
        drop(take_name(&c.clock));
    }
}

/// Hands the tick a reference to the name of `tcb` (the handler's side of the
/// one-slot hand-off in `CoreClock`).
///
/// # Safety
///
/// Called by the signal handler on `tcb`'s OS thread while `tcb` runs outside any
/// runtime critical section (preempt count zero), so its name is alive.
pub(super) unsafe fn hand_over_name(k: &CoreClock, tcb: *mut Tcb) {
    // Acquire: the tick finished reading the previous hand-off.
    if k.name_ready.load(Ordering::Acquire) {
        return;
    }
    // SAFETY: per the contract the name is alive; cloning an Arc is one atomic increment, async-signal-safe.
    let (tag, ptr, len) = unsafe {
        match &(*tcb).name {
            None => (NAME_NONE, 0, 0),
            Some(Name::Static(s)) => (NAME_STATIC, s.as_ptr() as usize, s.len()),
            Some(Name::Shared(a)) => {
                let len = a.len();
                let p = Arc::into_raw(a.clone());
                (NAME_SHARED, p as *const u8 as usize, len)
            }
        }
    };
    k.name_tag.store(tag, Ordering::Relaxed);
    k.name_ptr.store(ptr, Ordering::Relaxed);
    k.name_len.store(len, Ordering::Relaxed);
    // SAFETY: as above.
    let id = unsafe { (*tcb).id_u64() };
    k.name_id.store(id, Ordering::Relaxed);
    k.want_name.store(false, Ordering::Relaxed);
    k.name_ready.store(true, Ordering::Release);
}

#[cfg(all(test, loom))]
mod loom_name {
    use loom::sync::Arc;
    use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    /// The watchdog's name hand-off between the signal handler (on the core's OS
    /// thread) and the tick: a one-slot mailbox. The tick never reads a half-written
    /// slot, and the handler never overwrites one the tick has not taken.
    #[test]
    fn loom_name_hand_off() {
        loom::model(|| {
            let ready = Arc::new(AtomicBool::new(false));
            let ptr = Arc::new(AtomicU64::new(0));
            let len = Arc::new(AtomicU64::new(0));
            let (r, p, l) = (ready.clone(), ptr.clone(), len.clone());
            let handler = loom::thread::spawn(move || {
                // Two hand-offs (two reports): each only into an empty slot.
                for name in [1u64, 2] {
                    if !r.load(Ordering::Acquire) {
                        p.store(name * 100, Ordering::Relaxed);
                        l.store(name, Ordering::Relaxed);
                        r.store(true, Ordering::Release);
                    }
                }
            });
            // The tick takes whatever is there, twice.
            for _ in 0..2 {
                if ready.load(Ordering::Acquire) {
                    let (p, l) = (ptr.load(Ordering::Relaxed), len.load(Ordering::Relaxed));
                    assert_eq!(p, l * 100, "a torn name: ptr {p}, len {l}");
                    ready.store(false, Ordering::Release);
                }
            }
            handler.join().unwrap();
        });
    }
}
