//! Time slices, the tick, asynchronous preemption and the watchdog.
//!
//! ## Time slices and the tick
//!
//! Every thread has a time slice (default [`DEFAULT_TIME_SLICE`]), kept in its TCB as
//! a number of ticks. Each core publishes, with relaxed stores to a cache line of its
//! own ([`CoreClock`]), a *schedule point* counter (bumped at every switch, and when a
//! yield keeps the same thread running), the tick at which the running thread's run
//! began, and the running thread's id, slice and preemptibility. The slice start is a
//! copy of `CoreClock::now`, the tick counter, which the tick writes into every core's
//! line: a switch reads a word of its own line instead of the clock.
//!
//! [`tick`] runs every tick (default [`DEFAULT_TICK`]), for now on an OS thread named
//! `spindle-ticker` ([`start_ticker`]). For each core whose schedule point counter did
//! not move and whose thread is over its slice, it sets the core's reschedule flag
//! (`Core::resched`), which the thread honours at its next runtime call (every
//! [`PreemptGuard`] drop and [`check`]: one relaxed load) or `preempt_point()`. If the
//! flag is not honoured within one more tick and the thread is preemptible, the tick
//! sends the core's OS thread [`PREEMPT_SIGNAL`].
//!
//! ## The preempt count and the signal handler
//!
//! Each thread has a preempt count (`Tcb::preempt_count`), raised by the runtime's own
//! critical sections ([`PreemptGuard`]: spawn, park/unpark, wakes, timers, scheduling,
//! the `sync` types' internal locks). Only the thread itself changes it, with plain
//! loads and stores; the signal handler runs on the same OS thread, so compiler
//! fences order the two. The handler rewrites the interrupted context only when all of
//! these hold:
//!
//! - the interrupted stack pointer lies in a spindle stack block whose thread is the
//!   one the core published as running (not the scheduler context, not a signal
//!   stack);
//! - that thread opted in (`Builder::preemptible`) and its preempt count is zero;
//! - the interrupted instruction lies in the main executable's code (found once with
//!   `dl_iterate_phdr`), so code in shared libraries — libc's `malloc` holding an arena
//!   lock, the vDSO — is never interrupted, and not in the trampoline itself;
//! - the thread is not panicking, and its stack has room for the trampoline's frame.
//!
//! Otherwise it only sets the reschedule flag. To preempt, the handler pushes the
//! interrupted instruction pointer below the 128-byte red zone of the interrupted
//! stack, points the context's stack pointer at it and its instruction pointer at the
//! trampoline, and raises the thread's preempt count. On return from the handler the
//! kernel restores every other register exactly; the trampoline (`global_asm!` below)
//! saves the flags, the general registers and the x87/SSE/AVX state (`xsave64` with
//! the XCR0 mask, or `fxsave64`), calls [`preempted`] — which yields — restores all
//! of it and returns to the interrupted instruction with the original stack pointer.
//!
//! ## The watchdog
//!
//! A core whose schedule point counter has not moved for `watchdog_slices` slices of
//! its running thread (a thread that neither yields nor can be preempted, or one
//! blocked in the kernel) is reported once per occurrence through `tracing` at warn
//! level, with the thread's name, id and core. The tick may not touch the thread's
//! name (the thread may exit and free it at any moment), so it asks the signal handler,
//! which runs on the core's own OS thread and therefore never concurrently with that
//! thread, to take a reference to the name for it (a one-slot hand-off in
//! [`CoreClock`]).

pub(crate) mod code;
mod signal;

use std::arch::global_asm;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, compiler_fence};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::error::ConfigError;
use crate::loom::Ordering;
use crate::runtime::Shared;
use crate::sched::clock::CoreClock;
use crate::sched::{After, Core, CoreState, MAX_CORES};
use crate::stack::{block_of, guard_size};
use crate::task::current::current_tcb;
use crate::task::tcb::{Name, State, Tcb};

/// Default time slice of a thread.
pub const DEFAULT_TIME_SLICE: Duration = Duration::from_millis(10);

/// Default period of the tick.
pub const DEFAULT_TICK: Duration = Duration::from_millis(1);

/// Default number of its own slices a thread may hold its core without a schedule
/// point before the watchdog reports it.
pub const DEFAULT_WATCHDOG_SLICES: u32 = 10;

