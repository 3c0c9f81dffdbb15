//! Join slots: the stack-independent record of a thread.
//!
//! A slot outlives its thread's stack block: the block is recycled the moment the
//! thread exits, while the slot keeps the exit value until the `JoinHandle` takes it
//! or is dropped. Slots live in one process-wide table that is never freed, and are
//! reused; an id is `(index, generation)` and the generation is bumped every time a
//! slot is freed, so a stale id can never observe another thread's state or result.
//! Because the table is immortal, a handle is just an id: no reference count is
//! taken on spawn, `current()` or join, and a handle that outlives its runtime stays
//! safe (its operations see a finished thread).
//!
//! ## The slot word
//!
//! All cross-thread state of a slot is one `AtomicU64`: the generation in the high 32
//! bits, flags in the low 32 (see the `F_*` constants). Every operation that acts on
//! behalf of an id compares the generation in the same atomic step, so it is either
//! applied to the thread that id names or not at all.
//!
//! ## Lifetime protocol
//!
//! A slot has two owners: the thread, until it sets `F_DONE` (its result is written and
//! it will not touch the slot again), and the handle, until it is joined or dropped.
//! Whoever of the two lets go second frees the slot.
//!
//! 1. A joiner records who it is — a spindle thread's id in the `joiner` word, or the
//!    waker of an OS thread or a future under the `os_joiner` lock — then `fetch_or(F_JOINER)`
//!    (release: publishes the record). If that returns `F_DONE`, the thread finished
//!    without seeing the joiner: the joiner clears its record and does not sleep.
//! 2. The exiting thread writes its result, then [`Slot::finish`]: it loads the word,
//!    takes the joiner record if `F_JOINER` is set, and sets `F_DONE` with one CAS
//!    (release: pairs with the acquire load of `F_DONE` in join). The record is read
//!    *before* the CAS because the slot may be freed the moment `F_DONE` is visible;
//!    after the CAS the thread wakes the joiner it took and never touches the slot
//!    again. Steps 1 and 2 are RMWs on one word, so exactly one side sees the other:
//!    either the joiner saw `F_DONE`, or the exiter's CAS saw `F_JOINER` (a CAS that
//!    fails because `F_JOINER` arrived is retried and then sees it) — no lost wakeup.
//! 3. A joiner that saw `F_DONE` is the last owner: it takes the result and frees the
//!    slot with a plain store, no RMW. A handle dropped unjoined sets `F_HANDLE_GONE`
//!    with an RMW; if `F_DONE` was already set it frees the slot, else the exiting
//!    thread will, when its CAS sees `F_HANDLE_GONE`.
//!
//! Stale wakers may still CAS the word of a finished thread (setting a token); that
//! is harmless, and once the slot is freed their generation check fails.
//!
//! ## Wait channels
//!
//! Two independent channels let the owner thread sleep: `park` (the user-visible token
//! of `std::thread::park`) and an internal one used by join, sleep and the sync types.
//! Each is a pair of bits, `BLOCKED` and `TOKEN`:
//!
//! - block: if `TOKEN` is set, clear it and do not sleep; else set `BLOCKED` and sleep.
//! - wake: if `BLOCKED` is set, clear it and make the thread runnable (exactly one
//!   waker wins this CAS); else set `TOKEN`.
//!
//! Keeping join's waits off the park channel means a `join` can never eat a token that
//! an `unpark` meant for a later `park`.

use std::cell::UnsafeCell;
use std::mem::{MaybeUninit, align_of, size_of};
use std::sync::Mutex;

use std::sync::atomic::{
    AtomicBool as StdAtomicBool, AtomicPtr, AtomicU8 as StdAtomicU8, AtomicU32 as StdAtomicU32,
    AtomicUsize as StdAtomicUsize,
};

#[cfg(all(test, loom))]
use crate::loom::AtomicU32;
use crate::loom::{AtomicU64, Ordering};
use crate::task::id::ThreadId;
use crate::task::tcb::Tcb;

