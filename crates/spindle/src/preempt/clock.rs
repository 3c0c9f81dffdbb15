//! The run-time side of a runtime's preemption settings: the tick counter every core
//! copies at its switches, the run word a core publishes for its running thread, and
//! the state the tick keeps between ticks.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use super::config::Config;
use super::watchdog::Watch;
use crate::limits::MAX_CORES;

/// `CoreClock::run`: a thread is running.
pub(super) const RUN_RUNNING: u64 = 1 << 63;
/// `CoreClock::run`: the running thread is preemptible.
pub(super) const RUN_PREEMPTIBLE: u64 = 1 << 62;
/// `CoreClock::run`: the low 32 bits are the slice in ticks.
pub(super) const RUN_SLICE: u64 = u32::MAX as u64;

/// The run-time side of a runtime's preemption settings, and the tick's state.
pub(crate) struct Clock {
    pub(crate) config: Config,
    pub(super) tick_ns: u64,
    /// The run word of a thread with the default slice and preemptibility.
    default_run: u64,
    pub(super) epoch: Instant,
    /// Ticks since `epoch`, as of the last tick. Cores copy it at every switch.
    pub(super) now: CachePadded<AtomicU64>,
    /// What the tick remembers about each core between ticks (the tick's own state;
    /// the lock is uncontended).
    pub(super) watch: Mutex<Vec<Watch>>,
    /// The ticker OS thread, while it runs.
    pub(super) ticker: Mutex<Option<Ticker>>,
}

/// The ticker OS thread and its stop flag.
pub(super) struct Ticker {
    pub(super) stop: Arc<AtomicBool>,
    pub(super) thread: std::thread::JoinHandle<()>,
}

impl Clock {
    /// The tick period in nanoseconds.
    pub(crate) fn tick_ns(&self) -> u64 {
        self.tick_ns
    }

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