/// The signal the tick sends a core's OS thread to preempt its running thread. SIGURG
/// is ignored by default and rarely used by programs (Go's runtime made the same
/// choice).
pub const PREEMPT_SIGNAL: libc::c_int = libc::SIGURG;

/// `CoreClock::run`: a thread is running.
const RUN_RUNNING: u64 = 1 << 63;
/// `CoreClock::run`: the running thread is preemptible.
const RUN_PREEMPTIBLE: u64 = 1 << 62;
/// `CoreClock::run`: the low 32 bits are the slice in ticks.
const RUN_SLICE: u64 = u32::MAX as u64;

/// Bytes below the interrupted stack pointer the trampoline may not touch (the
/// System V red zone).
const RED_ZONE: usize = 128;

/// Stack the trampoline's call into the scheduler may use, beyond the saved state
/// (the frame walk of `code::frames_hold_no_std` included).
const YIELD_STACK: usize = 8192;

/// Preemption settings of a runtime (set through `RuntimeBuilder`).
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) time_slice: Duration,
    pub(crate) tick: Duration,
    pub(crate) ticker: bool,
    pub(crate) preemptible: bool,
    pub(crate) watchdog_slices: u32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            time_slice: DEFAULT_TIME_SLICE,
            tick: DEFAULT_TICK,
            ticker: true,
            preemptible: false,
            watchdog_slices: DEFAULT_WATCHDOG_SLICES,
        }
    }
}

impl Config {
    /// Checks the settings.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.tick.is_zero() {
            return Err(ConfigError::Tick);
        }
        if self.time_slice.is_zero() {
            return Err(ConfigError::TimeSlice);
        }
        if self.watchdog_slices == 0 {
            return Err(ConfigError::WatchdogSlices);
        }
        Ok(())
    }
}

/// The run-time side of a runtime's preemption settings, and the tick's state.
pub(crate) struct Clock {
    pub(crate) config: Config,
    tick_ns: u64,
    /// The run word of a thread with the default slice and preemptibility.
    default_run: u64,
    epoch: Instant,
    /// Ticks since `epoch`, as of the last tick. Cores copy it at every switch.
    now: CachePadded<AtomicU64>,
    /// What the tick remembers about each core between ticks (the tick's own state;
    /// the lock is uncontended).
    watch: Mutex<Vec<Watch>>,
    /// The ticker OS thread, while it runs.
    ticker: Mutex<Option<Ticker>>,
}

