//! Stack blocks: aligned, guarded, pooled; where the TCB sits; `current()`.
//!
//! ## Layout of a block
//!
//! ```text
//! block base + size  +-------------------+  (aligned to `size`)
//!                    | Tcb               |  thread control block, at the top
//!                    +-------------------+
//!                    | closure (if kept) |  the entry closure, moved in at spawn
//!                    +-------------------+  <- initial stack top (16-aligned)
//!                    | stack, grows down |
//!                    |        ...        |
//! block base + page  +-------------------+
//!                    | guard page        |  MADV_GUARD_INSTALL (or PROT_NONE)
//! block base         +-------------------+
//! ```
//!
//! Putting the TCB at the top means an overflow runs into the guard page long before
//! it could reach the TCB, and a thread that uses little stack keeps one resident page
//! (TCB, closure and its first frames share it).
//!
//! ## Finding the TCB from the stack pointer
//!
//! Blocks of different sizes cannot share one mask, so each size class gets its own
//! region of address space, reserved once per process (`PROT_NONE`, no memory
//! committed). The class of a stack pointer is `(sp - base) >> span_shift`; its block
//! size is `MIN_STACK << class`; the block top is `sp` rounded up to that size. That is
//! a subtraction, a shift, a compare and a mask — no thread-local lookup — and the
//! range check also tells a spindle stack from an OS thread's stack.
//!
//! ## Why regions are carved, not mapped per block
//!
//! Each class region is one mapping. Blocks are carved from its bottom in chunks with
//! `mprotect` to read/write; consecutive chunks merge into one VMA, and guard pages
//! made with `MADV_GUARD_INSTALL` do not split it, so a million stacks stay a handful
//! of mappings (`vm.max_map_count` is 65530 by default; a `PROT_NONE` guard per stack
//! would cost two VMAs each and stop near 32k stacks). A fresh mapping costs ~9 µs
//! here; carving a chunk of blocks costs one `mprotect` plus one `madvise` per block,
//! and blocks are then reused from per-core pools without any system call.

pub(crate) mod overflow;

use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::os;

/// Smallest stack block: 16 KiB.
pub const MIN_STACK_SIZE: usize = 16 << 10;
/// Largest stack block: 8 MiB.
pub const MAX_STACK_SIZE: usize = 8 << 20;
/// Default stack block: 64 KiB of address space, of which only touched pages are resident.
pub const DEFAULT_STACK_SIZE: usize = 64 << 10;

const MIN_SHIFT: u32 = MIN_STACK_SIZE.trailing_zeros();
/// Number of size classes: 16 KiB, 32 KiB, ..., 8 MiB.
pub(crate) const NUM_CLASSES: usize = (MAX_STACK_SIZE.trailing_zeros() - MIN_SHIFT + 1) as usize;

/// Address space reserved per class, as a power of two: at most 512 GiB (eight million
/// 64 KiB stacks), at least 16 MiB (two 8 MiB stacks). Without an address-space limit
/// the arena takes the most; under one (`ulimit -v`) it takes the largest span whose
/// arena fits in half of what the process may still map, leaving the rest to the heap
/// and everything else.
const MAX_SPAN_SHIFT: u32 = 39;
const MIN_SPAN_SHIFT: u32 = 24;

/// Environment variable that caps the address space the stack arena reserves per stack
/// size class: bytes, a power of two from 16M to 512G, with an optional `K`, `M` or
/// `G` suffix (e.g. `SPINDLE_STACK_ARENA=1G`). The arena reserves `10 + 1` times it
/// (ten classes, one for alignment).
pub const ARENA_ENV: &str = "SPINDLE_STACK_ARENA";

/// Why the stack arena could not be reserved (once per process, at the first runtime).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ArenaError {
    /// [`ARENA_ENV`] is set to something unusable.
    Env { value: String },
    /// Not even the smallest arena could be mapped.
    Reserve {
        /// The kernel's answer to the last attempt.
        errno: i32,
        /// Bytes of address space the smallest arena needs.
        needed: usize,
        /// The process's address-space limit (`RLIMIT_AS`), if any.
        limit: Option<u64>,
        /// Bytes the process had mapped already.
        mapped: usize,
    },
}