/// The thread has written its result and will not touch the slot again.
pub(crate) const F_DONE: u32 = 1 << 0;
/// The handle was joined or dropped and will not touch the slot again.
pub(crate) const F_HANDLE_GONE: u32 = 1 << 2;
/// The handle took the result (set together with `F_HANDLE_GONE`).
pub(crate) const F_JOINED: u32 = 1 << 3;
/// A joiner stored its waiter in the slot.
pub(crate) const F_JOINER: u32 = 1 << 4;
/// Park channel: the thread sleeps in `park`.
pub(crate) const F_PARKED: u32 = 1 << 5;
/// Park channel: an `unpark` came while the thread was not parked.
pub(crate) const F_PARK_TOKEN: u32 = 1 << 6;
/// Internal channel: the thread sleeps in a runtime wait (join, sleep, sync).
pub(crate) const F_BLOCKED: u32 = 1 << 7;
/// Internal channel: a wake came while the thread was not blocked.
pub(crate) const F_WAKE_TOKEN: u32 = 1 << 8;
/// The slot is allocated (the teardown scan looks for live threads by this bit).
pub(crate) const F_LIVE: u32 = 1 << 9;
/// The runtime is shutting down and abandons the thread: its next block unwinds
/// instead of sleeping (see `thread::block`). Set by the shutdown's scan, never
/// cleared while the slot lives.
pub(crate) const F_ABANDON: u32 = 1 << 10;
/// The thread is cancelled (`Thread::cancel`): its next block unwinds with
/// `Cancelled` instead of sleeping, and so does every later one. Set by any thread,
/// never cleared while the slot lives.
pub(crate) const F_CANCEL: u32 = 1 << 11;

/// A wait channel of a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Channel {
    /// `park` / `unpark`.
    Park,
    /// Runtime-internal waits.
    Internal,
}

impl Channel {
    #[inline(always)]
    const fn bits(self) -> (u32, u32) {
        match self {
            Channel::Park => (F_PARKED, F_PARK_TOKEN),
            Channel::Internal => (F_BLOCKED, F_WAKE_TOKEN),
        }
    }
}

/// The joiner an exiting thread took from its slot, to wake after `F_DONE`.
pub(crate) enum Joiner {
    /// Nobody is joining.
    None,
    /// A spindle thread.
    Spindle(ThreadId),
    /// An OS thread (a waker that unparks it), or a future awaiting the handle.
    Os(std::task::Waker),
}

/// Outcome of [`SlotWord::block`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Block {
    /// A token was pending and has been consumed: do not sleep.
    TokenTaken,
    /// `BLOCKED` is set: the caller must switch away; a waker will make it runnable.
    MustSleep,
    /// The thread is abandoned (`F_ABANDON`) and may unwind: nothing was changed.
    Abandoned,
    /// The thread is cancelled (`F_CANCEL`) and may unwind: nothing was changed.
    Cancelled,
}

/// Outcome of [`SlotWord::wake`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// The thread was blocked; the caller now owns making it runnable.
    MustEnqueue,
    /// The thread was not blocked; a token is set (or already was).
    TokenSet,
    /// The id is stale: the slot belongs to another thread now, or is free.
    Stale,
}

#[inline(always)]
const fn gen_of(w: u64) -> u32 {
    (w >> 32) as u32
}

#[inline(always)]
const fn flags_of(w: u64) -> u32 {
    w as u32
}

#[inline(always)]
const fn pack(generation: u32, flags: u32) -> u64 {
    ((generation as u64) << 32) | flags as u64
}

/// The atomic word of a slot and the operations of the protocol above.
pub(crate) struct SlotWord(AtomicU64);

impl SlotWord {
    pub(crate) fn new() -> SlotWord {
        SlotWord(AtomicU64::new(0))
    }

    /// Current generation.
    #[inline]
    pub(crate) fn generation(&self) -> u32 {
        // Relaxed: only the allocating core reads this, and it changed it last.
        gen_of(self.0.load(Ordering::Relaxed))
    }

    /// The generation as of now, from any thread (acquire: the slot's fields written
    /// before its last change are visible).
    #[inline]
    pub(crate) fn generation_now(&self) -> u32 {
        gen_of(self.0.load(Ordering::Acquire))
    }

    /// Flags as of now (acquire: pairs with the release RMWs that set them).
    #[inline]
    pub(crate) fn flags(&self) -> u32 {
        flags_of(self.0.load(Ordering::Acquire))
    }

    /// Flags, if the generation is still `generation`.
    #[cfg(test)]
    pub(crate) fn flags_if(&self, generation: u32) -> Option<u32> {
        let w = self.0.load(Ordering::Acquire);
        (gen_of(w) == generation).then_some(flags_of(w))
    }

    /// Marks a freshly allocated slot live. Only its allocator touches it now.
    pub(crate) fn activate(&self) {
        let g = self.generation();
        // Release: pairs with the acquire loads of a teardown scan.
        self.0.store(pack(g, F_LIVE), Ordering::Release);
    }

    /// Sets `bits`; returns the flags before. AcqRel: publishes what this side wrote
    /// (the result, for `F_DONE`) and sees what the other side published.
    #[inline]
    pub(crate) fn set(&self, bits: u32) -> u32 {
        flags_of(self.0.fetch_or(bits as u64, Ordering::AcqRel))
    }

