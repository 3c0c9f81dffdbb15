//! Priorities and the run-queue levels they map to.

/// The most urgent priority.
pub const MAX_PRIORITY: u8 = 63;
/// The priority of a thread whose builder names none.
pub const DEFAULT_PRIORITY: u8 = 32;

/// Run-queue level of a priority: level 0 is the most urgent.
pub(crate) fn level_of(priority: u8) -> u8 {
    MAX_PRIORITY - priority
}
