//! Broadcast channels: every receiver gets every message, from a bounded ring that
//! keeps the last `capacity` messages.
//!
//! A [`send`](Sender::send) never waits: when the ring is full it drops the oldest
//! message. A receiver that falls more than `capacity` messages behind gets
//! [`RecvError::Lagged`] with the number it missed, once, and then goes on from the
//! oldest message still kept. Receivers made with [`Sender::subscribe`] start with
//! the next message sent; a cloned receiver starts where its original is. Messages
//! are cloned out to each receiver (`T: Clone`).
//!
//! All state sits under one internal lock, held for O(1) work; a send wakes every
//! waiting receiver. Receivers wait from spindle threads or OS threads, or in
//! [`select!`](crate::select).
//!
//! # Examples
//!
//! ```
//! use spindle::sync::broadcast::{self, RecvError};
//!
//! spindle::run(|| {
//!     let (tx, rx) = broadcast::channel(2);
//!     let late = tx.subscribe();
//!     for i in 1..=3 {
//!         tx.send(i).unwrap();
//!     }
//!     // Both receivers missed message 1: the ring keeps 2.
//!     for r in [&rx, &late] {
//!         assert_eq!(r.recv(), Err(RecvError::Lagged(1)));
//!         assert_eq!(r.recv(), Ok(2));
//!         assert_eq!(r.recv(), Ok(3));
//!     }
//!     drop(tx);
//!     assert_eq!(rx.recv(), Err(RecvError::Closed));
//! });
//! ```

use std::cell::Cell;
use std::collections::VecDeque;
use std::error::Error;
use std::fmt;
use std::time::{Duration, Instant};

use super::waiter::{WaitList, deadline_after, lock, wait_or_remove, wake_all};
use crate::loom::{Arc, Mutex as Internal};
use crate::task::dump::WaitReason;

/// Notification value: "a message came, or the senders left".
const CHANGED: u32 = 1;

struct State<T> {
    /// The kept messages, oldest first; `buf[0]` is message number `head`.
    buf: VecDeque<T>,
    head: u64,
    senders: usize,
    receivers: usize,
    waiters: WaitList,
}

impl<T> State<T> {
    /// The number the next message sent will get.
    fn tail(&self) -> u64 {
        self.head + self.buf.len() as u64
    }
}

struct Shared<T> {
    state: Internal<State<T>>,
    cap: usize,
}

/// A new broadcast channel that keeps the last `capacity` messages.
///
/// # Panics
///
/// If `capacity` is 0: a ring must keep at least one message; pass 1 or more.
pub fn channel<T: Clone>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    assert!(
        capacity > 0,
        "broadcast::channel(0): a broadcast channel keeps at least one message; pass a capacity of 1 or more"
    );
    let shared = Arc::new(Shared {
        state: Internal::new(State {
            buf: VecDeque::with_capacity(capacity),
            head: 0,
            senders: 1,
            receivers: 1,
            waiters: WaitList::new(),
        }),
        cap: capacity,
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver {
            shared,
            next: Cell::new(0),
        },
    )
}

/// The sending half of a broadcast channel. Clone it for more senders.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// A receiving half of a broadcast channel: its own position in the stream.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// The number of the next message this receiver reads.
    next: Cell<u64>,
}

/// [`Sender::send`] found no receiver; the message is handed back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub struct SendError<T>(pub T);

/// Why [`Receiver::recv`] returned no message.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum RecvError {
    /// Every sender is gone and this receiver read every message kept.
    Closed,
    /// The receiver fell behind and this many messages were dropped before it read
    /// them; the next receive gets the oldest message kept.
    Lagged(u64),
}

/// Why [`Receiver::try_recv`] returned no message.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum TryRecvError {
    /// No new message yet; senders remain.
    Empty,
    /// Every sender is gone and this receiver read every message kept.
    Closed,
    /// The receiver missed this many messages (see [`RecvError::Lagged`]).
    Lagged(u64),
}

/// Why [`Receiver::recv_timeout`] returned no message.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum RecvTimeoutError {
    /// No new message within the timeout; senders remain.
    Timeout,
    /// Every sender is gone and this receiver read every message kept.
    Closed,
    /// The receiver missed this many messages (see [`RecvError::Lagged`]).
    Lagged(u64),
}

impl<T> Sender<T> {
    /// Sends `msg` to every receiver; returns how many there are. Never waits: a
    /// full ring drops its oldest message.
    ///
    /// # Errors
    ///
    /// [`SendError`] with the message if there is no receiver.
    pub fn send(&self, msg: T) -> Result<usize, SendError<T>> {
        let mut st = lock(&self.shared.state);
        if st.receivers == 0 {
            return Err(SendError(msg));
        }
        st.buf.push_back(msg);
        let dropped = if st.buf.len() > self.shared.cap {
            st.head += 1;
            st.buf.pop_front()
        } else {
            None
        };
        let n = st.receivers;
        let all = st.waiters.notify_all(CHANGED);
        drop(st);
        wake_all(all);
        // A user destructor runs outside the internal lock.
        drop(dropped);
        Ok(n)
    }

    /// A new receiver that gets the messages sent from now on.
    pub fn subscribe(&self) -> Receiver<T> {
        let mut st = lock(&self.shared.state);
        st.receivers += 1;
        let next = st.tail();
        drop(st);
        Receiver {
            shared: self.shared.clone(),
            next: Cell::new(next),
        }
    }

    /// The number of receivers now.
    pub fn receiver_count(&self) -> usize {
        lock(&self.shared.state).receivers
    }
}

