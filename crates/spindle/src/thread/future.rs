//! Futures on spindle threads: [`block_on`], [`spawn_future`], and awaiting a
//! [`JoinHandle`] from async code.
//!
//! `block_on` polls the future on the calling thread; its waker sets a flag and wakes
//! the thread through its internal wait channel (a spindle thread) or unparks it (an
//! OS thread). The flag is set before the wake and cleared before each poll, so a wake
//! that comes during a poll makes the next wait return at once: none is lost.
//!
//! A [`JoinHandle`] awaited registers a forwarding waker as the thread's joiner record
//! once (`task::slot`); later polls only replace the waker it forwards to, under its
//! lock, and then look at `F_DONE` again. The exiting thread sets `F_DONE` before it
//! takes that lock to wake: a poll that stored its waker after that wake sees
//! `F_DONE`.

use std::future::{Future, IntoFuture};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use crate::sched::wait::{Waiter, block_internal};
use crate::task::dump::WaitReason;
use crate::task::slot::F_DONE;

use super::join::JoinHandle;

/// Who a [`block_on`] wakes.
enum Sleeper {
    Spindle(Waiter),
    Os(std::thread::Thread),
}

/// The waker of a [`block_on`].
struct Wakeup {
    /// Set by a wake, cleared before each poll.
    woken: AtomicBool,
    sleeper: Sleeper,
}

impl Wake for Wakeup {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Release: pairs with the acquire swap before the sleeper's next poll, so what
        // the waker wrote before is visible to that poll.
        if !self.woken.swap(true, Ordering::Release) {
            match &self.sleeper {
                Sleeper::Spindle(w) => w.wake(),
                Sleeper::Os(t) => t.unpark(),
            }
        }
    }
}

/// Runs `fut` (a future, or anything `.await` takes, such as a [`JoinHandle`]) to
/// completion on the calling thread and returns its output.
///
/// On a spindle thread, the thread sleeps while the future is pending and its core
/// runs other threads; the future's waker wakes it, from any thread. On a plain OS
/// thread (outside any runtime) it works the same with `std::thread::park`. The future
/// needs no reactor of its own: spindle channels and joins, and wakers from other
/// runtimes (a tokio channel fed by a tokio task), all wake it.
///
/// # Examples
///
/// ```
/// spindle::run(|| {
///     let h = spindle::spawn(|| 6 * 7);
///     let v = spindle::block_on(async move { h.await.unwrap() + 1 });
///     assert_eq!(v, 43);
/// });
/// ```
pub fn block_on<F: IntoFuture>(fut: F) -> F::Output {
    let mut fut = pin!(fut.into_future());
    let sleeper = match Waiter::current() {
        Some(w) => Sleeper::Spindle(w),
        None => Sleeper::Os(std::thread::current()),
    };
    let wakeup = Arc::new(Wakeup {
        woken: AtomicBool::new(false),
        sleeper,
    });
    let waker = Waker::from(wakeup.clone());
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        // Acquire: pairs with the waker's release swap.
        while !wakeup.woken.swap(false, Ordering::Acquire) {
            match wakeup.sleeper {
                // Returns on a wake, or spuriously: the flag decides.
                Sleeper::Spindle(_) => block_internal(None, WaitReason::Future),
                Sleeper::Os(_) => std::thread::park(),
            }
        }
    }
}

/// Spawns a spindle thread that runs `fut` to completion ([`block_on`]) and returns
/// its output through the handle.
///
/// # Panics
///
/// As [`spawn`](crate::spawn): outside a runtime, or if the thread cannot be made.
///
/// # Examples
///
/// ```
/// spindle::run(|| {
///     let h = spindle::spawn_future(async { 40 + 2 });
///     assert_eq!(h.join().unwrap(), 42);
/// });
/// ```
pub fn spawn_future<F>(fut: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    super::api::spawn(move || block_on(fut))
}

/// The future of an awaited [`JoinHandle`]: the thread's result, as
/// [`join`](JoinHandle::join) gives it.
#[must_use = "a future does nothing unless polled"]
pub struct JoinFuture<T> {
    handle: Option<JoinHandle<T>>,
    /// The joiner record registered with the thread, once pending.
    forward: Option<Arc<Forward>>,
}

/// The joiner record of an awaited handle: wakes the waker of the latest poll.
struct Forward(Mutex<Option<Waker>>);

impl Wake for Forward {
    fn wake(self: Arc<Self>) {
        let w = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = w {
            w.wake();
        }
    }
}

impl<T> Future for JoinFuture<T> {
    type Output = std::thread::Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let h = this
            .handle
            .as_ref()
            .expect("a JoinHandle's future polled after it completed");
        let slot = h.thread().slot();
        // Acquire: pairs with the exiting thread's release of F_DONE.
        if slot.word.flags() & F_DONE == 0 {
            match &this.forward {
                None => {
                    let f = Arc::new(Forward(Mutex::new(Some(cx.waker().clone()))));
                    *slot.os_joiner.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(Waker::from(f.clone()));
                    this.forward = Some(f);
                    if slot.word.set(crate::task::slot::F_JOINER) & F_DONE == 0 {
                        return Poll::Pending;
                    }
                    // Done first, without seeing the record: withdraw it.
                    slot.os_joiner
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .take();
                }
                Some(f) => {
                    *f.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
                    if slot.word.flags() & F_DONE == 0 {
                        return Poll::Pending;
                    }
                }
            }
        }
        let h = this.handle.take().expect("checked above");
        Poll::Ready(h.join())
    }
}

impl<T> Unpin for JoinFuture<T> {}

impl<T> IntoFuture for JoinHandle<T> {
    type Output = std::thread::Result<T>;
    type IntoFuture = JoinFuture<T>;

    /// Awaits the thread from async code (a tokio task, or [`block_on`]): its result,
    /// as [`join`](JoinHandle::join) gives it, without blocking the executor's
    /// thread. Dropping the future detaches the thread.
    fn into_future(self) -> JoinFuture<T> {
        JoinFuture {
            handle: Some(self),
            forward: None,
        }
    }
}