    /// Sets `F_ABANDON` if the slot still holds thread `generation`, alive and not
    /// done; returns whether it did (the shutdown's scan).
    pub(crate) fn abandon(&self, generation: u32) -> bool {
        self.mark(generation, F_ABANDON)
    }

    /// Sets `F_CANCEL` if the slot still holds thread `generation`, alive and not
    /// done; returns whether it did (`Thread::cancel`).
    pub(crate) fn cancel(&self, generation: u32) -> bool {
        self.mark(generation, F_CANCEL)
    }

    /// Sets `bit` (an unwind request) on a live thread `generation` not done yet.
    fn mark(&self, generation: u32, bit: u32) -> bool {
        let mut w = self.0.load(Ordering::Relaxed);
        loop {
            let f = flags_of(w);
            if gen_of(w) != generation || f & F_LIVE == 0 || f & F_DONE != 0 {
                return false;
            }
            // AcqRel: the scan's later reads of the thread follow; pairs with the CAS
            // of `block`.
            match self.0.compare_exchange_weak(
                w,
                w | bit as u64,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(cur) => w = cur,
            }
        }
    }

    /// Frees the slot: bumps the generation and clears every flag, so every stale id
    /// fails its generation check from now on.
    pub(crate) fn free(&self) {
        let g = self.generation().wrapping_add(1);
        // Release: the next owner's reads of the slot follow this store.
        self.0.store(pack(g, 0), Ordering::Release);
    }

    /// The owner thread asks to sleep on `chan`. If it is abandoned or cancelled and
    /// `may_unwind` (it is not unwinding already), nothing changes and it must unwind
    /// instead.
    #[inline]
    pub(crate) fn block(&self, chan: Channel, may_unwind: bool) -> Block {
        let (blocked, token) = chan.bits();
        let mut w = self.0.load(Ordering::Relaxed);
        loop {
            let f = flags_of(w);
            if may_unwind && f & F_ABANDON != 0 {
                return Block::Abandoned;
            }
            if may_unwind && f & F_CANCEL != 0 {
                return Block::Cancelled;
            }
            debug_assert!(
                f & blocked == 0,
                "block: thread already blocked on {chan:?}"
            );
            let (new, out) = if f & token != 0 {
                (w & !(token as u64), Block::TokenTaken)
            } else {
                (w | blocked as u64, Block::MustSleep)
            };
            // AcqRel: taking a token acquires what the waker published before
            // setting it (pairs with the AcqRel CAS in `wake`).
            match self
                .0
                .compare_exchange_weak(w, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return out,
                Err(cur) => w = cur,
            }
        }
    }

    /// Wakes the thread `generation` on `chan`.
    #[inline]
    pub(crate) fn wake(&self, chan: Channel, generation: u32) -> Wake {
        let (blocked, token) = chan.bits();
        let mut w = self.0.load(Ordering::Relaxed);
        loop {
            let f = flags_of(w);
            if gen_of(w) != generation || f & F_LIVE == 0 {
                return Wake::Stale;
            }
            let (new, out) = if f & blocked != 0 {
                (w & !(blocked as u64), Wake::MustEnqueue)
            } else {
                // Set the token, or write the word back unchanged if it is already
                // set: the write is what publishes our caller's earlier stores to the
                // thread that takes the token. Returning on a plain load of a set
                // token loses a wakeup: the sleeper may take the *old* token without
                // seeing those stores, then sleep (`loom_unpark_with_token_set_publishes`).
                (w | token as u64, Wake::TokenSet)
            };
            // AcqRel: publishes what the waker wrote before waking (pairs with the
            // CAS in `block`, or with the switch-in of the woken thread).
            match self
                .0
                .compare_exchange_weak(w, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return out,
                Err(cur) => w = cur,
            }
        }
    }

    /// Clears `BLOCKED` on `chan` if it is still set (a timed wait that timed out).
    /// Returns true if this call cleared it, i.e. no waker will enqueue the thread.
    pub(crate) fn cancel_block(&self, chan: Channel, generation: u32) -> bool {
        let (blocked, _) = chan.bits();
        let mut w = self.0.load(Ordering::Relaxed);
        loop {
            if gen_of(w) != generation || flags_of(w) & blocked == 0 {
                return false;
            }
            match self.0.compare_exchange_weak(
                w,
                w & !(blocked as u64),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(cur) => w = cur,
            }
        }
    }
}

/// Inline storage for a thread's result: `std::thread::Result<T>` lives here when it
/// fits, else a `Box` of it does.
#[repr(C, align(16))]
pub(crate) struct ResultBuf(MaybeUninit<[u8; RESULT_INLINE]>);

const RESULT_INLINE: usize = 32;

