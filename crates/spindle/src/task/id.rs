//! Thread ids: a slot index and its generation, the one reference to a thread the
//! runtime keeps (handles, waiters, joiners, timers, system-call slots), packed in
//! one way: generation in the high 32 bits, index in the low 32 ([`ThreadId::as_u64`]).
//! A word that must be non-zero (0 meaning "none") sets [`PRESENT`], which no slot
//! index reaches.

use std::fmt;

/// Set in a word that names a thread and must not be 0; slot indices stay below it.
pub(crate) const PRESENT: u64 = 1 << 31;

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

    /// The id [`as_u64`](ThreadId::as_u64) packed.
    pub(crate) const fn from_u64(w: u64) -> ThreadId {
        ThreadId {
            index: w as u32,
            generation: (w >> 32) as u32,
        }
    }

    /// The id as a word that is never 0: [`as_u64`](ThreadId::as_u64) with
    /// [`PRESENT`] set.
    pub(crate) const fn as_present_word(self) -> u64 {
        ((self.generation as u64) << 32 | self.index as u64) | PRESENT
    }

    /// The id a [`as_present_word`](ThreadId::as_present_word) word names; `None`
    /// for 0.
    pub(crate) const fn from_present_word(w: u64) -> Option<ThreadId> {
        if w == 0 {
            return None;
        }
        Some(ThreadId::from_u64(w & !PRESENT))
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
