//! The values of `spindle::local!` keys: one small map per spindle thread, reached from
//! its TCB (so it moves with the thread: migration, stealing, any core), and one per
//! OS thread that is not a spindle thread (a std thread-local).
//!
//! A map is touched only by the thread it belongs to. Entries are created lazily, at
//! a key's first access; a value lives in a heap box of its own, so a reference to it
//! stays valid while other keys are added. When the thread ends, its values are
//! dropped in the reverse order of their creation, before its result is published
//! (`thread::entry`), so a joiner sees what their destructors did. From then on every
//! access fails (`AccessError` in the public API), as an access during destruction
//! does.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The map of one thread.
#[derive(Default)]
pub(crate) struct LocalMap {
    entries: Vec<Entry>,
    /// Set when the thread's values are being dropped: no value is created any more.
    destroying: bool,
}

/// One key's value. `value` is null while the key's initializer runs.
struct Entry {
    key: usize,
    value: *mut (),
    drop: unsafe fn(*mut ()),
}

/// The state of a thread's map, as the TCB's `locals` word holds it: null (no value
/// yet), a `Box<LocalMap>`, or `DESTROYED`.
pub(crate) const DESTROYED: *mut LocalMap = std::ptr::without_provenance_mut(1);

/// Why a value cannot be reached.
pub(crate) enum Refused {
    /// The thread's values are being or have been destroyed.
    Destroyed,
    /// The key's initializer, still running, accessed the key itself.
    Recursive,
}

/// Drops a value created by [`value`] for type `T`.
///
/// # Safety
///
/// `p` came from `Box::<T>::into_raw` and is dropped once.
unsafe fn drop_box<T>(p: *mut ()) {
    // SAFETY: per the contract.
    drop(unsafe { Box::from_raw(p.cast::<T>()) });
}

/// The value of key `key` (a `'static` address, unique per key) of the thread whose
/// map word is `word`, created with `init` at the first access.
///
/// # Safety
///
/// `word` belongs to the calling thread (its TCB's `locals`, or its OS thread's),
/// and every access with this `key` uses the same `T`.
pub(crate) unsafe fn value<T: 'static>(
    word: &Cell<*mut LocalMap>,
    key: usize,
    init: fn() -> T,
) -> Result<*const T, Refused> {
    let mut map = word.get();
    if map == DESTROYED {
        return Err(Refused::Destroyed);
    }
    if map.is_null() {
        map = Box::into_raw(Box::default());
        word.set(map);
    }
    // SAFETY: the map is this thread's (contract) and alive; no reference into it is held across the initializer or the caller's closure, only this short one.
    unsafe {
        let m = &mut *map;
        if let Some(e) = m.entries.iter().find(|e| e.key == key) {
            return if e.value.is_null() {
                Err(Refused::Recursive)
            } else {
                Ok(e.value.cast::<T>())
            };
        }
        if m.destroying {
            return Err(Refused::Destroyed);
        }
        m.entries.push(Entry {
            key,
            value: std::ptr::null_mut(),
            drop: drop_box::<T>,
        });
    }
    // If the initializer panics, the key is left uninitialized, for a later try.
    struct Unmark(*mut LocalMap, usize);
    impl Drop for Unmark {
        fn drop(&mut self) {
            // SAFETY: the map outlives this guard (it is freed only at thread end).
            unsafe { (*self.0).entries.retain(|e| e.key != self.1) };
        }
    }
    let unmark = Unmark(map, key);
    let v = init();
    std::mem::forget(unmark);
    let p = Box::into_raw(Box::new(v));
    // SAFETY: as above; the entry pushed before `init` is still there (only this thread edits the map, and a nested access to this key returned `Recursive`).
    unsafe {
        let e = (*map)
            .entries
            .iter_mut()
            .find(|e| e.key == key)
            .expect("the entry made before init");
        e.value = p.cast();
    }
    Ok(p)
}

/// Drops every value of the map in `word`, newest first, then the map, and marks the
/// word `DESTROYED`. A destructor's panic aborts the process (as it does for a
/// `std` thread-local), except the unwind of a shutdown (`Abandoned`), which leaves
/// the remaining values leaked.
///
/// # Safety
///
/// `word` belongs to the calling thread, which is ending: no reference to one of its
/// values is alive.
pub(crate) unsafe fn destroy(word: &Cell<*mut LocalMap>) {
    let map = word.replace(DESTROYED);
    if map.is_null() || map == DESTROYED {
        return;
    }
    // SAFETY: the map is this thread's and alive (contract); its values are dropped once each, taken out of the map first.
    let outcome = catch_unwind(AssertUnwindSafe(|| unsafe {
        (*map).destroying = true;
        let entries = std::mem::take(&mut (*map).entries);
        for e in entries.into_iter().rev() {
            if !e.value.is_null() {
                (e.drop)(e.value);
            }
        }
    }));
    // SAFETY: the map came from `Box::into_raw` in `value`; nothing refers to it.
    drop(unsafe { Box::from_raw(map) });
    if let Err(p) = outcome
        && !p.is::<crate::task::abandon::Abandoned>()
    {
        eprintln!("spindle: a spindle::local! value panicked while dropped; aborting");
        std::process::abort();
    }
}

/// The map word of an OS thread that is not a spindle thread; its values are dropped
/// when that OS thread ends.
struct OsWord(Cell<*mut LocalMap>);

impl Drop for OsWord {
    fn drop(&mut self) {
        // SAFETY: the OS thread is ending; the word is its own.
        unsafe { destroy(&self.0) };
    }
}

thread_local! {
    static OS_WORD: OsWord = const { OsWord(Cell::new(std::ptr::null_mut())) };
}

/// Runs `f` with the calling OS thread's map word; `Err(Destroyed)` once the OS
/// thread's thread-locals are being destroyed.
pub(crate) fn with_os_word<R>(f: impl FnOnce(&Cell<*mut LocalMap>) -> R) -> Result<R, Refused> {
    OS_WORD
        .try_with(|w| f(&w.0))
        .map_err(|_| Refused::Destroyed)
}
