//! The runtime's fixed limits.

/// Most cores a runtime can have over its lifetime (retired cores are reused by
/// `add_core` of the same type). One bit per core in a `u64` mask.
pub(crate) const MAX_CORES: usize = 64;

/// Most core types a runtime can have.
pub(crate) const MAX_TYPES: usize = 16;