impl fmt::Display for ArenaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArenaError::Env { value } => write!(
                f,
                "{ARENA_ENV}={value:?} is not a usable stack arena size: give the bytes to \
                 reserve per stack size class, a power of two from 16M to 512G (suffix K, M or \
                 G), or unset it"
            ),
            ArenaError::Reserve {
                errno,
                needed,
                limit,
                mapped,
            } => {
                write!(
                    f,
                    "cannot reserve address space for the stack arena ({}): it needs at least \
                     {} MiB ({NUM_CLASSES} stack size classes of {} MiB, plus one for \
                     alignment), ",
                    std::io::Error::from_raw_os_error(*errno),
                    needed >> 20,
                    (1usize << MIN_SPAN_SHIFT) >> 20,
                )?;
                match limit {
                    Some(l) => write!(
                        f,
                        "and this process may map {} MiB in all (ulimit -v), {} MiB of it \
                         already in use: raise the limit (ulimit -v)",
                        l >> 20,
                        mapped >> 20
                    )?,
                    None => f.write_str("and the kernel has no more: free address space")?,
                }
                write!(
                    f,
                    " (the arena takes up to half of what an address-space limit leaves free, \
                     from {} MiB to {} GiB; {ARENA_ENV} caps it)",
                    needed >> 20,
                    ((NUM_CLASSES + 1) << MAX_SPAN_SHIFT) >> 30
                )
            }
        }
    }
}

/// Why a stack block could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StackError {
    /// The arena could not be reserved.
    Arena(ArenaError),
    /// The arena's region for this size class is full: it holds `region` bytes.
    RegionFull { region: usize },
    /// The kernel refused memory or a guard page (`errno`).
    Os(i32),
}

impl From<std::io::Error> for StackError {
    fn from(e: std::io::Error) -> StackError {
        StackError::Os(e.raw_os_error().unwrap_or(libc::ENOMEM))
    }
}
/// Bytes carved from a class region at once (or one block, if blocks are larger).
const CHUNK_BYTES: usize = 2 << 20;

/// How guard pages are installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardMode {
    /// `madvise(MADV_GUARD_INSTALL)` (Linux 6.13+): no extra mapping per stack.
    Madvise,
    /// `mprotect(PROT_NONE)` fallback: two mappings per stack, so `vm.max_map_count`
    /// limits the number of live threads (about 32k at the default 65530).
    Mprotect,
}

impl GuardMode {
    /// The short name used in reports: `"madvise"` or `"mprotect"`.
    pub fn as_str(self) -> &'static str {
        match self {
            GuardMode::Madvise => "madvise",
            GuardMode::Mprotect => "mprotect",
        }
    }
}

impl fmt::Display for GuardMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `MADV_GUARD_INSTALL` from linux/mman.h (not yet in every libc release).
const MADV_GUARD_INSTALL: libc::c_int = 102;

const GUARD_UNKNOWN: u8 = 0;
const GUARD_MADVISE: u8 = 1;
const GUARD_MPROTECT: u8 = 2;

/// Base of the reserved region; 0 until the arena exists. Read on every `current()`.
/// Relaxed is enough: it is written once, before any stack in the region exists, and a
/// thread can only be running on a spindle stack after the OS thread that carved it
/// published that stack to it through the scheduler (a happens-before edge).
static ARENA_BASE: AtomicUsize = AtomicUsize::new(0);
/// `log2` of each class region's span; valid when `ARENA_BASE != 0`.
static ARENA_SHIFT: AtomicUsize = AtomicUsize::new(0);
/// The page size (the guard page's size), cached for the signal handler, which may not
/// call `sysconf`. Valid when `ARENA_BASE != 0`.
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

struct Arena {
    base: usize,
    span_shift: u32,
    /// Bytes carved so far from each class region (bump pointer).
    carved: [AtomicUsize; NUM_CLASSES],
    /// Blocks handed back by runtimes that shut down, per class, trimmed.
    spare: Mutex<[Vec<usize>; NUM_CLASSES]>,
    /// Surplus blocks cores handed over for the reaper, memory not yet released.
    unreleased: Mutex<[Vec<usize>; NUM_CLASSES]>,
    guard: AtomicU8,
    page: usize,
}

static ARENA: OnceLock<Result<Arena, ArenaError>> = OnceLock::new();

fn arena() -> Result<&'static Arena, ArenaError> {
    ARENA
        .get_or_init(Arena::reserve)
        .as_ref()
        .map_err(Clone::clone)
}

/// Reserves the stack arena if it is not yet (the first runtime's `build` calls this,
/// so that a process that cannot have one gets a configuration error, not failing
/// spawns).
pub(crate) fn ensure_arena() -> Result<(), ArenaError> {
    arena().map(|_| ())
}

