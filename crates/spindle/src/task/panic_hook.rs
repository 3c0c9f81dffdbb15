//! The panic report of a spindle thread.
//!
//! std's panic hook names the OS thread that panicked — for a spindle thread, its
//! core's (`spindle-core-0`) — and prints the report, with a backtrace when
//! `RUST_BACKTRACE` asks for one, on the stack of the panicking thread. Symbolising a
//! backtrace takes about 20 KiB of stack, more than a 16 KiB thread has left.
//!
//! So the first runtime of a process wraps the panic hook it finds (std's own, or the
//! user's) in one that, on a spindle thread:
//!
//! 1. prints a line naming the spindle thread, its id and its core, then
//! 2. calls the wrapped hook on a **side stack** of [`SIDE_SIZE`] bytes
//!    (`arch::call_on_stack`, whose frame backtraces follow back into the thread's
//!    own frames), so the report never overflows the thread's stack.
//!
//! Side stacks are slots of one reserved region, taken from a free list for the
//! duration of the hook. The top word of a slot names the thread using it, and
//! `current_tcb` looks there when the stack pointer is in the region: spindle calls a
//! hook makes (`spindle::current()`, a lock, even a sleep) work as on the thread's own
//! stack. With every slot in use (hooks that block), the hook runs in place.
//!
//! A hook installed after the first runtime started replaces the wrapper: it runs in
//! place, and the report names the OS thread only.

use std::panic::PanicHookInfo;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

use crate::arch;
use crate::task::tcb::Tcb;

/// Bytes of one side stack (a guard page included).
pub(crate) const SIDE_SIZE: usize = 256 << 10;
/// Side stacks in the region.
const SIDE_SLOTS: usize = 64;
/// Bytes at the top of a slot kept for the owner word (16, to keep the stack aligned).
const OWNER_BYTES: usize = 16;

/// The side-stack region, `[SIDE_BASE, SIDE_BASE + SIDE_SLOTS * SIDE_SIZE)`; 0 until
/// it is reserved. Read by `current_tcb` on OS stacks (relaxed: a thread runs on a
/// side stack only after the reservation, on the same OS thread or after a switch
/// that orders it).
static SIDE_BASE: AtomicUsize = AtomicUsize::new(0);

/// Free side stacks (slot bases); `None` until the region is reserved, and for good if
/// it could not be.
static FREE: Mutex<Option<Vec<usize>>> = Mutex::new(None);
static RESERVE: Once = Once::new();
static INSTALL: Once = Once::new();

type Hook = Box<dyn Fn(&PanicHookInfo<'_>) + Sync + Send + 'static>;

/// Wraps the current panic hook, once per process (the first runtime's `build`).
pub(crate) fn install() {
    INSTALL.call_once(|| {
        let prev: Hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| report(info, &prev)));
    });
}

/// The thread whose side stack contains `sp`, if `sp` lies in the side-stack region.
/// Cold: reached only from stacks that are not spindle stack blocks.
#[cold]
#[inline(never)]
pub(crate) fn side_stack_owner(sp: usize) -> Option<*mut Tcb> {
    let base = SIDE_BASE.load(Ordering::Relaxed);
    if base == 0 || sp < base || sp >= base + SIDE_SLOTS * SIDE_SIZE {
        return None;
    }
    let top = (sp & !(SIDE_SIZE - 1)) + SIDE_SIZE;
    // SAFETY: the slot's owner word was written before its owner switched to it, and stays until the owner leaves it.
    let owner = unsafe { ((top - OWNER_BYTES) as *const *mut Tcb).read() };
    (!owner.is_null()).then_some(owner)
}

/// The wrapper (see the module docs).
fn report(info: &PanicHookInfo<'_>, prev: &Hook) {
    let Some(me) = crate::task::current::current_tcb() else {
        return prev(info);
    };
    // SAFETY: the running thread's TCB and core are alive while it runs.
    let (id, core) = unsafe { ((*me).id_u64(), crate::sched::Core::of(me).id) };
    // SAFETY: as above; the name lives as long as the thread runs.
    let name = unsafe { (*me).name.as_ref().map_or("<unnamed>", |n| n.as_str()) };
    eprintln!(
        "spindle: thread '{name}' (id {id}) on core {core} panicked; the report below names \
         its core's OS thread"
    );
    let Some(slot) = take_slot(me) else {
        return prev(info);
    };
    struct Call<'a, 'b> {
        info: &'a PanicHookInfo<'b>,
        prev: &'a Hook,
    }
    /// Runs the wrapped hook (on the side stack).
    ///
    /// # Safety
    ///
    /// `arg` points to a live `Call`.
    unsafe extern "C" fn run(arg: *mut u8) {
        // SAFETY: `report` passes its `Call`, alive until `call_on_stack` returns.
        let call = unsafe { &*arg.cast::<Call<'_, '_>>() };
        (call.prev)(call.info);
    }
    let mut call = Call { info, prev };
    // SAFETY: the slot is ours until we give it back below; its top (below the owner word) is 16-byte aligned with SIDE_SIZE bytes of writable stack beneath (less the guard page); `run` does not unwind (a panic in a panic hook aborts the process anyway).
    unsafe {
        arch::call_on_stack(
            slot + SIDE_SIZE - OWNER_BYTES,
            run,
            (&raw mut call).cast::<u8>(),
        )
    };
    give_slot(slot);
}

/// A free side stack for thread `me`, its owner word set; `None` if there is none.
fn take_slot(me: *mut Tcb) -> Option<usize> {
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

fn give_slot(slot: usize) {
    // SAFETY: as in `take_slot`: the slot is still ours.
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