struct Ticker {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Clock {
    pub(crate) fn new(config: Config) -> Clock {
        let tick_ns = u64::try_from(config.tick.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut clock = Clock {
            config,
            tick_ns,
            default_run: 0,
            epoch: Instant::now(),
            now: CachePadded::new(AtomicU64::new(0)),
            watch: Mutex::new(vec![Watch::default(); MAX_CORES]),
            ticker: Mutex::new(None),
        };
        clock.default_run = clock.compute_run_word(None, None);
        clock
    }

    /// Whether threads are preemptible unless their builder says otherwise.
    pub(crate) fn default_preemptible(&self) -> bool {
        self.config.preemptible
    }

    /// The `CoreClock::run` word of a thread with this slice (`None`: the runtime's
    /// default) and preemptibility (`None`: the default).
    pub(crate) fn run_word(&self, slice: Option<Duration>, preemptible: Option<bool>) -> u64 {
        if slice.is_none() && preemptible.is_none() {
            // The common case, computed once (no 128-bit division on a spawn).
            return self.default_run;
        }
        self.compute_run_word(slice, preemptible)
    }

    fn compute_run_word(&self, slice: Option<Duration>, preemptible: Option<bool>) -> u64 {
        let slice = slice.unwrap_or(self.config.time_slice);
        let ticks = slice
            .as_nanos()
            .div_ceil(self.tick_ns as u128)
            .clamp(1, RUN_SLICE as u128);
        let mut w = RUN_RUNNING | ticks as u64;
        if preemptible.unwrap_or(self.config.preemptible) {
            w |= RUN_PREEMPTIBLE;
        }
        w
    }
}

const NAME_NONE: u8 = 0;
const NAME_STATIC: u8 = 1;
const NAME_SHARED: u8 = 2;

// ---------------------------------------------------------------------------------
// The preempt count.

// ---------------------------------------------------------------------------------
// The tick.

/// What the tick remembers about one core.
#[derive(Clone, Copy, Default)]
struct Watch {
    /// The schedule point counter seen last.
    points: u64,
    /// Tick at which this run got the reschedule flag.
    flagged_at: Option<u64>,
    /// The watchdog reported (or is reporting) this run.
    reported: bool,
    /// CPU time of the core's OS thread when the flag was set, in ns.
    cpu_at_flag: u64,
    /// A report waiting for the thread's name: (tick asked, thread id, ms stuck,
    /// slices, what).
    pending: Option<Pending>,
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

/// One tick: reads what every core published, sets the reschedule flag of cores whose
/// thread is over its slice, signals those that did not honour it within a tick and
/// run a preemptible thread, and runs the watchdog.
pub(crate) fn tick(shared: &Shared, now: Instant) {
    let clock = &shared.clock;
    let t = u64::try_from(
        now.saturating_duration_since(clock.epoch).as_nanos() / clock.tick_ns as u128,
    )
    .unwrap_or(u64::MAX);
    clock.now.store(t, Ordering::Relaxed);
    let mut watch = clock.watch.lock().unwrap_or_else(|e| e.into_inner());
    let n = shared.hwm.load(Ordering::Acquire);
    for core in &shared.cores[..n] {
        let w = &mut watch[core.id];
        if let Some(p) = w.pending {
            finish_report(core, p, w);
        }
        // The hypercore runs the tick itself (its running thread is the ticker), and
        // its maintenance threads are cooperative: only worker cores are watched.
        // A leaving core is watched too: its thread must reach the schedule point
        // where the core halts.
        if !matches!(core.state(), CoreState::Active | CoreState::Leaving)
            || Some(core.id) == shared.hyper
        {
            w.flagged_at = None;
            core.clock.now.store(t, Ordering::Relaxed);
            continue;
        }
        let k = &core.clock;
        k.now.store(t, Ordering::Relaxed);
        // Acquire: pairs with the release in `bump`, so `start` and `run` are at
        // least as new as `points` (see `loom_tick_flag`).
        let points = k.points.load(Ordering::Acquire);
        let run = k.run.load(Ordering::Relaxed);
        if points != w.points {
            w.points = points;
            w.flagged_at = None;
            w.reported = false;
        }
        if run & RUN_RUNNING == 0 {
            continue;
        }
        let slice = (run & RUN_SLICE).max(1);
        let elapsed = t.saturating_sub(k.start.load(Ordering::Relaxed));
        // The start is a tick count, so the run began up to a tick after it: a run
        // gets between `slice - 1` and `slice` ticks before the request (runs that
        // follow a preemption start right after a tick, and get their full slice).
        if elapsed < slice {
            continue;
        }
        match w.flagged_at {
            None => {
                // Release: what the tick saw is visible to whoever sees the flag.
                core.resched.store(true, Ordering::Release);
                w.flagged_at = Some(t);
                w.cpu_at_flag = thread_cpu_ns(k.tid.load(Ordering::Relaxed));
            }
            Some(f) if t > f && run & RUN_PREEMPTIBLE != 0 => {
                core.resched.store(true, Ordering::Release);
                signal(k);
            }
            Some(_) => {}
        }
        // The watchdog counts from the request: a thread that honours it is never
        // reported, even when the tick itself ran late (then `elapsed` jumps).
        let limit = slice.saturating_mul(u64::from(clock.config.watchdog_slices));
        let ignored = w.flagged_at.map_or(0, |f| t - f);
        if !w.reported && elapsed >= limit && ignored + slice >= limit {
            // Only time the core's OS thread really ran counts (on a loaded machine
            // the OS may keep it off the CPU): since the request it must have used
            // the rest of the limit, or be asleep in the kernel.
            let tid = k.tid.load(Ordering::Relaxed);
            let used = thread_cpu_ns(tid).saturating_sub(w.cpu_at_flag);
            let spun = used >= (limit - slice).saturating_mul(clock.tick_ns);
            let blocked = !spun && blocked_in_kernel(tid);
            if !spun && !blocked {
                continue;
            }
            w.reported = true;
            let what = if blocked {
                "its core's OS thread is blocked in the kernel (a blocking system call, or a \
                 std lock): run blocking calls with spindle::blocking(..) (or use \
                 spindle::net and spindle::fs), and use spindle::sync instead of std locks, \
                 so that only the thread waits, not its core"
            } else if run & RUN_PREEMPTIBLE != 0 {
                "it is preemptible but could not be preempted (it runs in a shared library, \
                 in the standard library or in the runtime): call spindle::preempt_point() in \
                 its loop"
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
    }
}

/// Ticks a watchdog report waits for the signal handler to hand over the thread's
/// name (the core's OS thread may be off the CPU for a while).
const NAME_WAIT_TICKS: u32 = 50;

/// Emits a pending watchdog report once the handler handed over the name, or after
/// `NAME_WAIT_TICKS` ticks without it.
fn finish_report(core: &Core, mut p: Pending, w: &mut Watch) {
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
fn thread_cpu_ns(tid: i32) -> u64 {
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

/// Asks `core` to reschedule now, and sends the preemption signal to its OS thread:
/// a preemptible thread yields at its next safe point, any other at its next runtime
/// call (the shutdown's way to stop a core).
pub(crate) fn preempt_now(core: &Core) {
    core.resched.store(true, Ordering::Release);
    signal(&core.clock);
}

/// The thread `core` runs, for a report: "thread 'name' (id N)", its name taken
/// through the signal handler's hand-off (the only safe way to read the name of a
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

/// Sends the preemption signal to the core's OS thread (unless another SIGURG handler
/// replaced spindle's: `signal::may_send`). At worst the thread is gone (ESRCH) or its
/// id was reused by another of our threads, whose handler finds no spindle thread to
/// preempt.
fn signal(k: &CoreClock) {
    let tid = k.tid.load(Ordering::Relaxed);
    if tid == 0 || !signal::may_send() {
        return;
    }
    if signal::send(tid, PREEMPT_SIGNAL) {
        k.sent
            .store(k.sent.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------------
// The ticker OS thread.

/// Starts the OS thread that calls [`tick`] every tick, unless the runtime was built
/// with `ticker(false)`. **The one place the ticker starts**: the hypercore replaces
/// this thread by a maintenance thread that calls `tick`.
pub(crate) fn start_ticker(shared: &Arc<Shared>) -> std::io::Result<()> {
    install();
    // With a hypercore, the tick is its `spindle-ticker` maintenance thread
    // (`maintenance::start`); this OS thread is the fallback without one, where a
    // ticker on a worker core could not interrupt the core it runs on.
    if !shared.clock.config.ticker || shared.hyper.is_some() {
        return Ok(());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let sh = shared.clone();
    let period = shared.clock.config.tick;
    let thread = std::thread::Builder::new()
        .name("spindle-ticker".into())
        .spawn(move || {
            let mut next = Instant::now();
            while !s.load(Ordering::Acquire) {
                next += period;
                let now = Instant::now();
                if next > now {
                    std::thread::park_timeout(next - now);
                    continue_if_early(&s, next);
                } else {
                    // Late (a loaded machine): do not try to catch up.
                    next = now;
                }
                if s.load(Ordering::Acquire) {
                    break;
                }
                tick(&sh, Instant::now());
            }
        })?;
    *shared
        .clock
        .ticker
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(Ticker { stop, thread });
    Ok(())
}

/// Parks until `next` (a `park_timeout` may return early), unless stopped.
fn continue_if_early(stop: &AtomicBool, next: Instant) {
    loop {
        let now = Instant::now();
        if now >= next || stop.load(Ordering::Acquire) {
            return;
        }
        std::thread::park_timeout(next - now);
    }
}

/// Stops the ticker OS thread and waits for it (shutdown).
pub(crate) fn stop_ticker(shared: &Shared) {
    let t = shared
        .clock
        .ticker
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some(t) = t {
        t.stop.store(true, Ordering::Release);
        t.thread.thread().unpark();
        let _ = t.thread.join();
    }
    for c in shared.cores.iter() {
        drop(take_name(&c.clock));
    }
}

// ---------------------------------------------------------------------------------
// The signal handler and the trampoline.

/// Save-area kind: 0 = `fxsave64`, 1 = `xsave64`. Written once by `install`, before
/// any preemption signal is sent; read by the trampoline.
static XSAVE_MODE: AtomicU64 = AtomicU64::new(0);
/// Bytes the trampoline reserves for the vector/x87 state (a multiple of 64).
static XSAVE_SIZE: AtomicU64 = AtomicU64::new(512);
/// The `xsave64`/`xrstor64` feature mask: XCR0, every state the OS enabled.
static XSAVE_MASK: AtomicU64 = AtomicU64::new(0);
/// Code ranges of the main executable (`[start, end)` pairs).
static TEXT: [AtomicUsize; 16] = [const { AtomicUsize::new(0) }; 16];
static TEXT_LEN: AtomicUsize = AtomicUsize::new(0);
static INSTALL: Once = Once::new();

/// Installs the preemption signal handler and measures the save area, once per
/// process.
pub(crate) fn install() {
    INSTALL.call_once(|| {
        measure_xsave();
        find_text();
        signal::install(PREEMPT_SIGNAL, on_signal as *const () as usize);
    });
}

/// Fills `XSAVE_*` from CPUID: leaf 1 ECX bit 27 (OSXSAVE: the OS enabled XSAVE),
/// XCR0 (the enabled states) and leaf 0xD sub-leaf 0 EBX (the area size they need).
fn measure_xsave() {
    use std::arch::x86_64::{__cpuid, __cpuid_count, _xgetbv};
    // cpuid leaf 1 exists on every x86_64 CPU.
    let leaf1 = __cpuid(1);
    if leaf1.ecx & (1 << 27) == 0 {
        return;
    }
    // SAFETY: OSXSAVE is set, so xgetbv is enabled and XCR0 readable.
    let xcr0 = unsafe { _xgetbv(0) };
    // Leaf 0xD exists when XSAVE is supported.
    let size = __cpuid_count(0xD, 0).ebx as u64;
    XSAVE_MASK.store(xcr0, Ordering::Relaxed);
    XSAVE_SIZE.store(size.div_ceil(64) * 64, Ordering::Relaxed);
    XSAVE_MODE.store(1, Ordering::Relaxed);
}

/// Records the executable code ranges of the main program (the first object
/// `dl_iterate_phdr` reports).
fn find_text() {
    /// The `dl_iterate_phdr` callback.
    ///
    /// # Safety
    ///
    /// Called by the loader with a valid `dl_phdr_info`.
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        _data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid info record whose program headers are readable during the call.
        unsafe {
            let base = (*info).dlpi_addr as usize;
            let phdrs = std::slice::from_raw_parts((*info).dlpi_phdr, (*info).dlpi_phnum as usize);
            let mut n = 0;
            for ph in phdrs {
                if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 && n + 2 <= TEXT.len()
                {
                    let start = base + ph.p_vaddr as usize;
                    TEXT[n].store(start, Ordering::Relaxed);
                    TEXT[n + 1].store(start + ph.p_memsz as usize, Ordering::Relaxed);
                    n += 2;
                }
            }
            TEXT_LEN.store(n, Ordering::Release);
        }
        // Stop after the first object: the main program.
        1
    }
    // SAFETY: `visit` matches the callback type and only reads the records it is given.
    unsafe { libc::dl_iterate_phdr(Some(visit), std::ptr::null_mut()) };
}

/// Whether `ip` lies in the main executable's code.
#[inline]
fn in_text(ip: usize) -> bool {
    let n = TEXT_LEN.load(Ordering::Acquire);
    let mut i = 0;
    while i < n {
        if ip >= TEXT[i].load(Ordering::Relaxed) && ip < TEXT[i + 1].load(Ordering::Relaxed) {
            return true;
        }
        i += 2;
    }
    false
}

/// Whether `ip` lies in the trampoline.
#[inline]
fn in_trampoline(ip: usize) -> bool {
    let start = spindle_preempt_trampoline_v1 as *const () as usize;
    let end = spindle_preempt_trampoline_end_v1 as *const () as usize;
    ip >= start && ip < end
}

/// Whether the interrupted instruction `ip` may be preempted: in the main
/// executable's code, not in the trampoline, and not in a function of `std`
/// (`code`; without a symbol table, nowhere). Async-signal-safe.
#[inline]
fn may_interrupt(ip: usize) -> bool {
    in_text(ip) && !in_trampoline(ip) && code::available() && code::kind_of(ip) != code::Kind::Std
}

/// The preemption signal handler. Async-signal-safe: loads, stores, a binary search
/// and one atomic increment (a name's reference count); no allocation, no lock, no
/// system call. A SIGURG that is not spindle's goes to the handler installed before
/// (`signal::chain`).
extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    if !unsafe { signal::is_ours(info) } {
        // SAFETY: the kernel's own arguments, forwarded.
        unsafe { signal::chain(sig, info, ctx) };
        return;
    }
    let uc = ctx.cast::<libc::ucontext_t>();
    // SAFETY: the kernel passes the interrupted context of an SA_SIGINFO handler; it is ours to read and change until we return.
    let gregs = unsafe { &mut (*uc).uc_mcontext.gregs };
    let ip = gregs[libc::REG_RIP as usize] as usize;
    let sp = gregs[libc::REG_RSP as usize] as usize;
    let Some((base, size)) = block_of(sp) else {
        // The scheduler context, a signal stack, or not a core at all.
        return;
    };
    let tcb = Tcb::at_top_of(base, size);
    // SAFETY: `sp` lies in this block, so the interrupted code runs on this thread's stack: the thread is alive, and (same OS thread) cannot change while we run. Its core lives as long as the runtime.
    unsafe {
        if (*tcb).core.get().is_null() || (*tcb).state() != State::Running {
            return;
        }
        let core = Core::of(tcb);
        let k = &core.clock;
        if k.id.load(Ordering::Relaxed) != (*tcb).id_u64() {
            // Mid-switch: the core already published the next thread.
            return;
        }
        let count = (*tcb).preempt_count.load(Ordering::Relaxed);
        if count == 0 && k.want_name.load(Ordering::Relaxed) {
            hand_over_name(k, tcb);
        }
        if !(*tcb).preemptible {
            return;
        }
        let need =
            RED_ZONE + 8 + 16 * 8 + XSAVE_SIZE.load(Ordering::Relaxed) as usize + 64 + YIELD_STACK;
        if count != 0
            || !may_interrupt(ip)
            || sp < base + guard_size() + need
            || std::thread::panicking()
        {
            core.resched.store(true, Ordering::Relaxed);
            return;
        }
        // Below the red zone, push the interrupted instruction pointer, as a `call`
        // at that point would have; the trampoline's `ret 128` pops it and skips the
        // red zone again.
        let new_sp = sp - RED_ZONE - 8;
        (new_sp as *mut usize).write(ip);
        gregs[libc::REG_RSP as usize] = new_sp as i64;
        gregs[libc::REG_RIP as usize] = spindle_preempt_trampoline_v1 as *const () as usize as i64;
        // Raised until `preempted` has yielded: no second preemption in between.
        (*tcb).preempt_count.store(1, Ordering::Relaxed);
    }
}

/// Hands the tick a reference to the name of `tcb` (the handler's side of the
/// one-slot hand-off in `CoreClock`).
///
/// # Safety
///
/// Called by the signal handler on `tcb`'s OS thread while `tcb` runs outside any
/// runtime critical section (preempt count zero), so its name is alive.
unsafe fn hand_over_name(k: &CoreClock, tcb: *mut Tcb) {
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

/// Called by the trampoline on the preempted thread's stack: yields, unless a frame
/// of `std` between the interrupted instruction and the thread's closure may hold a
/// lock of the OS thread (`code::frames_hold_no_std`); then it only leaves the
/// reschedule flag set and returns to the thread.
extern "C" fn preempted() {
    let Some(me) = current_tcb() else {
        // The handler only redirects spindle threads.
        std::process::abort()
    };
    let trampoline = (
        spindle_preempt_trampoline_v1 as *const () as usize,
        spindle_preempt_trampoline_end_v1 as *const () as usize,
    );
    // SAFETY: we are the running thread `me`, outside any runtime critical section (the handler checked the count was zero, then raised it to 1 for us).
    unsafe {
        if code::frames_hold_no_std(trampoline, (*me).user_base.get()) {
            let k = &crate::sched::Core::of(me).clock;
            // Single writer: the core's OS thread (this handler's and trampoline's).
            k.preemptions
                .store(k.preemptions.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            (*me).set_state(State::Runnable);
            crate::sched::Core::of(me).schedule(me, After::Requeue);
        } else {
            crate::sched::Core::of(me)
                .resched
                .store(true, Ordering::Relaxed);
        }
        compiler_fence(Ordering::SeqCst);
        (*me).preempt_count.store(0, Ordering::Relaxed);
    }
}

unsafe extern "C" {
    fn spindle_preempt_trampoline_v1();
    fn spindle_preempt_trampoline_end_v1();
}

// The trampoline a preempted thread resumes in. The handler made it look as if the
// interrupted instruction had called it from 128 bytes further down the stack: on
// entry every register holds what the thread had when the signal came, except
//   rsp = interrupted rsp - 136, [rsp] = interrupted rip,
// and [rsp + 8, rsp + 136) is the thread's red zone, which nothing here touches.
//
// Its CFI describes the interrupted frame as its caller, so that `preempted` can walk
// the thread's frames with the unwinder (`code::frames_hold_no_std`): the CFA is the
// interrupted rsp (entry rsp + 136), the "return address" is at CFA - 136, and each
// saved register is recorded as it is pushed. `.cfi_signal_frame` tells the unwinder
// that this return address is the interrupted instruction itself, not the one after
// a call (it must not look up `rip - 1`).
global_asm!(
    ".text",
    ".p2align 4",
    ".globl spindle_preempt_trampoline_v1",
    ".hidden spindle_preempt_trampoline_v1",
    ".type spindle_preempt_trampoline_v1, @function",
    "spindle_preempt_trampoline_v1:",
    ".cfi_startproc",
    ".cfi_signal_frame",
    // CFA = the interrupted rsp; the interrupted rip is at CFA - 136.
    ".cfi_def_cfa rsp, 136",
    ".cfi_offset rip, -136",
    // Save rflags first, before any instruction below changes them.
    "pushfq",
    ".cfi_adjust_cfa_offset 8",
    // Save the fifteen general registers other than rsp, recording where each went
    // (CFA - 136 - 8 for the flags, then 8 bytes further down per push).
    "push rax",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset rax, -152",
    "push rcx",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset rcx, -160",
    "push rdx",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset rdx, -168",
    "push rbx",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset rbx, -176",
    "push rbp",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset rbp, -184",
    "push rsi",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset rsi, -192",
    "push rdi",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset rdi, -200",
    "push r8",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset r8, -208",
    "push r9",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset r9, -216",
    "push r10",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset r10, -224",
    "push r11",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset r11, -232",
    "push r12",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset r12, -240",
    "push r13",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset r13, -248",
    "push r14",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset r14, -256",
    "push r15",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset r15, -264",
    // rbx (saved above, callee-saved across the call below) keeps the address of the
    // saved registers, to come back to after the vector state.
    "mov rbx, rsp",
    // rsp is realigned below: from here the CFA is found through rbx (rsp + 264 at
    // this point).
    ".cfi_def_cfa_register rbx",
    // Reserve the vector/x87 save area: its size (a multiple of 64) from XSAVE_SIZE.
    "sub rsp, qword ptr [rip + {size}]",
    // Align it to 64 bytes, as xsave64 requires (fxsave64 needs 16).
    "and rsp, -64",
    // XSAVE_MODE = 0: no XSAVE on this machine, use fxsave64.
    "cmp qword ptr [rip + {mode}], 0",
    "je 2f",
    // rax = 0, to clear the XSAVE header below.
    "xor eax, eax",
    // Zero the 64-byte XSAVE header at offset 512: xsave64 writes only its first
    // word (XSTATE_BV), and xrstor64 faults if the reserved bytes after it are not
    // zero (this is stack garbage).
    "mov qword ptr [rsp + 512], rax",
    "mov qword ptr [rsp + 520], rax",
    "mov qword ptr [rsp + 528], rax",
    "mov qword ptr [rsp + 536], rax",
    "mov qword ptr [rsp + 544], rax",
    "mov qword ptr [rsp + 552], rax",
    "mov qword ptr [rsp + 560], rax",
    "mov qword ptr [rsp + 568], rax",
    // edx:eax = the feature mask (XCR0): low half into eax...
    "mov eax, dword ptr [rip + {mask}]",
    // ... and high half into edx.
    "mov edx, dword ptr [rip + {mask} + 4]",
    // Save every enabled state component: x87, SSE, AVX, AVX-512, ...
    "xsave64 [rsp]",
    // Skip the fxsave64 path.
    "jmp 3f",
    "2:",
    // No XSAVE: save x87, MXCSR and xmm0-xmm15.
    "fxsave64 [rsp]",
    "3:",
    // The ABI requires the direction flag clear at a call; the thread may have set it
    // (its value is in the saved rflags).
    "cld",
    // Yield. rsp is 64-byte aligned, so 16-byte aligned at the call as the ABI wants.
    "call {preempted}",
    // Back, possibly on another core. Same test as above for the restore.
    "cmp qword ptr [rip + {mode}], 0",
    "je 4f",
    // edx:eax = the same feature mask: low half...
    "mov eax, dword ptr [rip + {mask}]",
    // ... and high half.
    "mov edx, dword ptr [rip + {mask} + 4]",
    // Restore every state component saved above.
    "xrstor64 [rsp]",
    // Skip the fxrstor64 path.
    "jmp 5f",
    "4:",
    // No XSAVE: restore x87, MXCSR and xmm0-xmm15.
    "fxrstor64 [rsp]",
    "5:",
    // Drop the save area: rsp points at the saved general registers again.
    "mov rsp, rbx",
    // The CFA is found through rsp again.
    ".cfi_def_cfa_register rsp",
    // Restore the general registers in reverse order (rbx last of its group, so the
    // pointer it held is no longer needed).
    "pop r15",
    ".cfi_adjust_cfa_offset -8",
    "pop r14",
    ".cfi_adjust_cfa_offset -8",
    "pop r13",
    ".cfi_adjust_cfa_offset -8",
    "pop r12",
    ".cfi_adjust_cfa_offset -8",
    "pop r11",
    ".cfi_adjust_cfa_offset -8",
    "pop r10",
    ".cfi_adjust_cfa_offset -8",
    "pop r9",
    ".cfi_adjust_cfa_offset -8",
    "pop r8",
    ".cfi_adjust_cfa_offset -8",
    "pop rdi",
    ".cfi_adjust_cfa_offset -8",
    "pop rsi",
    ".cfi_adjust_cfa_offset -8",
    "pop rbp",
    ".cfi_adjust_cfa_offset -8",
    "pop rbx",
    ".cfi_adjust_cfa_offset -8",
    "pop rdx",
    ".cfi_adjust_cfa_offset -8",
    "pop rcx",
    ".cfi_adjust_cfa_offset -8",
    "pop rax",
    ".cfi_adjust_cfa_offset -8",
    // Restore rflags last: nothing after this changes them (`ret` does not).
    "popfq",
    ".cfi_adjust_cfa_offset -8",
    // Pop the interrupted rip and release the 128-byte red zone: rsp is exactly the
    // interrupted rsp again, and execution continues at the interrupted instruction.
    "ret 128",
    ".cfi_endproc",
    ".size spindle_preempt_trampoline_v1, . - spindle_preempt_trampoline_v1",
    // A label just past the trampoline, for `in_trampoline`.
    ".globl spindle_preempt_trampoline_end_v1",
    ".hidden spindle_preempt_trampoline_end_v1",
    "spindle_preempt_trampoline_end_v1:",
    // Never executed (keeps the label inside .text with something after it).
    "ud2",
    size = sym XSAVE_SIZE,
    mode = sym XSAVE_MODE,
    mask = sym XSAVE_MASK,
    preempted = sym preempted,
);

#[cfg(all(test, loom))]
mod loom_tick_flag {
    //! The tick's flag against a core's schedule points: a reschedule request the
    //! tick makes for a run it saw is never lost — at the end either the flag is
    //! still set (a later runtime call honours it) or the core passed a schedule
    //! point after that run. This needs `points` published with release after the
    //! poll clears the flag, and read with acquire by the tick.
    use loom::sync::Arc;
    use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    #[test]
    fn loom_tick_flag_not_lost() {
        loom::model(|| {
            let points = Arc::new(AtomicU64::new(1));
            let resched = Arc::new(AtomicBool::new(false));
            let (p, r) = (points.clone(), resched.clone());
            let core = loom::thread::spawn(move || {
                // A schedule point: the poll clears the flag, then the switch
                // publishes the new run.
                r.store(false, Ordering::Relaxed);
                p.store(2, Ordering::Release);
                // The new run's first runtime call.
                if r.load(Ordering::Relaxed) {
                    r.store(false, Ordering::Relaxed);
                    p.store(3, Ordering::Release);
                }
            });
            // The tick: sees a run, flags it.
            let seen = points.load(Ordering::Acquire);
            resched.store(true, Ordering::Release);
            core.join().unwrap();
            let end = points.load(Ordering::Relaxed);
            assert!(
                resched.load(Ordering::Relaxed) || end > seen,
                "a reschedule request for run {seen} was lost (points {end})"
            );
        });
    }

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
