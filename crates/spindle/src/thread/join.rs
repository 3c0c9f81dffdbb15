//! [`JoinHandle`]: joining a thread (or detaching it by dropping the handle).

use std::fmt;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::sync::atomic::Ordering;

use crate::sched::guard::PreemptGuard;
use crate::sched::wait::block;
use crate::task::current::current_tcb;
use crate::task::slot;
use crate::task::slot::{Channel, F_DONE, F_HANDLE_GONE, F_JOINED, F_JOINER, Slot};

use super::api::Thread;

/// An owned permission to join a thread. Dropping it detaches the thread.
pub struct JoinHandle<T> {
    pub(super) thread: Thread,
    /// The variant a named spawn picked.
    pub(crate) variant: Option<&'static str>,
    pub(super) _result: PhantomData<T>,
}

// SAFETY: the handle only moves a `T` out of the slot (after the thread finished), so it is as Send as `T`; the Thread inside is Send + Sync.
unsafe impl<T: Send> Send for JoinHandle<T> {}
// SAFETY: `&JoinHandle` gives access to the Thread and `is_finished` only.
unsafe impl<T> Sync for JoinHandle<T> {}

impl<T> JoinHandle<T> {
    /// The thread's handle.
    pub fn thread(&self) -> &Thread {
        &self.thread
    }

    /// The variant of the named thread that runs, for a handle from
    /// [`spawn_named`](crate::spawn_named) (`None` for a closure spawn).
    pub fn variant(&self) -> Option<&'static str> {
        self.variant
    }

    /// Cancels the thread: it unwinds from its next blocking point, or at once if it
    /// is blocked, and [`join`](Self::join) returns `Err` whose payload downcasts to
    /// [`Cancelled`](crate::Cancelled). See [`Thread::cancel`] for the blocking
    /// points. Cancelling a finished thread does nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use spindle::sync::mpsc;
    ///
    /// spindle::run(|| {
    ///     let (_tx, rx) = mpsc::channel::<u32>();
    ///     let h = spindle::spawn(move || rx.recv());
    ///     h.cancel();
    ///     assert!(h.join().unwrap_err().is::<spindle::Cancelled>());
    /// });
    /// ```
    pub fn cancel(&self) {
        self.thread.cancel();
    }

    /// Whether the thread has finished (its result is ready).
    pub fn is_finished(&self) -> bool {
        self.thread.slot().word.flags() & F_DONE != 0
    }

    /// Waits for the thread to finish and returns its result, or the panic payload if
    /// it panicked. On a spindle thread the caller sleeps and its core runs others; on
    /// an OS thread the OS thread blocks.
    ///
    /// In the child of a `fork`, returns at once with an `Err` whose payload is the
    /// message "runtime not usable after fork..." (a `&'static str`): the thread lives
    /// in the parent.
    ///
    /// # Panics
    ///
    /// If the thread joins itself (it would wait for ever; `std::thread` panics too,
    /// on the OS's `EDEADLK`).
    pub fn join(self) -> std::thread::Result<T> {
        if crate::fork::forked() {
            std::mem::forget(self);
            return Err(Box::new(crate::error::FORKED));
        }
        if let Some(me) = current_tcb() {
            // SAFETY: reading the running thread's own id.
            let id = unsafe { (*me).id() };
            if id == self.thread.id {
                panic!(
                    "spindle: thread {} tried to join itself: it would wait for ever (join \
                     another thread's handle, or drop your own to detach)",
                    self.thread.id
                );
            }
        }
        let _g = PreemptGuard::new();
        let slot = self.thread.slot();
        if slot.word.flags() & F_DONE == 0 {
            // A joiner that unwinds out of the wait (cancelled, or abandoned) drops
            // the handle: the thread is detached.
            wait_done(slot, self.thread.id);
        }
        let this = ManuallyDrop::new(self);
        // SAFETY: F_DONE was observed with acquire: the result is written; the handle is its only reader and the slot cannot be freed before F_HANDLE_GONE.
        let r = unsafe { slot::read_result::<std::thread::Result<T>>(slot.result.get()) };
        // SAFETY: the thread is done and we took its result: we are the last owner.
        unsafe { slot.release(F_DONE | F_HANDLE_GONE | F_JOINED) };
        crate::sched::retire::free_slot(this.thread.id.index);
        // SAFETY: `this` is never used again.
        drop(unsafe { std::ptr::read(&this.thread) });
        r
    }
}

/// Registers the caller as the slot's joiner and sleeps until the thread is done.
pub(super) fn wait_done(slot: &Slot, id: crate::task::id::ThreadId) {
    let me = current_tcb();
    match me {
        // SAFETY: `me` is the running thread.
        Some(t) => unsafe {
            // Relaxed: published by the release in the F_JOINER fetch_or below.
            slot.joiner
                .store((*t).id().as_present_word(), Ordering::Relaxed);
        },
        None => {
            *slot.os_joiner.lock().unwrap_or_else(|e| e.into_inner()) = Some(
                std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current()))),
            )
        }
    }
    if slot.word.set(F_JOINER) & F_DONE != 0 {
        // The thread finished first and did not see us: withdraw the record.
        slot.joiner.store(0, Ordering::Relaxed);
        if me.is_none() {
            slot.os_joiner
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
        }
        return;
    }
    while slot.word.flags() & F_DONE == 0 {
        match me {
            Some(t) => block(
                t,
                Channel::Internal,
                crate::task::dump::WaitReason::Join { thread: id },
            ),
            None => std::thread::park(),
        }
    }
}

/// Wakes an OS thread by unparking it: the joiner record of an OS thread in `join`.
struct Unpark(std::thread::Thread);

impl std::task::Wake for Unpark {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.unpark();
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        let _g = PreemptGuard::new();
        let slot = self.thread.slot();
        let old = slot.word.set(F_HANDLE_GONE);
        if old & F_DONE != 0 {
            // SAFETY: the thread is done, so we let go last.
            unsafe { slot.release(old | F_HANDLE_GONE) };
            crate::sched::retire::free_slot(self.thread.id.index);
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("thread", &self.thread)
            .field("variant", &self.variant)
            .finish()
    }
}