/// Whether `R` is stored inline rather than boxed.
pub(crate) const fn fits_inline<R>() -> bool {
    size_of::<R>() <= RESULT_INLINE && align_of::<R>() <= 16
}

/// Writes `r` into `buf`.
///
/// # Safety
///
/// `buf` must be valid for writes and hold no live value.
pub(crate) unsafe fn write_result<R>(buf: *mut ResultBuf, r: R) {
    if fits_inline::<R>() {
        // SAFETY: `R` fits in the buffer's size and alignment (checked above).
        unsafe { buf.cast::<R>().write(r) }
    } else {
        // SAFETY: a Box pointer fits in the buffer.
        unsafe { buf.cast::<Box<R>>().write(Box::new(r)) }
    }
}

/// Moves the value out of `buf`.
///
/// # Safety
///
/// `buf` must hold a value written by `write_result::<R>`, not yet read or dropped.
pub(crate) unsafe fn read_result<R>(buf: *mut ResultBuf) -> R {
    if fits_inline::<R>() {
        // SAFETY: the caller guarantees an `R` was written inline.
        unsafe { buf.cast::<R>().read() }
    } else {
        // SAFETY: the caller guarantees a `Box<R>` was written.
        unsafe { *buf.cast::<Box<R>>().read() }
    }
}

/// Drops the value in `buf`.
///
/// # Safety
///
/// As for [`read_result`].
pub(crate) unsafe fn drop_result<R>(buf: *mut ResultBuf) {
    // SAFETY: forwarded from the caller.
    drop(unsafe { read_result::<R>(buf) });
}

/// A join slot. See the module docs for the protocol.
pub(crate) struct Slot {
    pub(crate) word: SlotWord,
    /// The thread's TCB while it lives. Written at spawn before the thread is
    /// published to any core; read by wakers that won a wake CAS (the thread is alive
    /// then, blocked, so the TCB is valid).
    pub(crate) tcb: UnsafeCell<*mut Tcb>,
    /// The spindle thread joining this one, as `ThreadId::as_present_word`, or 0.
    /// Written by the joiner before it sets `F_JOINER`; read by the exiter after it
    /// saw `F_JOINER`.
    pub(crate) joiner: AtomicU64,
    /// The waker of a joiner that is no spindle thread: an OS thread in `join`, or a
    /// future awaiting the handle. Lock held only to store or take it.
    pub(crate) os_joiner: Mutex<Option<std::task::Waker>>,
    /// Runtime that owns the thread (its `Shared` address), for the shutdown scan.
    pub(crate) owner: StdAtomicUsize,
    /// The core the thread lives on, kept equal to its TCB's `core` by
    /// `Tcb::set_core`, its run-queue level (set at spawn), and whether it is bound to
    /// its core (kept equal to the TCB's `bound` by `Tcb::bind`). A waker that won the
    /// wake CAS reads them here, on the line it just wrote, instead of in the TCB:
    /// the TCB's line then stays on the thread's core (one cache miss less per
    /// cross-core wake, on each side). Relaxed: written by the thread's core before
    /// the thread blocks, so the block/wake CAS pair orders them for the waker.
    pub(crate) home: AtomicPtr<crate::task::tcb::CoreOwner>,
    pub(crate) level: StdAtomicU8,
    pub(crate) bound: StdAtomicBool,
    /// The exit value. Written by the thread before `F_DONE`; read by the joiner after
    /// it saw `F_DONE`, or dropped by whoever frees the slot.
    pub(crate) result: UnsafeCell<ResultBuf>,
    /// Type-erased drop of the result. Written at spawn, before publication.
    pub(crate) drop_result: UnsafeCell<Option<unsafe fn(*mut ResultBuf)>>,
    /// What the thread dump reads: name, wait, stack (`task::dump`).
    pub(crate) info: crate::task::dump::DumpInfo,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            word: SlotWord::new(),
            tcb: UnsafeCell::new(std::ptr::null_mut()),
            joiner: AtomicU64::new(0),
            os_joiner: Mutex::new(None),
            owner: StdAtomicUsize::new(0),
            home: AtomicPtr::new(std::ptr::null_mut()),
            level: StdAtomicU8::new(0),
            bound: StdAtomicBool::new(false),
            result: UnsafeCell::new(ResultBuf(MaybeUninit::uninit())),
            drop_result: UnsafeCell::new(None),
            info: crate::task::dump::DumpInfo::new(),
        }
    }

    /// The thread is done (its result is written): takes the joiner record if one is
    /// registered, then sets `F_DONE`. Returns the flags before the CAS and the joiner
    /// to wake. The caller must not touch the slot afterwards, except to free it when
    /// the returned flags have `F_HANDLE_GONE`.
    pub(crate) fn finish(&self) -> (u32, Joiner) {
        let mut joiner = Joiner::None;
        let mut w = self.word.0.load(Ordering::Acquire);
        loop {
            let f = flags_of(w);
            if f & F_JOINER != 0 && matches!(joiner, Joiner::None) {
                // The acquire that saw F_JOINER orders these reads after the joiner's
                // writes (pairs with its AcqRel fetch_or of F_JOINER).
                let j = self.joiner.load(Ordering::Relaxed);
                joiner = if let Some(id) = ThreadId::from_present_word(j) {
                    Joiner::Spindle(id)
                } else {
                    let os = self
                        .os_joiner
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .take();
                    os.map_or(Joiner::None, Joiner::Os)
                };
            }
            // AcqRel: publishes the result (pairs with the acquire load of F_DONE in
            // join); Acquire on failure so a newly set F_JOINER is seen with its record.
            match self.word.0.compare_exchange_weak(
                w,
                w | F_DONE as u64,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return (f, joiner),
                Err(cur) => w = cur,
            }
        }
    }

    /// Frees the slot after both owners let go: drops an untaken result, bumps the
    /// generation.
    ///
    /// # Safety
    ///
    /// The caller must be the owner that let go second (so no one else uses the slot),
    /// and `flags` must have `F_DONE`, plus `F_JOINED` if the result was taken.
    pub(crate) unsafe fn release(&self, flags: u32) {
        debug_assert!(flags & F_DONE != 0, "release: thread not done");
        if flags & F_DONE != 0 && flags & F_JOINED == 0 {
            // SAFETY: the result was written (F_DONE), never taken (no F_JOINED), and we are the only side left; drop_result was set at spawn.
            unsafe {
                if let Some(d) = *self.drop_result.get() {
                    d(self.result.get());
                }
            }
        }
        // Relaxed: ordered before the next owner by the release store in `free`.
        self.joiner.store(0, Ordering::Relaxed);
        self.owner.store(0, Ordering::Relaxed);
        self.word.free();
    }
}