/// What a receive found under the lock.
enum Look<T> {
    Msg(T),
    Lagged(u64),
    Closed,
    Empty,
}

impl<T: Clone> Receiver<T> {
    /// Waits for the next message.
    ///
    /// # Errors
    ///
    /// [`RecvError::Lagged`] if this receiver missed messages (once; the next call
    /// reads on), [`RecvError::Closed`] once every sender is gone and every kept
    /// message was read.
    pub fn recv(&self) -> Result<T, RecvError> {
        match self.wait(None) {
            Ok(v) => Ok(v),
            Err(RecvTimeoutError::Lagged(n)) => Err(RecvError::Lagged(n)),
            Err(RecvTimeoutError::Closed | RecvTimeoutError::Timeout) => Err(RecvError::Closed),
        }
    }

    /// Takes the next message if it is there.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] if no new message was sent, and as [`recv`](Self::recv).
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        match self.look(&mut lock(&self.shared.state)) {
            Look::Msg(v) => Ok(v),
            Look::Lagged(n) => Err(TryRecvError::Lagged(n)),
            Look::Closed => Err(TryRecvError::Closed),
            Look::Empty => Err(TryRecvError::Empty),
        }
    }

    /// Waits at most `timeout` for the next message.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`] if none came in time, and as [`recv`](Self::recv).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.wait(Some(deadline_after(timeout)))
    }

    /// `deadline`: `None` waits forever; `Some(None)` is a deadline beyond the clock.
    fn wait(&self, deadline: Option<Option<Instant>>) -> Result<T, RecvTimeoutError> {
        loop {
            let mut st = lock(&self.shared.state);
            match self.look(&mut st) {
                Look::Msg(v) => return Ok(v),
                Look::Lagged(n) => return Err(RecvTimeoutError::Lagged(n)),
                Look::Closed => return Err(RecvTimeoutError::Closed),
                Look::Empty => {}
            }
            let d = deadline.flatten();
            if d.is_some_and(|d| Instant::now() >= d) {
                return Err(RecvTimeoutError::Timeout);
            }
            let node = st.waiters.push(0, false);
            drop(st);
            // Every waiter is woken by a send: a wakeup this one does not use is
            // nobody else's, so nothing is passed on.
            wait_or_remove(
                &self.shared.state,
                &node,
                d,
                WaitReason::Signal,
                |st| &mut st.waiters,
                |_| {},
                |_| {},
            );
        }
    }

    /// Reads the receiver's next message, or why there is none, under the lock.
    fn look(&self, st: &mut State<T>) -> Look<T> {
        let next = self.next.get();
        if next < st.head {
            self.next.set(st.head);
            return Look::Lagged(st.head - next);
        }
        if next < st.tail() {
            self.next.set(next + 1);
            return Look::Msg(st.buf[(next - st.head) as usize].clone());
        }
        if st.senders == 0 {
            Look::Closed
        } else {
            Look::Empty
        }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Sender<T> {
        lock(&self.shared.state).senders += 1;
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Clone for Receiver<T> {
    /// A receiver at the same position as this one.
    fn clone(&self) -> Receiver<T> {
        lock(&self.shared.state).receivers += 1;
        Receiver {
            shared: self.shared.clone(),
            next: Cell::new(self.next.get()),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut st = lock(&self.shared.state);
        st.senders -= 1;
        if st.senders == 0 {
            let all = st.waiters.notify_all(CHANGED);
            drop(st);
            wake_all(all);
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        lock(&self.shared.state).receivers -= 1;
    }
}

impl<T> super::select::sealed::Sealed for Receiver<T> {}

impl<T: Clone> super::select::SelectRecv for Receiver<T> {
    type Output = Result<T, RecvError>;
    fn select_try(&self) -> Option<Self::Output> {
        match self.try_recv() {
            Ok(v) => Some(Ok(v)),
            Err(TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
            Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
            Err(TryRecvError::Empty) => None,
        }
    }
    fn select_try_or_register(&self, reg: &mut super::select::Registrar) -> Option<Self::Output> {
        let mut st = lock(&self.shared.state);
        match self.look(&mut st) {
            Look::Msg(v) => Some(Ok(v)),
            Look::Lagged(n) => Some(Err(RecvError::Lagged(n))),
            Look::Closed => Some(Err(RecvError::Closed)),
            Look::Empty => {
                reg.enqueue(&mut st.waiters);
                None
            }
        }
    }
    fn select_pass_on(&self) {
        // A send wakes every waiter: nobody else needed this one's wakeup.
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("broadcast::Sender { .. }")
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("broadcast::Receiver")
            .field("next", &self.next.get())
            .finish()
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError { .. }")
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("broadcasting on a channel with no receivers: subscribe one first")
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Closed => f.write_str("every broadcast sender is gone"),
            RecvError::Lagged(n) => write!(
                f,
                "this receiver fell behind and missed {n} messages; the next receive reads on"
            ),
        }
    }
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("no new broadcast message yet"),
            TryRecvError::Closed => RecvError::Closed.fmt(f),
            TryRecvError::Lagged(n) => RecvError::Lagged(*n).fmt(f),
        }
    }
}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvTimeoutError::Timeout => f.write_str("timed out waiting for a broadcast message"),
            RecvTimeoutError::Closed => RecvError::Closed.fmt(f),
            RecvTimeoutError::Lagged(n) => RecvError::Lagged(*n).fmt(f),
        }
    }
}

impl<T> Error for SendError<T> {}
impl Error for RecvError {}
impl Error for TryRecvError {}
impl Error for RecvTimeoutError {}
