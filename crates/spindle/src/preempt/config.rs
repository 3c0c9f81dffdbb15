//! A runtime's preemption settings (set through `RuntimeBuilder`) and their check.

use std::time::Duration;

use super::{DEFAULT_TICK, DEFAULT_TIME_SLICE, DEFAULT_WATCHDOG_SLICES};
use crate::error::ConfigError;

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