// SAFETY: every UnsafeCell in a slot is accessed under the protocol above: the tcb and drop_result fields are written before the slot is published and then only read; the result is handed from the thread to exactly one reader through F_DONE.
unsafe impl Sync for Slot {}
// SAFETY: as above; a slot holds no thread-bound data (the Waiter is Send).
unsafe impl Send for Slot {}

/// Slots per chunk of the table.
const CHUNK_SHIFT: u32 = 10;
const CHUNK: usize = 1 << CHUNK_SHIFT;
/// Chunks at most: 2^23 live threads per process.
const MAX_CHUNKS: usize = 1 << 13;

/// The slot table: chunks allocated on demand, never moved, so a `&Slot` stays valid
/// as long as the table lives — forever, for the process-wide [`table`].
pub(crate) struct SlotTable {
    chunks: [AtomicPtr<Slot>; MAX_CHUNKS],
    /// Next never-used index.
    fresh: StdAtomicU32,
    grow: Mutex<()>,
    /// Indices freed by OS threads that are not this runtime's cores.
    remote_free: Mutex<Vec<u32>>,
    has_remote_free: StdAtomicBool,
}

impl SlotTable {
    pub(crate) const fn new() -> SlotTable {
        SlotTable {
            chunks: [const { AtomicPtr::new(std::ptr::null_mut()) }; MAX_CHUNKS],
            fresh: StdAtomicU32::new(0),
            grow: Mutex::new(()),
            remote_free: Mutex::new(Vec::new()),
            has_remote_free: StdAtomicBool::new(false),
        }
    }

    /// The slot at `index`, if it was ever allocated.
    #[inline]
    pub(crate) fn get(&self, index: u32) -> Option<&Slot> {
        let c = self.chunks.get(index as usize >> CHUNK_SHIFT)?;
        // Acquire: pairs with the release store that installed the chunk.
        let p = c.load(Ordering::Acquire);
        if p.is_null() {
            return None;
        }
        // SAFETY: installed chunks hold CHUNK initialised slots and are never freed before the table.
        Some(unsafe { &*p.add(index as usize & (CHUNK - 1)) })
    }

    /// A free index: from `local` (the core's own free list), else from the remote
    /// free list, else a fresh one.
    pub(crate) fn alloc(&self, local: &mut Vec<u32>) -> Option<u32> {
        if let Some(i) = local.pop() {
            return Some(i);
        }
        self.alloc_slow(local)
    }

