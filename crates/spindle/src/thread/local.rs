//! `spindle::local!`: values per spindle thread, the way `thread_local!` gives values
//! per OS thread.

use std::fmt;

use crate::task::current::current_tcb;
use crate::task::locals::{self, Refused};

/// A key of a value per spindle thread, declared with [`local!`](crate::local).
///
/// Each spindle thread has its own value of each key, created by the key's
/// initializer at the thread's first access and dropped when the thread ends (before
/// its `JoinHandle::join` returns). The value belongs to the spindle thread, not to
/// the core that runs it: it stays the same across [`migrate_to`](crate::migrate_to),
/// a move by an idle core that asked for work, a handoff of its core to another OS
/// thread while it blocked (`RuntimeBuilder::handoff`), or any other change. On an OS
/// thread outside a runtime, a key has one value per OS thread, like `thread_local!`.
///
/// **`std`'s `thread_local!` inside spindle** is per *OS thread*: every spindle thread
/// that a core runs shares the core's OS thread's value, and a spindle thread that
/// moves to another core, or whose core is handed off while it blocks, sees another OS
/// thread's value from then on. Use `local!` for state
/// that belongs to one spindle thread (a buffer, a counter, a connection); keep
/// `thread_local!` for per-core caches, which is what it is there.
///
/// Like `thread_local!`, the value is reached only by reference inside [`with`]:
/// use a `Cell` or `RefCell` for a value that changes. An initializer that accesses
/// its own key panics; a destructor that accesses any `local!` key of its ending
/// thread gets [`AccessError`] from [`try_with`] (and a panic from [`with`]); a
/// destructor that panics aborts the process, as for `thread_local!`. The values of a
/// thread that a shutdown reclaims without unwinding it are leaked, not dropped.
///
/// [`with`]: LocalKey::with
/// [`try_with`]: LocalKey::try_with
///
/// # Examples
///
/// ```
/// use std::cell::Cell;
/// spindle::local! { static CALLS: Cell<u32> = Cell::new(0); }
///
/// spindle::run(|| {
///     let h = spindle::spawn(|| {
///         CALLS.with(|c| c.set(c.get() + 1));
///         CALLS.with(|c| c.get())
///     });
///     CALLS.with(|c| c.set(10));
///     assert_eq!(h.join().unwrap(), 1); // the other thread has its own value
///     assert_eq!(CALLS.with(|c| c.get()), 10);
/// });
/// ```
pub struct LocalKey<T: 'static> {
    init: fn() -> T,
}

/// A [`LocalKey`] accessed while its thread's values are being dropped, or after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessError;

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a spindle::local! value was accessed while its thread's values were being \
             dropped, or after: access it before the thread ends",
        )
    }
}

impl std::error::Error for AccessError {}

impl<T: 'static> LocalKey<T> {
    /// A key whose values are made by `init`. Used by [`local!`](crate::local).
    #[doc(hidden)]
    pub const fn new(init: fn() -> T) -> LocalKey<T> {
        LocalKey { init }
    }

    /// Runs `f` with a reference to the calling thread's value, creating it first if
    /// this is the thread's first access.
    ///
    /// # Panics
    ///
    /// If the thread's values are being dropped or were dropped (see
    /// [`try_with`](Self::try_with)), or if the key's initializer accesses the key.
    pub fn with<R>(&'static self, f: impl FnOnce(&T) -> R) -> R {
        match self.try_with(f) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`with`](Self::with), but returns [`AccessError`] instead of panicking
    /// when the thread's values are being dropped or were dropped.
    ///
    /// # Panics
    ///
    /// If the key's initializer accesses the key.
    pub fn try_with<R>(&'static self, f: impl FnOnce(&T) -> R) -> Result<R, AccessError> {
        // A key's address is its identity: each `static` has one of its own.
        let key = std::ptr::from_ref(self).addr();
        let got = match current_tcb() {
            // SAFETY: the running thread's own TCB and its own map word; every access through this key uses `T`.
            Some(me) => unsafe { locals::value(&(*me).locals, key, self.init) },
            None => locals::with_os_word(|w| {
                // SAFETY: the calling OS thread's own map word; as above for `T`.
                unsafe { locals::value(w, key, self.init) }
            })
            .and_then(|r| r),
        };
        match got {
            // SAFETY: the value lives in a box of its own until the thread ends, which cannot happen while it runs `f`.
            Ok(p) => Ok(f(unsafe { &*p })),
            Err(Refused::Destroyed) => Err(AccessError),
            Err(Refused::Recursive) => {
                panic!("a spindle::local! initializer accessed the value it is creating")
            }
        }
    }
}

impl<T: 'static> fmt::Debug for LocalKey<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKey").finish_non_exhaustive()
    }
}

/// Declares keys of values per spindle thread ([`LocalKey`]), with the syntax of
/// `thread_local!`.
///
/// ```
/// use std::cell::RefCell;
/// spindle::local! {
///     static BUF: RefCell<Vec<u8>> = RefCell::new(Vec::new());
///     pub static NAME: String = String::from("worker");
/// }
/// spindle::run(|| {
///     BUF.with(|b| b.borrow_mut().extend_from_slice(b"abc"));
///     assert_eq!(BUF.with(|b| b.borrow().len()), 3);
///     assert_eq!(NAME.with(|n| n.len()), 6);
/// });
/// ```
#[macro_export]
macro_rules! local {
    () => {};
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr; $($rest:tt)*) => {
        $(#[$attr])*
        $vis static $name: $crate::LocalKey<$t> = $crate::LocalKey::new({
            fn __init() -> $t {
                $init
            }
            __init
        });
        $crate::local!($($rest)*);
    };
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr) => {
        $crate::local!($(#[$attr])* $vis static $name: $t = $init;);
    };
}
