//! Side stacks: a reserved region of [`SIDE_SIZE`]-byte stacks on which a spindle
//! thread runs code that needs more stack than it may have (the panic hook's report).
//! The top word of a slot names the thread using it, so that `current_tcb` finds the
//! thread while it runs there ([`owner`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

use crate::task::tcb::Tcb;

/// Bytes of one side stack (a guard page included).
pub(crate) const SIDE_SIZE: usize = 256 << 10;
/// Side stacks in the region.
const SIDE_SLOTS: usize = 64;
/// Bytes at the top of a slot kept for the owner word (16, to keep the stack aligned).
pub(crate) const OWNER_BYTES: usize = 16;

/// The side-stack region, `[SIDE_BASE, SIDE_BASE + SIDE_SLOTS * SIDE_SIZE)`; 0 until
/// it is reserved. Read by `current_tcb` on OS stacks (relaxed: a thread runs on a
/// side stack only after the reservation, on the same OS thread or after a switch
/// that orders it).
static SIDE_BASE: AtomicUsize = AtomicUsize::new(0);

/// Free side stacks (slot bases); `None` until the region is reserved, and for good if
/// it could not be.
static FREE: Mutex<Option<Vec<usize>>> = Mutex::new(None);
static RESERVE: Once = Once::new();

/// The thread whose side stack contains `sp`, if `sp` lies in the side-stack region.
/// Cold: reached only from stacks that are not spindle stack blocks.
#[cold]
#[inline(never)]
pub(crate) fn owner(sp: usize) -> Option<*mut Tcb> {
    let base = SIDE_BASE.load(Ordering::Relaxed);
    if base == 0 || sp < base || sp >= base + SIDE_SLOTS * SIDE_SIZE {
        return None;
    }
    let top = (sp & !(SIDE_SIZE - 1)) + SIDE_SIZE;
    // SAFETY: the slot's owner word was written before its owner switched to it, and stays until the owner leaves it.
    let owner = unsafe { ((top - OWNER_BYTES) as *const *mut Tcb).read() };
    (!owner.is_null()).then_some(owner)
}

/// A free side stack for thread `me`, its owner word set; `None` if there is none.
pub(crate) fn take(me: *mut Tcb) -> Option<usize> {
    RESERVE.call_once(reserve);
    let slot = FREE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()?
        .pop()?;
    // SAFETY: the slot is ours (taken from the free list) and its top page is writable.
    unsafe { ((slot + SIDE_SIZE - OWNER_BYTES) as *mut *mut Tcb).write(me) };
    Some(slot)
}

/// Gives back a side stack [`take`] returned.
pub(crate) fn give(slot: usize) {
    // SAFETY: as in `take`: the slot is still ours.
    unsafe { ((slot + SIDE_SIZE - OWNER_BYTES) as *mut *mut Tcb).write(std::ptr::null_mut()) };
    if let Some(free) = FREE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        free.push(slot);
    }
}

/// Reserves the side-stack region (aligned to `SIDE_SIZE`), guard page at the bottom
/// of each slot. Memory is committed only where a hook runs.
fn reserve() {
    let len = SIDE_SLOTS * SIDE_SIZE;
    // SAFETY: an anonymous reservation with no address hint; it aliases nothing.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len + SIDE_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        // No side stacks: hooks run in place, as without spindle.
        return;
    }
    let start = p as usize;
    let base = (start + SIDE_SIZE - 1) & !(SIDE_SIZE - 1);
    let page = crate::os::page_size();
    let mut free = Vec::with_capacity(SIDE_SLOTS);
    for i in (0..SIDE_SLOTS).rev() {
        let slot = base + i * SIDE_SIZE;
        // SAFETY: the first page of a slot inside the mapping just made.
        unsafe { libc::mprotect(slot as *mut libc::c_void, page, libc::PROT_NONE) };
        free.push(slot);
    }
    SIDE_BASE.store(base, Ordering::Relaxed);
    *FREE.lock().unwrap_or_else(|e| e.into_inner()) = Some(free);
}