    #[cold]
    fn alloc_slow(&self, local: &mut Vec<u32>) -> Option<u32> {
        if self.has_remote_free.load(Ordering::Relaxed) {
            let mut r = self.remote_free.lock().unwrap_or_else(|e| e.into_inner());
            self.has_remote_free.store(false, Ordering::Relaxed);
            local.append(&mut r);
            if let Some(i) = local.pop() {
                return Some(i);
            }
        }
        let i = self.fresh.fetch_add(1, Ordering::Relaxed);
        let chunk = i as usize >> CHUNK_SHIFT;
        if chunk >= MAX_CHUNKS {
            self.fresh.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let cell = &self.chunks[chunk];
        if cell.load(Ordering::Acquire).is_null() {
            let _g = self.grow.lock().unwrap_or_else(|e| e.into_inner());
            if cell.load(Ordering::Acquire).is_null() {
                let b: Box<[Slot]> = (0..CHUNK).map(|_| Slot::new()).collect();
                // Release: pairs with the acquire in `get`.
                cell.store(Box::into_raw(b).cast(), Ordering::Release);
            }
        }
        Some(i)
    }

    /// Returns a freed index from an OS thread that owns no core list.
    pub(crate) fn free_remote(&self, index: u32) {
        self.remote_free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(index);
        self.has_remote_free.store(true, Ordering::Relaxed);
    }

    /// Hands a core's whole free list back (its runtime shuts down).
    pub(crate) fn give_back(&self, list: &mut Vec<u32>) {
        if list.is_empty() {
            return;
        }
        self.remote_free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .append(list);
        self.has_remote_free.store(true, Ordering::Relaxed);
    }

    /// Every index handed out so far.
    pub(crate) fn allocated(&self) -> u32 {
        self.fresh.load(Ordering::Relaxed)
    }
}

/// The process-wide slot table.
static TABLE: SlotTable = SlotTable::new();

/// The process-wide slot table.
#[inline(always)]
/// The name of live thread `id` (packed), from what it published in its slot, if it
/// has one (the stats page).
pub(crate) fn name_of(id: u64) -> Option<String> {
    let id = ThreadId::from_u64(id);
    let slot = table().get(id.index)?;
    if slot.word.generation_now() != id.generation {
        return None;
    }
    let name = slot.info.snapshot().name;
    std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
    (slot.word.generation_now() == id.generation).then_some(name)?
}

pub(crate) fn table() -> &'static SlotTable {
    &TABLE
}