/// Bytes of address space the arena reserved per size class (`None` before the first
/// runtime, or if it could not be reserved).
pub fn arena_span() -> Option<usize> {
    ARENA.get()?.as_ref().ok().map(|a| 1usize << a.span_shift)
}

/// Makes `block_of` find no block anywhere: in the child of a `fork` (see
/// `crate::fork`), where no spindle thread can run, every stack is an OS stack.
pub(crate) fn forget_arena() {
    ARENA_BASE.store(0, Ordering::Relaxed);
}

/// The largest span shift [`ARENA_ENV`] allows.
fn span_cap_from_env() -> Result<u32, ArenaError> {
    let Some(v) = std::env::var_os(ARENA_ENV) else {
        return Ok(MAX_SPAN_SHIFT);
    };
    let value = v.to_string_lossy().into_owned();
    let t = value.trim();
    let (digits, unit) = match t.as_bytes().last() {
        Some(b'k' | b'K') => (&t[..t.len() - 1], 10),
        Some(b'm' | b'M') => (&t[..t.len() - 1], 20),
        Some(b'g' | b'G') => (&t[..t.len() - 1], 30),
        _ => (t, 0),
    };
    let bytes = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << unit));
    match bytes {
        Some(b)
            if b.is_power_of_two()
                && (MIN_SPAN_SHIFT..=MAX_SPAN_SHIFT).contains(&b.trailing_zeros()) =>
        {
            Ok(b.trailing_zeros())
        }
        _ => Err(ArenaError::Env { value }),
    }
}

/// The process's address-space limit (`RLIMIT_AS`), if it has one.
fn address_space_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut r) };
    (rc == 0 && r.rlim_cur != libc::RLIM_INFINITY).then_some(r.rlim_cur)
}

/// Bytes of address space the process has mapped (`/proc/self/statm`, first field).
fn mapped_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<usize>().ok())
        .map_or(0, |pages| pages * os::page_size())
}

