//! `spindle::blocking`: runs a call that may block on the runtime's blocking pool
//! (`crate::pool`), while the calling spindle thread sleeps.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::{Arc, Mutex};

pub use crate::pool::BLOCKING_THREADS;
use crate::pool::Job;
use crate::sched::wait::{Waiter, block_internal};
use crate::shared::Shared;

type Outcome<R> = Mutex<Option<Result<R, Box<dyn Any + Send>>>>;

/// Runs `f`, which may block (a blocking `std` call, a DNS lookup, a slow disk read),
/// on the runtime's pool of at most [`BLOCKING_THREADS`] OS threads, and returns its
/// result. The calling spindle thread sleeps meanwhile; its core runs other threads. A
/// panic in `f` is resumed in the caller. On a plain OS thread `f` simply runs there.
///
/// # When to use it
///
/// A blocking call made directly in a spindle thread does not stall its core for long
/// either: the core is handed to a spare OS thread once the call has held it for
/// about 2 ms ([`RuntimeBuilder::handoff`](crate::RuntimeBuilder::handoff)). Use
/// `blocking` where you know a call blocks: it moves the call off the core at once,
/// so the core's other threads do not wait those 2 ms; after it the caller is still on
/// its core's OS thread (a handed-off thread resumes on the OS thread of the core it
/// rejoins, so `thread_local!` values change under it); and it works with handoff
/// turned off. Leave short or
/// rare calls inline: `blocking` costs a hand-off to the pool and a wake-up (a few
/// µs) even when the call would not have blocked.
///
/// # Examples
///
/// ```
/// let n = spindle::run(|| {
///     spindle::blocking(|| {
///         std::thread::sleep(std::time::Duration::from_millis(1)); // blocks a pool thread
///         40 + 2
///     })
/// });
/// assert_eq!(n, 42);
/// ```
pub fn blocking<F, R>(f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    on_pool(f, false)
}

/// [`blocking`] for the runtime's own system calls (`sys`): if the caller is unwound
/// meanwhile (a shutdown abandons it), it still waits for `f` to finish before its
/// frames go, so a call on one of its descriptors never outlives the caller's hold on
/// it.
pub(crate) fn blocking_to_the_end<F, R>(f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    on_pool(f, true)
}

/// [`blocking`] for a closure that borrows from the caller's frame (name resolution
/// of a borrowed address): the caller waits for it to the end, even while unwinding,
/// so nothing it borrows goes away while it runs.
pub(crate) fn blocking_scoped<'a, F, R>(f: F) -> R
where
    F: FnOnce() -> R + Send + 'a,
    R: Send + 'static,
{
    let f: Box<dyn FnOnce() -> R + Send + 'a> = Box::new(f);
    // SAFETY: only the lifetime bound of the trait object changes (same layout). `on_pool` with `to_the_end` returns, or lets its caller unwind, only after the job ran to its end, and the job is dropped by then: nothing `f` borrows is used after `'a`.
    let f: Box<dyn FnOnce() -> R + Send + 'static> = unsafe { std::mem::transmute(f) };
    on_pool(f, true)
}

/// Runs `f` on the pool and sleeps until it is done (see [`blocking`]); `to_the_end`:
/// also while unwinding.
fn on_pool<F, R>(f: F, to_the_end: bool) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let (Some(me), Some(shared)) = (Waiter::current(), Shared::current()) else {
        return f();
    };
    let pool = &shared.blocking;
    let out: Arc<Outcome<R>> = Arc::new(Mutex::new(None));
    let job: Job = {
        let out = out.clone();
        Box::new(move || {
            let r = catch_unwind(AssertUnwindSafe(f));
            *out.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            me.wake();
        })
    };
    if let Err(job) = pool.submit(job) {
        // The runtime is gone (a thread that outlived its shutdown): run it here.
        job();
    }
    /// Waits for the job while the caller unwinds (an unwinding thread sleeps
    /// normally: it is not unwound a second time).
    struct ToTheEnd<'a, R>(&'a Outcome<R>);
    impl<R> Drop for ToTheEnd<'_, R> {
        fn drop(&mut self) {
            while self.0.lock().unwrap_or_else(|e| e.into_inner()).is_none() {
                block_internal(None, crate::task::dump::WaitReason::Blocking);
            }
        }
    }
    let guard = to_the_end.then(|| ToTheEnd(&out));
    loop {
        if let Some(r) = out.lock().unwrap_or_else(|e| e.into_inner()).take() {
            std::mem::forget(guard);
            return r.unwrap_or_else(|p| resume_unwind(p));
        }
        block_internal(None, crate::task::dump::WaitReason::Blocking);
    }
}