impl Drop for SlotTable {
    fn drop(&mut self) {
        for c in self.chunks.iter() {
            let p = c.load(Ordering::Acquire);
            if p.is_null() {
                break;
            }
            // SAFETY: `p` came from `Box::into_raw` of a `Box<[Slot]>` of CHUNK slots.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, CHUNK)) });
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn token_before_block_is_consumed() {
        let w = SlotWord::new();
        w.activate();
        let g = w.generation();
        assert_eq!(w.wake(Channel::Park, g), Wake::TokenSet);
        assert_eq!(
            w.wake(Channel::Park, g),
            Wake::TokenSet,
            "tokens do not accumulate"
        );
        assert_eq!(w.block(Channel::Park, false), Block::TokenTaken);
        assert_eq!(w.block(Channel::Park, false), Block::MustSleep);
        assert_eq!(w.wake(Channel::Park, g), Wake::MustEnqueue);
        assert_eq!(w.flags() & (F_PARKED | F_PARK_TOKEN), 0);
    }

    #[test]
    fn an_abandoned_thread_unwinds_instead_of_blocking_unless_it_is_unwinding() {
        let w = SlotWord::new();
        w.activate();
        let g = w.generation();
        assert!(w.abandon(g));
        assert_eq!(w.block(Channel::Park, true), Block::Abandoned);
        assert_eq!(
            w.flags() & F_PARKED,
            0,
            "an abandoned block changes nothing"
        );
        // A thread already unwinding sleeps as usual.
        assert_eq!(w.block(Channel::Park, false), Block::MustSleep);
        // A stale or finished id is not abandoned.
        assert!(!w.abandon(g.wrapping_add(1)));
        w.set(F_DONE);
        assert!(!w.abandon(g));
    }

    #[test]
    fn a_cancelled_thread_unwinds_at_every_block_unless_it_is_unwinding() {
        let w = SlotWord::new();
        w.activate();
        let g = w.generation();
        assert!(w.cancel(g));
        // The flag stays: every later block unwinds, a token taken or not.
        w.set(F_WAKE_TOKEN);
        assert_eq!(w.block(Channel::Internal, true), Block::Cancelled);
        assert_eq!(w.block(Channel::Park, true), Block::Cancelled);
        assert_eq!(
            w.flags() & (F_PARKED | F_BLOCKED),
            0,
            "a cancelled block changes nothing"
        );
        // A thread already unwinding sleeps as usual (its token taken first).
        assert_eq!(w.block(Channel::Internal, false), Block::TokenTaken);
        assert_eq!(w.block(Channel::Park, false), Block::MustSleep);
        // A stale or finished id is not cancelled.
        assert!(!w.cancel(g.wrapping_add(1)));
        w.set(F_DONE);
        assert!(!w.cancel(g));
    }

    #[test]
    fn channels_are_independent() {
        let w = SlotWord::new();
        w.activate();
        let g = w.generation();
        assert_eq!(w.wake(Channel::Internal, g), Wake::TokenSet);
        assert_eq!(
            w.block(Channel::Park, false),
            Block::MustSleep,
            "an internal token is no park token"
        );
        assert_eq!(w.block(Channel::Internal, false), Block::TokenTaken);
    }

    #[test]
    fn stale_generation_is_refused() {
        let w = SlotWord::new();
        w.activate();
        let g = w.generation();
        w.free();
        w.activate();
        assert_eq!(w.wake(Channel::Park, g), Wake::Stale);
        assert!(!w.cancel_block(Channel::Park, g));
        assert_eq!(w.flags_if(g), None);
        assert_eq!(w.flags_if(g + 1), Some(F_LIVE));
    }

    #[test]
    fn table_reuses_freed_indices() {
        let t = SlotTable::new();
        let mut local = Vec::new();
        let a = t.alloc(&mut local).unwrap();
        let b = t.alloc(&mut local).unwrap();
        assert_ne!(a, b);
        local.push(a);
        assert_eq!(t.alloc(&mut local), Some(a));
        t.free_remote(b);
        assert_eq!(t.alloc(&mut local), Some(b));
        assert!(t.get(b).is_some());
        assert!(t.get(5000).is_none());
    }
}

#[cfg(all(test, loom))]
mod loom_slot {
    //! Models of the slot word protocol: exit against join and detach, and the wake
    //! channels, under every interleaving loom explores.
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// Exit and join race: the joiner either sees `F_DONE` when it registers, or the
    /// exiter takes its record and wakes it — never neither; the slot is freed once.
    #[test]
    fn loom_exit_vs_join_no_lost_wakeup() {
        loom::model(|| {
            let s = Arc::new(Slot::new());
            s.word.activate();
            let frees = Arc::new(AtomicU32::new(0));
            // The joiner is thread (7, 3); its own wait channel is modelled by `jw`.
            let jw = Arc::new(SlotWord::new());
            jw.activate();
            let jg = jw.generation();
            let exiter = {
                let (s, frees, jw) = (s.clone(), frees.clone(), jw.clone());
                thread::spawn(move || {
                    // The exit path of `thread::exit`.
                    let (old, joiner) = s.finish();
                    if old & F_HANDLE_GONE != 0 {
                        frees.fetch_add(1, Ordering::Relaxed);
                    }
                    match joiner {
                        Joiner::Spindle(ThreadId {
                            index: 7,
                            generation: g,
                        }) => {
                            assert_ne!(jw.wake(Channel::Internal, g), Wake::Stale);
                        }
                        Joiner::None => assert_eq!(old & F_JOINER, 0, "joiner lost"),
                        _ => panic!("wrong joiner"),
                    }
                })
            };
            // Joiner: the path of `wait_done` and `join`.
            s.joiner.store(
                ThreadId::from_parts(7, jg).as_present_word(),
                Ordering::Relaxed,
            );
            let old = s.word.set(F_JOINER);
            if old & F_DONE == 0 {
                loop {
                    if s.word.flags() & F_DONE != 0 {
                        break;
                    }
                    if jw.block(Channel::Internal, false) == Block::MustSleep {
                        // Asleep until a waker clears BLOCKED (stands in for the
                        // scheduler making us runnable).
                        while jw.flags() & F_BLOCKED != 0 {
                            thread::yield_now();
                        }
                    }
                }
            }
            assert!(
                s.word.flags() & F_DONE != 0,
                "joiner returned before the thread finished"
            );
            frees.fetch_add(1, Ordering::Relaxed); // the joiner is the last owner
            exiter.join().unwrap();
            assert_eq!(frees.load(Ordering::Relaxed), 1, "slot freed exactly once");
        });
    }

    /// Detach racing exit: exactly one side frees.
    #[test]
    fn loom_detach_vs_exit_frees_once() {
        loom::model(|| {
            let s = Arc::new(Slot::new());
            s.word.activate();
            let frees = Arc::new(AtomicU32::new(0));
            let t = {
                let (s, frees) = (s.clone(), frees.clone());
                thread::spawn(move || {
                    if s.finish().0 & F_HANDLE_GONE != 0 {
                        frees.fetch_add(1, Ordering::Relaxed);
                    }
                })
            };
            if s.word.set(F_HANDLE_GONE) & F_DONE != 0 {
                frees.fetch_add(1, Ordering::Relaxed);
            }
            t.join().unwrap();
            assert_eq!(frees.load(Ordering::Relaxed), 1);
        });
    }

    /// park/unpark from another OS thread: the parker is either not put to sleep (it
    /// took the token) or is enqueued by exactly one waker; two unparks never enqueue
    /// it twice.
    #[test]
    fn loom_unpark_vs_park_enqueues_once() {
        loom::model(|| {
            let w = Arc::new(SlotWord::new());
            w.activate();
            let g = w.generation();
            let enq = Arc::new(AtomicU32::new(0));
            let wakers: Vec<_> = (0..2)
                .map(|_| {
                    let (w, enq) = (w.clone(), enq.clone());
                    thread::spawn(move || {
                        if w.wake(Channel::Park, g) == Wake::MustEnqueue {
                            enq.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            let slept = w.block(Channel::Park, false) == Block::MustSleep;
            for t in wakers {
                t.join().unwrap();
            }
            let n = enq.load(Ordering::Relaxed);
            if slept {
                assert_eq!(n, 1, "a sleeping parker is enqueued exactly once");
            } else {
                assert_eq!(n, 0, "a parker that took the token is never enqueued");
            }
        });
    }
    /// An unpark that finds the token already set still publishes what its caller
    /// wrote before it. The parker takes the old token, looks at the flag, and parks
    /// again if the flag is not set: then the unpark must have enqueued it. (A waker
    /// that returned on a plain load of a set token lost this wakeup: the parker took
    /// the old token without seeing the flag store.)
    #[test]
    fn loom_unpark_with_token_set_publishes() {
        loom::model(|| {
            let w = Arc::new(SlotWord::new());
            w.activate();
            let g = w.generation();
            // An earlier unpark left a token.
            assert_eq!(w.wake(Channel::Park, g), Wake::TokenSet);
            let flag = Arc::new(AtomicU32::new(0));
            let waker = {
                let (w, flag) = (w.clone(), flag.clone());
                thread::spawn(move || {
                    flag.store(1, Ordering::Release);
                    w.wake(Channel::Park, g)
                })
            };
            // The parker's loop: `while flag == 0 { park() }`, for two rounds.
            let mut slept = false;
            for _ in 0..2 {
                if flag.load(Ordering::Acquire) == 1 {
                    break;
                }
                if w.block(Channel::Park, false) == Block::MustSleep {
                    slept = true;
                    break;
                }
            }
            let woke = waker.join().unwrap();
            if slept {
                assert_eq!(
                    woke,
                    Wake::MustEnqueue,
                    "the parker sleeps with nobody to wake it"
                );
            }
        });
    }

    /// An unwind request against a thread going to sleep — the shutdown's abandon, or
    /// a cancel: the thread either sees the flag when it blocks (and unwinds without
    /// sleeping), or it sleeps and the requester's `cancel_block` wins and wakes it —
    /// never neither (it would sleep for ever), never both (it would be enqueued while
    /// running).
    fn unwind_request_vs_block(cancel: bool) {
        loom::model(move || {
            let w = Arc::new(SlotWord::new());
            w.activate();
            let g = w.generation();
            let kicked = Arc::new(AtomicU32::new(0));
            let requester = {
                let (w, kicked) = (w.clone(), kicked.clone());
                thread::spawn(move || {
                    let marked = if cancel { w.cancel(g) } else { w.abandon(g) };
                    if marked && w.cancel_block(Channel::Internal, g) {
                        kicked.store(1, Ordering::Release);
                    }
                })
            };
            match w.block(Channel::Internal, true) {
                Block::Abandoned => assert!(!cancel),
                Block::Cancelled => assert!(cancel),
                Block::MustSleep => {
                    // Asleep until the requester, having cleared BLOCKED, makes it
                    // runnable (`kicked`); loom fails the model if that never happens.
                    while kicked.load(Ordering::Acquire) == 0 {
                        thread::yield_now();
                    }
                    assert_eq!(w.flags() & F_BLOCKED, 0);
                }
                Block::TokenTaken => panic!("no token was ever set"),
            }
            requester.join().unwrap();
            assert_ne!(w.flags() & if cancel { F_CANCEL } else { F_ABANDON }, 0);
        });
    }

    #[test]
    fn loom_abandon_vs_block() {
        unwind_request_vs_block(false);
    }

    #[test]
    fn loom_cancel_vs_block() {
        unwind_request_vs_block(true);
    }
}
