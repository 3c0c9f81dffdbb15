//! [`JoinSet`]: a set of spindle threads joined in the order they finish.
//!
//! Each thread's closure carries a notice that sends the thread's key on the set's
//! channel when the closure ends — returned, panicked, or unwound by a cancel — or is
//! dropped without running (a thread cancelled before it started, or not spawned at
//! all). `join_next` receives a key and joins that thread, whose result is then
//! written or about to be.

use std::collections::HashMap;
use std::fmt;

use crate::error::SpawnError;
use crate::sync::mpsc;

use super::api::Thread;
use super::builder::Builder;
use super::join::JoinHandle;

/// A set of spindle threads of one result type, joined in the order they finish.
///
/// [`spawn`](Self::spawn) adds a thread; [`join_next`](Self::join_next) waits for the
/// next one to finish and returns its result, `None` once the set is empty.
/// [`cancel_all`](Self::cancel_all) cancels every thread of the set (each unwinds at
/// its next blocking point, see [`JoinHandle::cancel`]), and dropping the set does
/// too, as tokio's `JoinSet` does: threads left in a dropped set are cancelled and
/// detached.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// spindle::run(|| {
///     let mut set = spindle::JoinSet::new();
///     for ms in [30u64, 10, 20] {
///         set.spawn(move || {
///             spindle::sleep(Duration::from_millis(ms));
///             ms
///         });
///     }
///     let mut order = Vec::new();
///     while let Some(r) = set.join_next() {
///         order.push(r.unwrap());
///     }
///     assert_eq!(order, [10, 20, 30]);
/// });
/// ```
pub struct JoinSet<T> {
    handles: HashMap<u64, JoinHandle<T>>,
    next_key: u64,
    done_tx: mpsc::Sender<u64>,
    done_rx: mpsc::Receiver<u64>,
}

/// Sends its key when dropped: the thread's closure ended, or was dropped unrun.
struct Notice {
    tx: mpsc::Sender<u64>,
    key: u64,
}

impl Drop for Notice {
    fn drop(&mut self) {
        // The set holds a sender and its receiver; a set dropped already makes this fail,
        // and nobody waits then.
        let _ = self.tx.send(self.key);
    }
}

impl<T: Send + 'static> JoinSet<T> {
    /// An empty set.
    pub fn new() -> JoinSet<T> {
        let (done_tx, done_rx) = mpsc::channel();
        JoinSet {
            handles: HashMap::new(),
            next_key: 0,
            done_tx,
            done_rx,
        }
    }

    /// Spawns `f` as a thread of the set (as [`spawn`](crate::spawn) does); returns
    /// its handle.
    ///
    /// # Panics
    ///
    /// As [`spawn`](crate::spawn): outside a runtime, or if the thread cannot be made.
    pub fn spawn<F>(&mut self, f: F) -> Thread
    where
        F: FnOnce() -> T + Send + 'static,
    {
        match self.spawn_with(Builder::new(), f) {
            Ok(t) => t,
            Err(e) => panic!("JoinSet::spawn failed: {e}"),
        }
    }

    /// Spawns `f` with `builder`'s attributes as a thread of the set.
    ///
    /// # Errors
    ///
    /// As [`Builder::spawn`]; the set is unchanged then.
    pub fn spawn_with<F>(&mut self, builder: Builder, f: F) -> Result<Thread, SpawnError>
    where
        F: FnOnce() -> T + Send + 'static,
    {
        let key = self.next_key;
        self.next_key += 1;
        let notice = Notice {
            tx: self.done_tx.clone(),
            key,
        };
        let h = builder.spawn(move || {
            let _notice = notice;
            f()
        })?;
        let t = h.thread().clone();
        self.handles.insert(key, h);
        Ok(t)
    }

    /// Waits for the next thread of the set to finish and returns its result (`Err`
    /// with the panic payload, or [`Cancelled`](crate::Cancelled)); `None` if the set
    /// is empty.
    pub fn join_next(&mut self) -> Option<std::thread::Result<T>> {
        while !self.handles.is_empty() {
            let key = self.done_rx.recv().expect("the set holds a sender");
            if let Some(r) = self.take(key) {
                return Some(r);
            }
        }
        None
    }

    /// The result of a thread of the set that finished already, if any.
    pub fn try_join_next(&mut self) -> Option<std::thread::Result<T>> {
        while let Ok(key) = self.done_rx.try_recv() {
            if let Some(r) = self.take(key) {
                return Some(r);
            }
        }
        None
    }

    /// Waits for every thread of the set; their results in the order they finished.
    pub fn join_all(mut self) -> Vec<std::thread::Result<T>> {
        let mut all = Vec::with_capacity(self.len());
        while let Some(r) = self.join_next() {
            all.push(r);
        }
        all
    }

    fn take(&mut self, key: u64) -> Option<std::thread::Result<T>> {
        // A key without a handle is a closure dropped by a spawn that failed.
        self.handles.remove(&key).map(JoinHandle::join)
    }
}

impl<T> JoinSet<T> {
    /// The number of threads in the set (finished ones not joined yet included).
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Whether the set has no thread.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Cancels every thread of the set (see [`JoinHandle::cancel`]); they stay in
    /// the set, and [`join_next`](JoinSet::join_next) returns their results.
    pub fn cancel_all(&self) {
        for h in self.handles.values() {
            h.cancel();
        }
    }
}

impl<T: Send + 'static> Default for JoinSet<T> {
    fn default() -> JoinSet<T> {
        JoinSet::new()
    }
}

impl<T> Drop for JoinSet<T> {
    /// Cancels the threads left; their handles are dropped (detached).
    fn drop(&mut self) {
        self.cancel_all();
    }
}

impl<T> fmt::Debug for JoinSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinSet").field("len", &self.len()).finish()
    }
}
