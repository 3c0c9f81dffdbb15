//! Scoped threads ([`scope`]): threads that may borrow from the caller's stack, as
//! with `std::thread::scope`.
//!
//! The rule that keeps this sound: `scope` does not return, and does not unwind past
//! its frame, before every thread spawned in it has finished. The threads may run on
//! any core (they reach the borrowed data by address; the caller's stack stays where
//! it is while the caller sleeps). Each thread holds one count of the scope's
//! [`WaitGroup`](crate::sync::WaitGroup), given back by a guard when its closure ends,
//! by return or by unwind; `scope` waits for the count to drop to zero after its
//! closure returns or panics, and again in a guard if it is itself unwound while
//! waiting (a shutdown abandons blocked threads: an unwinding thread's waits do not
//! unwind again, so the guard waits until the scoped threads, abandoned too, end).
//!
//! Cancellation is structured: a `scope` whose caller is cancelled (its closure
//! unwinds with `Cancelled`, or the caller unwinds out of the final wait) cancels
//! every thread of the scope before it waits for them, so the cancel reaches the
//! threads that keep the caller waiting.

use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Builder, JoinHandle};
use crate::sched::CoreCtx;
use crate::shared::Shared;
use crate::sync::WaitGroup;

/// A scope to spawn threads that borrow from outside it (see [`scope`]).
pub struct Scope<'scope, 'env: 'scope> {
    running: WaitGroup,
    /// Every thread spawned in the scope, to cancel them with their caller.
    threads: std::sync::Mutex<Vec<crate::Thread>>,
    /// Scoped threads that panicked and whose handle has not reported it by `join`.
    unjoined_panics: AtomicUsize,
    scope: PhantomData<&'scope mut &'scope ()>,
    env: PhantomData<&'env mut &'env ()>,
}

/// A handle to a thread spawned in a [`Scope`]: [`join`](ScopedJoinHandle::join)
/// waits for it; dropping it leaves the thread to the scope, which joins it at its
/// end.
pub struct ScopedJoinHandle<'scope, T> {
    inner: JoinHandle<T>,
    scope: &'scope AtomicUsize,
}

impl<'scope, T> ScopedJoinHandle<'scope, T> {
    /// Waits for the thread and returns its result, or its panic's payload. A panic
    /// reported here does not make the scope panic.
    pub fn join(self) -> std::thread::Result<T> {
        let r = self.inner.join();
        if r.is_err() {
            self.scope.fetch_sub(1, Ordering::AcqRel);
        }
        r
    }

    /// The thread.
    pub fn thread(&self) -> &crate::Thread {
        self.inner.thread()
    }

    /// Whether the thread has finished.
    pub fn is_finished(&self) -> bool {
        self.inner.is_finished()
    }
}

/// Gives back the thread's count when its closure ends, and counts its panic.
struct Running<'a> {
    running: &'a WaitGroup,
    panics: &'a AtomicUsize,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.panics.fetch_add(1, Ordering::AcqRel);
        }
        self.running.done();
    }
}

impl<'scope, 'env> Scope<'scope, 'env> {
    /// Spawns a thread that may borrow anything that outlives the scope. Like
    /// [`spawn`](crate::spawn), it goes on the caller's core (idle cores ask for
    /// work), and panics if the thread cannot be spawned.
    ///
    /// # Panics
    ///
    /// Outside a spindle thread, or if the spawn fails (see [`Builder::spawn`]).
    pub fn spawn<F, T>(&'scope self, f: F) -> ScopedJoinHandle<'scope, T>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        let opts = Builder::new()
            .opts()
            .unwrap_or_else(|e| panic!("spindle::Scope::spawn failed: {e}"));
        let Some((ctx, _)) = CoreCtx::current() else {
            panic!("spindle::Scope::spawn failed: not on a spindle thread");
        };
        let shared = Shared::of(ctx.core());
        self.running.add(1);
        let (running, panics) = (&self.running, &self.unjoined_panics);
        let body = move || {
            let _running = Running { running, panics };
            f()
        };
        // SAFETY: the thread borrows only what outlives 'scope, and `scope` waits for its count (given back when `body` ends) before 'scope ends; `F` and `T` are Send.
        match unsafe { super::spawn_unchecked(shared, body, opts) } {
            Ok(inner) => {
                self.threads
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(inner.thread().clone());
                ScopedJoinHandle {
                    inner,
                    scope: &self.unjoined_panics,
                }
            }
            Err(e) => {
                self.running.done();
                panic!("spindle::Scope::spawn failed: {e}");
            }
        }
    }
}

impl Scope<'_, '_> {
    /// Cancels every thread of the scope (those finished already ignore it).
    fn cancel_all(&self) {
        for t in self
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            t.cancel();
        }
    }
}

/// Cancels the scope's threads and waits for them while the caller unwinds out of the
/// final wait (cancelled or abandoned; its waits then sleep instead of unwinding
/// again).
struct WaitAll<'a, 'scope, 'env>(&'a Scope<'scope, 'env>);

impl Drop for WaitAll<'_, '_, '_> {
    fn drop(&mut self) {
        self.0.cancel_all();
        self.0.running.wait();
    }
}

/// Runs `f` with a [`Scope`] whose threads may borrow from the caller's stack, and
/// returns once every thread spawned in it has finished (`std::thread::scope`'s
/// semantics). If a scoped thread panicked and its handle was not joined, `scope`
/// panics after all of them finished; if `f` panics, its panic goes on after they
/// finished.
///
/// # Examples
///
/// ```
/// spindle::run(|| {
///     let mut counts = [0u32; 4];
///     let words = ["a", "bb", "ccc", "dddd"];
///     spindle::scope(|s| {
///         for (c, w) in counts.iter_mut().zip(words) {
///             s.spawn(move || *c = w.len() as u32);
///         }
///     });
///     assert_eq!(counts, [1, 2, 3, 4]);
/// });
/// ```
pub fn scope<'env, F, T>(f: F) -> T
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> T,
{
    let s = Scope {
        running: WaitGroup::new(),
        threads: std::sync::Mutex::new(Vec::new()),
        unjoined_panics: AtomicUsize::new(0),
        scope: PhantomData,
        env: PhantomData,
    };
    let wait = WaitAll(&s);
    let r = catch_unwind(AssertUnwindSafe(|| f(&s)));
    if r.as_ref()
        .is_err_and(|p| p.is::<crate::task::cancel::Cancelled>())
    {
        s.cancel_all();
    }
    // A shutdown that abandons this thread unwinds it out of this wait; `wait` then
    // waits again in its drop, as an unwinding thread, which sleeps for good.
    s.running.wait();
    std::mem::forget(wait);
    match r {
        Err(payload) => resume_unwind(payload),
        Ok(_) if s.unjoined_panics.load(Ordering::Acquire) > 0 => {
            panic!("a scoped thread panicked")
        }
        Ok(v) => v,
    }
}