impl Arena {
    fn reserve() -> Result<Arena, ArenaError> {
        let cap = span_cap_from_env()?;
        let limit = address_space_limit();
        let mapped = mapped_bytes();
        // Half of what the process may still map, under a limit.
        let budget = limit.map(|l| (l as usize).saturating_sub(mapped) / 2);
        let mut last = libc::ENOMEM;
        for shift in (MIN_SPAN_SHIFT..=cap).rev() {
            let span = 1usize << shift;
            let total = span * NUM_CLASSES;
            if shift > MIN_SPAN_SHIFT && budget.is_some_and(|b| total + span > b) {
                continue;
            }
            // Over-reserve one span so the base can be aligned to it; alignment keeps
            // the class computation a plain shift.
            let len = total + span;
            // SAFETY: an anonymous PROT_NONE reservation with no address hint; it commits no memory and aliases nothing.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_NONE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                last = os::last_error().raw_os_error().unwrap_or(libc::ENOMEM);
                continue;
            }
            let start = p as usize;
            let base = (start + span - 1) & !(span - 1);
            let head = base - start;
            let tail = len - head - total;
            // SAFETY: both ranges lie inside the reservation just made and outside the aligned part we keep; unmapping them affects nothing else.
            unsafe {
                if head > 0 {
                    libc::munmap(start as *mut libc::c_void, head);
                }
                if tail > 0 {
                    libc::munmap((base + total) as *mut libc::c_void, tail);
                }
            }
            ARENA_SHIFT.store(shift as usize, Ordering::Relaxed);
            PAGE_SIZE.store(os::page_size(), Ordering::Relaxed);
            ARENA_BASE.store(base, Ordering::Release);
            overflow::install_handler();
            return Ok(Arena {
                base,
                span_shift: shift,
                carved: std::array::from_fn(|_| AtomicUsize::new(0)),
                spare: Mutex::new(std::array::from_fn(|_| Vec::new())),
                unreleased: Mutex::new(std::array::from_fn(|_| Vec::new())),
                guard: AtomicU8::new(initial_guard_mode()),
                page: os::page_size(),
            });
        }
        Err(ArenaError::Reserve {
            errno: last,
            needed: (NUM_CLASSES + 1) << MIN_SPAN_SHIFT,
            limit,
            mapped,
        })
    }

    fn class_base(&self, class: usize) -> usize {
        self.base + (class << self.span_shift)
    }

    /// Carves a chunk of blocks of class `class`, guards them and returns their bases.
    fn carve(&self, class: usize, out: &mut Vec<usize>) -> Result<(), StackError> {
        let size = class_size(class);
        let chunk = CHUNK_BYTES.max(size);
        let span = 1usize << self.span_shift;
        let off = self.carved[class].fetch_add(chunk, Ordering::Relaxed);
        if off + chunk > span {
            return Err(StackError::RegionFull { region: span });
        }
        let start = self.class_base(class) + off;
        // SAFETY: [start, start + chunk) lies inside our reservation and was never handed out before (the bump pointer is monotonic).
        let rc = unsafe {
            libc::mprotect(
                start as *mut libc::c_void,
                chunk,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if rc != 0 {
            return Err(os::last_error().into());
        }
        for block in (start..start + chunk).step_by(size) {
            self.install_guard(block)?;
            out.push(block);
        }
        Ok(())
    }

    fn install_guard(&self, block: usize) -> Result<(), std::io::Error> {
        let mode = self.guard.load(Ordering::Relaxed);
        if mode != GUARD_MPROTECT {
            let first = block as *mut libc::c_void;
            // SAFETY: `first` is the page-aligned first page of a block we own and no thread uses; the guard advice only marks it.
            let rc = unsafe { libc::madvise(first, self.page, MADV_GUARD_INSTALL) };
            if rc == 0 {
                self.guard.store(GUARD_MADVISE, Ordering::Relaxed);
                return Ok(());
            }
            // Older kernels answer EINVAL: fall back for good.
            self.guard.store(GUARD_MPROTECT, Ordering::Relaxed);
        }
        // SAFETY: the first page of a block we own; nothing lives there.
        let rc = unsafe { libc::mprotect(block as *mut libc::c_void, self.page, libc::PROT_NONE) };
        if rc == 0 {
            Ok(())
        } else {
            Err(os::last_error())
        }
    }
}

/// Environment variable that forces the `mprotect` guard fallback (value `mprotect`),
/// for kernels where `MADV_GUARD_INSTALL` misbehaves and for testing the fallback.
pub const GUARD_ENV: &str = "SPINDLE_GUARD";

fn initial_guard_mode() -> u8 {
    match std::env::var_os(GUARD_ENV) {
        Some(v) if v == "mprotect" => GUARD_MPROTECT,
        _ => GUARD_UNKNOWN,
    }
}

/// Block size of class `class`.
#[inline(always)]
pub(crate) const fn class_size(class: usize) -> usize {
    MIN_STACK_SIZE << class
}

/// The size of a guard page. Async-signal-safe.
pub(crate) fn guard_size() -> usize {
    PAGE_SIZE.load(Ordering::Relaxed)
}

/// Size class of a valid stack size (a power of two in range).
pub(crate) fn class_of(size: usize) -> usize {
    debug_assert!(size.is_power_of_two() && (MIN_STACK_SIZE..=MAX_STACK_SIZE).contains(&size));
    (size.trailing_zeros() - MIN_SHIFT) as usize
}

/// The guard mode in use, once the first stack has been made (`None` before).
///
/// `MADV_GUARD_INSTALL` is tried first; if the kernel refuses it (before Linux 6.13),
/// or the environment variable [`GUARD_ENV`] is `mprotect`, guards are made with
/// `mprotect(PROT_NONE)`.
pub fn guard_mode() -> Option<GuardMode> {
    match ARENA.get()?.as_ref().ok()?.guard.load(Ordering::Relaxed) {
        GUARD_MADVISE => Some(GuardMode::Madvise),
        GUARD_MPROTECT => Some(GuardMode::Mprotect),
        _ => None,
    }
}

/// The block containing `addr`, as `(block base, block size)`, if `addr` lies in the
/// stack arena. Async-signal-safe: two relaxed loads and arithmetic.
#[inline(always)]
pub(crate) fn block_of(addr: usize) -> Option<(usize, usize)> {
    let base = ARENA_BASE.load(Ordering::Relaxed);
    let class = addr.wrapping_sub(base) >> ARENA_SHIFT.load(Ordering::Relaxed);
    if base == 0 || class >= NUM_CLASSES {
        return None;
    }
    let size = class_size(class);
    Some((addr & !(size - 1), size))
}

/// Free blocks of one class a core's pool holds before it spills half of them to the
/// process-wide spare list.
pub(crate) const POOL_SPILL: usize = 1024;

/// A core's pool of free blocks, one list per size class. Owned by one core.
#[derive(Default)]
pub(crate) struct StackPool {
    free: [Vec<usize>; NUM_CLASSES],
}

impl StackPool {
    /// A block of class `class`: from the pool, else from spare blocks of finished
    /// runtimes, else carved fresh.
    #[inline]
    pub(crate) fn get(&mut self, class: usize) -> Result<usize, StackError> {
        if let Some(b) = self.free[class].pop() {
            return Ok(b);
        }
        self.refill(class)
    }

    #[cold]
    fn refill(&mut self, class: usize) -> Result<usize, StackError> {
        let arena = arena().map_err(StackError::Arena)?;
        {
            let mut spare = arena.spare.lock().unwrap_or_else(|e| e.into_inner());
            let take = spare[class].len().min(64);
            let at = spare[class].len() - take;
            self.free[class].extend(spare[class].drain(at..));
        }
        if self.free[class].is_empty() {
            arena.carve(class, &mut self.free[class])?;
            // Hand blocks out from the low end first: neighbours stay close.
            self.free[class].reverse();
        }
        Ok(self.free[class].pop().expect("refill produced no block"))
    }

    /// Returns a block to the pool. No system call. A pool that grew past
    /// [`POOL_SPILL`] blocks of a class hands half of them to the process-wide spare
    /// list, where cores that run short take them from: threads spawned on one core
    /// and finished on another would otherwise pile blocks up on the second while the
    /// first carves fresh ones.
    #[inline]
    pub(crate) fn put(&mut self, class: usize, block: usize) {
        self.free[class].push(block);
        if self.free[class].len() > POOL_SPILL {
            self.spill(class);
        }
    }

    #[cold]
    #[inline(never)]
    fn spill(&mut self, class: usize) {
        let Ok(arena) = arena() else { return };
        let list = &mut self.free[class];
        let keep = list.len() / 2;
        let mut spare = arena.spare.lock().unwrap_or_else(|e| e.into_inner());
        spare[class].extend(list.drain(keep..));
    }

    /// Number of free blocks held.
    pub(crate) fn len(&self) -> usize {
        self.free.iter().map(Vec::len).sum()
    }

    /// Hands the free blocks beyond `keep` per class to the reaper (see [`reap`]),
    /// which releases their memory and makes them spare blocks. No system call: this
    /// is how a worker core gives back memory when the hypercore does the releasing.
    pub(crate) fn hand_surplus(&mut self, keep: usize) {
        let Ok(arena) = arena() else { return };
        let mut out = arena.unreleased.lock().unwrap_or_else(|e| e.into_inner());
        for class in 0..NUM_CLASSES {
            let list = &mut self.free[class];
            if list.len() > keep {
                // The oldest entries (the bottom of the stack of free blocks) go: the
                // most recently freed ones are the warmest.
                out[class].extend(list.drain(..list.len() - keep));
            }
        }
    }

    /// Hands every block to the process-wide spare list, memory released.
    pub(crate) fn drain_to_spare(&mut self) {
        let Ok(arena) = arena() else { return };
        for class in 0..NUM_CLASSES {
            let blocks = std::mem::take(&mut self.free[class]);
            if blocks.is_empty() {
                continue;
            }
            let blocks = release_memory(arena, class, blocks);
            let mut spare = arena.spare.lock().unwrap_or_else(|e| e.into_inner());
            spare[class].extend(blocks);
        }
    }
}

/// Blocks whose memory [`reap`] has released since the process started.
static REAPED: AtomicUsize = AtomicUsize::new(0);

/// The reaper's pass: releases the memory of the blocks cores handed over with
/// [`StackPool::hand_surplus`] (`MADV_DONTNEED`, merged into runs) and moves them to
/// the spare list. Returns the number of blocks released. Runs on the hypercore, so
/// the system calls are made there.
pub(crate) fn reap() -> usize {
    let Ok(arena) = arena() else { return 0 };
    let taken: [Vec<usize>; NUM_CLASSES] = {
        let mut u = arena.unreleased.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *u, std::array::from_fn(|_| Vec::new()))
    };
    let mut n = 0;
    for (class, blocks) in taken.into_iter().enumerate() {
        if blocks.is_empty() {
            continue;
        }
        n += blocks.len();
        let blocks = release_memory(arena, class, blocks);
        let mut spare = arena.spare.lock().unwrap_or_else(|e| e.into_inner());
        spare[class].extend(blocks);
    }
    REAPED.fetch_add(n, Ordering::Relaxed);
    n
}

