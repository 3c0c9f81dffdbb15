//! Thread ids: a slot index and its generation.

use std::fmt;

/// A thread's identifier: slot index and generation. Unique among the live threads of
/// a runtime; an id of a finished and joined thread is never confused with a later
/// thread that reuses its slot, because the generation differs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ThreadId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl ThreadId {
    /// The id of slot `index` at `generation`.
    pub(crate) const fn from_parts(index: u32, generation: u32) -> ThreadId {
        ThreadId { index, generation }
    }

    /// The id as one number: generation in the high 32 bits, slot index in the low 32.
    pub fn as_u64(self) -> u64 {
        (self.generation as u64) << 32 | self.index as u64
    }

    /// Slot index.
    pub fn index(self) -> u32 {
        self.index
    }

    /// Generation of the slot.
    pub fn generation(self) -> u32 {
        self.generation
    }
}

impl fmt::Debug for ThreadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ThreadId({}.{})", self.index, self.generation)
    }
}

impl fmt::Display for ThreadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_u64())
    }
}
