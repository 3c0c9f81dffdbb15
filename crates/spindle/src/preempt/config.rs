//! A runtime's preemption settings (set through `RuntimeBuilder`) and their check.

use std::time::Duration;

use super::{
    DEFAULT_HANDOFF_TICKS, DEFAULT_SPARE_THREADS, DEFAULT_TICK, DEFAULT_TIME_SLICE,
    DEFAULT_WATCHDOG_SLICES,
};
use crate::error::ConfigError;

/// Preemption settings of a runtime (set through `RuntimeBuilder`).
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) time_slice: Duration,
    pub(crate) tick: Duration,
    pub(crate) ticker: bool,
    pub(crate) preemptible: bool,
    pub(crate) watchdog_slices: u32,
    /// Whether a worker core whose OS thread blocks in the kernel goes to a spare OS
    /// thread (`sched::carrier`).
    pub(crate) handoff: bool,
    /// Ticks without a schedule point, its OS thread asleep in the kernel, after which
    /// it does.
    pub(crate) handoff_ticks: u32,
    /// At most this many OS threads beyond one per core (`runtime::carriers`).
    pub(crate) spare_threads: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            time_slice: DEFAULT_TIME_SLICE,
            tick: DEFAULT_TICK,
            ticker: true,
            preemptible: false,
            watchdog_slices: DEFAULT_WATCHDOG_SLICES,
            handoff: true,
            handoff_ticks: DEFAULT_HANDOFF_TICKS,
            spare_threads: DEFAULT_SPARE_THREADS,
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
        if self.handoff_ticks == 0 {
            return Err(ConfigError::HandoffTicks);
        }
        if self.handoff && self.spare_threads == 0 {
            return Err(ConfigError::SpareThreads);
        }
        if self.watchdog_slices == 0 {
            return Err(ConfigError::WatchdogSlices);
        }
        Ok(())
    }
}