/// Blocks whose memory the reaper has released since the process started.
pub fn reaped_blocks() -> usize {
    REAPED.load(Ordering::Relaxed)
}

/// `MADV_DONTNEED` over the blocks (guard pages excluded), merging adjacent blocks so
/// a whole chunk costs one call. Returns the blocks.
fn release_memory(arena: &Arena, class: usize, mut blocks: Vec<usize>) -> Vec<usize> {
    let size = class_size(class);
    blocks.sort_unstable();
    let mut i = 0;
    while i < blocks.len() {
        let start = blocks[i];
        let mut end = start + size;
        while i + 1 < blocks.len() && blocks[i + 1] == end {
            i += 1;
            end += size;
        }
        // Skip the first guard page; later guard pages inside the run survive
        // MADV_DONTNEED (madvise guards are kept; PROT_NONE pages have nothing to drop).
        let from = start + arena.page;
        // SAFETY: the range covers free blocks of ours that no thread uses.
        unsafe { libc::madvise(from as *mut libc::c_void, end - from, libc::MADV_DONTNEED) };
        i += 1;
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks freed on one core and allocated on another circulate through the spare
    /// list instead of piling up on the freeing core.
    #[test]
    fn a_pool_that_only_receives_spills_to_one_that_only_gives() {
        let mut giver = StackPool::default();
        let mut taker = StackPool::default();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10 * POOL_SPILL {
            let b = giver.get(0).unwrap();
            seen.insert(b);
            taker.put(0, b);
            assert!(taker.len() <= POOL_SPILL);
        }
        // Blocks came back around instead of being carved fresh every time.
        assert!(
            seen.len() < 3 * POOL_SPILL,
            "{} distinct blocks",
            seen.len()
        );
        giver.drain_to_spare();
        taker.drain_to_spare();
    }

    #[test]
    fn classes_cover_the_range() {
        assert_eq!(NUM_CLASSES, 10);
        assert_eq!(class_size(0), MIN_STACK_SIZE);
        assert_eq!(class_size(NUM_CLASSES - 1), MAX_STACK_SIZE);
        assert_eq!(class_of(DEFAULT_STACK_SIZE), 2);
    }

    #[test]
    fn blocks_are_aligned_guarded_and_found_from_any_address() {
        let mut pool = StackPool::default();
        for class in [0, 2, 9] {
            let size = class_size(class);
            let b = pool.get(class).unwrap();
            assert_eq!(b % size, 0, "block not aligned to its size");
            for probe in [b, b + 4096, b + size / 2, b + size - 1] {
                assert_eq!(block_of(probe), Some((b, size)));
            }
            // The top page is writable.
            // SAFETY: the block is ours and its top page is read/write.
            unsafe { ((b + size - 8) as *mut u64).write_volatile(7) };
            pool.put(class, b);
        }
        assert!(guard_mode().is_some());
        assert_eq!(
            block_of(&pool as *const _ as usize),
            None,
            "an OS stack is not a block"
        );
        pool.drain_to_spare();
    }

    /// Blocks a core hands over are released by the reaper and then reused as spare
    /// blocks, with their memory gone (the written word reads back as zero).
    #[test]
    fn handed_surplus_is_reaped_then_reused_zeroed() {
        let mut pool = StackPool::default();
        let class = 3;
        let size = class_size(class);
        let blocks: Vec<usize> = (0..4).map(|_| pool.get(class).unwrap()).collect();
        for &b in &blocks {
            // SAFETY: the block is ours and its top page is read/write.
            unsafe { ((b + size - 8) as *mut u64).write_volatile(0xdead) };
            pool.put(class, b);
        }
        pool.hand_surplus(1);
        assert_eq!(pool.len(), 1, "all but one block handed over");
        let before = reaped_blocks();
        assert!(reap() >= 3);
        assert!(reaped_blocks() >= before + 3);
        // Empty our pool, then take blocks until one of the reaped ones comes back.
        let mut other = StackPool::default();
        let mut seen = 0;
        for _ in 0..4096 {
            let b = other.get(class).unwrap();
            if blocks[..3].contains(&b) {
                // SAFETY: as above.
                assert_eq!(unsafe { ((b + size - 8) as *const u64).read_volatile() }, 0);
                seen += 1;
            }
            if seen == 3 {
                break;
            }
        }
        assert_eq!(seen, 3, "reaped blocks are spare blocks again");
        other.drain_to_spare();
        pool.drain_to_spare();
    }
}
