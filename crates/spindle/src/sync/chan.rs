//! The channel core shared by [`mpsc`](super::mpsc) and [`mpmc`](super::mpmc), and
//! their error types.
//!
//! All channel state — the buffer, the sender and receiver counts, the queues of
//! blocked senders and receivers — lives under one internal lock, held only for O(1)
//! work (an O(n) scan only when a timed wait gives up). A send that makes a message
//! available wakes one blocked receiver; a receive that frees buffer space wakes one
//! blocked sender. A woken waiter re-checks the state before it looks at its deadline,
//! so a wake that races a timeout is never wasted.
//!
//! A rendezvous channel (capacity 0) stores the message of a blocked `send` in the
//! buffer together with the sender's wait node: the receiver that takes the message
//! wakes that sender, so `send` returns only once the message was received.

use std::collections::VecDeque;
use std::error::Error;
use std::fmt;
use std::time::{Duration, Instant};

use super::select::Registrar;
use super::waiter::{LeaveOnUnwind, Node, Notify, WaitList, deadline_after, lock, wake_all};
use crate::loom::{Arc, Mutex as Internal};

/// Notification value of every channel wake: "the state changed, look again".
const CHANGED: u32 = 1;

/// How long an operation may wait.
#[derive(Clone, Copy)]
pub(super) enum Wait {
    /// Not at all (`try_*`).
    No,
    /// Until the deadline (`None`: the deadline is beyond the clock, wait forever).
    Until(Option<Instant>),
}

impl Wait {
    pub(super) const FOREVER: Wait = Wait::Until(None);

    pub(super) fn timeout(d: Duration) -> Wait {
        Wait::Until(deadline_after(d))
    }

    fn expired(self) -> bool {
        match self {
            Wait::No => true,
            Wait::Until(d) => d.is_some_and(|d| Instant::now() >= d),
        }
    }

    fn deadline(self) -> Option<Instant> {
        match self {
            Wait::No => Some(Instant::now()),
            Wait::Until(d) => d,
        }
    }
}

struct Entry<T> {
    msg: T,
    /// The blocked sender of a rendezvous message, woken when it is taken.
    sender: Option<Arc<Node>>,
}

struct State<T> {
    buf: VecDeque<Entry<T>>,
    senders: usize,
    receivers: usize,
    recv_waiters: WaitList,
    send_waiters: WaitList,
}

/// The shared part of a channel.
pub(super) struct Chan<T> {
    state: Internal<State<T>>,
    /// `None`: unbounded; `Some(0)`: rendezvous; `Some(n)`: at most `n` buffered.
    cap: Option<usize>,
}

/// Why a send did not deliver its message (it is handed back).
pub(super) enum SendFail<T> {
    Full(T),
    Timeout(T),
    Disconnected(T),
}

/// Why a receive got no message.
#[derive(Debug)]
pub(super) enum RecvFail {
    Empty,
    Timeout,
    Disconnected,
}

impl<T> Chan<T> {
    /// A channel with one sender and one receiver.
    pub(super) fn new(cap: Option<usize>) -> Arc<Chan<T>> {
        Arc::new(Chan {
            state: Internal::new(State {
                buf: VecDeque::new(),
                senders: 1,
                receivers: 1,
                recv_waiters: WaitList::new(),
                send_waiters: WaitList::new(),
            }),
            cap,
        })
    }

    pub(super) fn add_sender(&self) {
        lock(&self.state).senders += 1;
    }

    pub(super) fn add_receiver(&self) {
        lock(&self.state).receivers += 1;
    }

    /// The last sender gone wakes every blocked receiver (they see the disconnection).
    pub(super) fn drop_sender(&self) {
        let mut st = lock(&self.state);
        st.senders -= 1;
        if st.senders == 0 {
            let all = st.recv_waiters.notify_all(CHANGED);
            drop(st);
            wake_all(all);
        }
    }

    /// The last receiver gone wakes every blocked sender and drops buffered messages
    /// (rendezvous messages go back to their blocked senders instead).
    pub(super) fn drop_receiver(&self) {
        let mut st = lock(&self.state);
        st.receivers -= 1;
        if st.receivers != 0 {
            return;
        }
        let mut wake = st.send_waiters.notify_all(CHANGED);
        let mut dropped = Vec::new();
        let mut kept = VecDeque::new();
        for e in st.buf.drain(..) {
            match e.sender {
                // The blocked sender takes its message back (it finds the entry and
                // sees no receivers); no receiver can come back to take it.
                Some(ref n) => {
                    wake.push(Notify::new(n.clone(), CHANGED));
                    kept.push_back(e);
                }
                None => dropped.push(e.msg),
            }
        }
        st.buf = kept;
        drop(st);
        wake_all(wake);
        // User destructors run outside the internal lock.
        drop(dropped);
    }

    /// Sends `msg`, waiting at most as `wait` says.
    pub(super) fn send(&self, msg: T, wait: Wait) -> Result<(), SendFail<T>> {
        let mut st = lock(&self.state);
        loop {
            if st.receivers == 0 {
                return Err(SendFail::Disconnected(msg));
            }
            match self.cap {
                Some(cap) if cap > 0 && st.buf.len() >= cap => {}
                // A receiver still in the list was queued when the buffer was empty and
                // no send has picked it since: it will take the message.
                Some(0) if st.recv_waiters.has_live() => {
                    Chan::deliver(st, msg);
                    return Ok(());
                }
                // No receiver waits: a blocking send queues the message with its node
                // and waits until it is taken.
                Some(0) if matches!(wait, Wait::Until(_)) => {
                    return self.rendezvous(st, msg, wait);
                }
                Some(0) => {}
                _ => {
                    Chan::deliver(st, msg);
                    return Ok(());
                }
            }
            // Full (or a rendezvous try_send with nobody waiting).
            if wait.expired() {
                return Err(match wait {
                    Wait::No => SendFail::Full(msg),
                    Wait::Until(_) => SendFail::Timeout(msg),
                });
            }
            let node = st.send_waiters.push(0, false);
            drop(st);
            // Unwinding with a wakeup (room was made): another sender takes it.
            let v = self.wait_in(&node, &wait, |st| &mut st.send_waiters);
            st = lock(&self.state);
            if v == 0 && node.notified() == 0 {
                st.send_waiters.remove(&node);
            }
        }
    }

    /// Buffers `msg` and wakes one blocked receiver.
    fn deliver(mut st: super::waiter::Locked<'_, State<T>>, msg: T) {
        st.buf.push_back(Entry { msg, sender: None });
        let n = st.recv_waiters.notify_one(CHANGED);
        drop(st);
        if let Some(n) = n {
            n.wake();
        }
    }

    /// A blocking rendezvous send: queue the message with our node, wait until a
    /// receiver takes it (it notifies the node), the receivers disconnect, or the
    /// deadline passes (then take the message back).
    fn rendezvous(
        &self,
        mut st: super::waiter::Locked<'_, State<T>>,
        msg: T,
        wait: Wait,
    ) -> Result<(), SendFail<T>> {
        let node = Node::new(0);
        st.buf.push_back(Entry {
            msg,
            sender: Some(node.clone()),
        });
        let r = st.recv_waiters.notify_one(CHANGED);
        drop(st);
        if let Some(r) = r {
            r.wake();
        }
        /// Takes our message back if the sender unwinds before a receiver took it.
        struct TakeBack<'a, T> {
            chan: &'a Chan<T>,
            node: &'a Arc<Node>,
            armed: bool,
        }
        impl<T> Drop for TakeBack<'_, T> {
            fn drop(&mut self) {
                if !self.armed {
                    return;
                }
                let mut st = lock(&self.chan.state);
                let pos = st
                    .buf
                    .iter()
                    .position(|e| e.sender.as_ref().is_some_and(|n| Arc::ptr_eq(n, self.node)));
                let taken = pos.and_then(|i| st.buf.remove(i));
                drop(st);
                drop(taken);
            }
        }
        let mut take_back = TakeBack {
            chan: self,
            node: &node,
            armed: true,
        };
        loop {
            node.wait(wait.deadline(), crate::task::dump::WaitReason::Channel);
            let mut st = lock(&self.state);
            let pos = st
                .buf
                .iter()
                .position(|e| e.sender.as_ref().is_some_and(|n| Arc::ptr_eq(n, &node)));
            take_back.armed = false;
            let Some(i) = pos else {
                // Taken by a receiver.
                return Ok(());
            };
            if st.receivers == 0 {
                let e = st.buf.remove(i).expect("entry found above");
                return Err(SendFail::Disconnected(e.msg));
            }
            if wait.expired() {
                let e = st.buf.remove(i).expect("entry found above");
                return Err(SendFail::Timeout(e.msg));
            }
            // Not taken, receivers remain, not expired: the wait returned without a
            // notification (it is only notified when taken or disconnected); wait on.
            debug_assert_eq!(node.notified(), 0);
            take_back.armed = true;
        }
    }

    /// Waits on `node` (queued in the list `list` selects) as `wait` allows. A thread
    /// that unwinds out of the wait leaves the list, or, if it was notified already,
    /// passes the wakeup to the next waiter of that list.
    fn wait_in(
        &self,
        node: &Arc<Node>,
        wait: &Wait,
        list: fn(&mut State<T>) -> &mut WaitList,
    ) -> u32 {
        let leave = LeaveOnUnwind::new(
            &self.state,
            node,
            list,
            |_: &mut State<T>| {},
            |_| {
                let n = list(&mut lock(&self.state)).notify_one(CHANGED);
                if let Some(n) = n {
                    n.wake();
                }
            },
        );
        let v = node.wait(wait.deadline(), crate::task::dump::WaitReason::Channel);
        leave.done();
        v
    }

    /// Takes the first message, and the waiter to wake for it (after the lock is
    /// released): its rendezvous sender, or a sender blocked on a full buffer.
    fn pop(st: &mut State<T>) -> Option<(T, Option<Notify>)> {
        let e = st.buf.pop_front()?;
        let n = match e.sender {
            // A rendezvous sender: its message is taken, let it return.
            Some(s) => Some(Notify::new(s, CHANGED)),
            // A buffered message: one slot is free for a blocked sender.
            None => st.send_waiters.notify_one(CHANGED),
        };
        Some((e.msg, n))
    }

    /// Receives a message, waiting at most as `wait` says.
    pub(super) fn recv(&self, wait: Wait) -> Result<T, RecvFail> {
        let mut st = lock(&self.state);
        loop {
            if let Some((msg, n)) = Chan::pop(&mut st) {
                drop(st);
                if let Some(n) = n {
                    n.wake();
                }
                return Ok(msg);
            }
            if st.senders == 0 {
                return Err(RecvFail::Disconnected);
            }
            if wait.expired() {
                return Err(match wait {
                    Wait::No => RecvFail::Empty,
                    Wait::Until(_) => RecvFail::Timeout,
                });
            }
            let node = st.recv_waiters.push(0, false);
            self.receiver_queued(st);
            // Unwinding with a wakeup (a message came): another receiver takes it.
            let v = self.wait_in(&node, &wait, |st| &mut st.recv_waiters);
            st = lock(&self.state);
            if v == 0 && node.notified() == 0 {
                st.recv_waiters.remove(&node);
            }
        }
    }

    /// A receiver just queued: on a rendezvous channel, a select that offers a message
    /// (queued as a sender) may now deliver it; wakes one. Releases the lock.
    fn receiver_queued(&self, mut st: super::waiter::Locked<'_, State<T>>) {
        let offer = if self.cap == Some(0) {
            st.send_waiters.notify_one(CHANGED)
        } else {
            None
        };
        drop(st);
        if let Some(n) = offer {
            n.wake();
        }
    }

    /// A select's receive, if it can complete now: a message, or the disconnection.
    pub(super) fn select_recv(&self) -> Option<Result<T, RecvError>> {
        match self.recv(Wait::No) {
            Ok(v) => Some(Ok(v)),
            Err(RecvFail::Disconnected) => Some(Err(RecvError)),
            Err(RecvFail::Empty | RecvFail::Timeout) => None,
        }
    }

    /// A select's send, if it can complete now (delivered, or the receivers are
    /// gone); else the message back. A rendezvous message is delivered only to a
    /// receiver already waiting.
    pub(super) fn select_send(&self, msg: T) -> Result<Result<(), SendError<T>>, T> {
        match self.send(msg, Wait::No) {
            Ok(()) => Ok(Ok(())),
            Err(SendFail::Disconnected(v)) => Ok(Err(SendError(v))),
            Err(SendFail::Full(v) | SendFail::Timeout(v)) => Err(v),
        }
    }

    /// A select's receive, under one lock: completes it if it can (a message, or the
    /// disconnection), else queues a node of the select (`reg`) as a receiver.
    pub(super) fn select_recv_or_register(
        &self,
        reg: &mut Registrar,
    ) -> Option<Result<T, RecvError>> {
        let mut st = lock(&self.state);
        if let Some((msg, n)) = Chan::pop(&mut st) {
            drop(st);
            if let Some(n) = n {
                n.wake();
            }
            return Some(Ok(msg));
        }
        if st.senders == 0 {
            return Some(Err(RecvError));
        }
        reg.enqueue(&mut st.recv_waiters);
        self.receiver_queued(st);
        None
    }

    /// A select's send, under one lock: completes it if it can (delivered, or the
    /// receivers are gone), else queues a node of the select as a sender and hands the
    /// message back.
    pub(super) fn select_send_or_register(
        &self,
        msg: T,
        reg: &mut Registrar,
    ) -> Result<Result<(), SendError<T>>, T> {
        let mut st = lock(&self.state);
        if st.receivers == 0 {
            return Ok(Err(SendError(msg)));
        }
        let room = match self.cap {
            None => true,
            Some(0) => st.recv_waiters.has_live(),
            Some(cap) => st.buf.len() < cap,
        };
        if room {
            Chan::deliver(st, msg);
            return Ok(Ok(()));
        }
        reg.enqueue(&mut st.send_waiters);
        Err(msg)
    }

    /// A select that was woken for one of its operations and did not act on it gives
    /// the wakeup to the next waiter of that list.
    pub(super) fn pass_on(&self, recv: bool) {
        let mut st = lock(&self.state);
        let n = if recv {
            st.recv_waiters.notify_one(CHANGED)
        } else {
            st.send_waiters.notify_one(CHANGED)
        };
        drop(st);
        if let Some(n) = n {
            n.wake();
        }
    }

    /// Messages in the buffer now (including rendezvous messages whose senders wait).
    pub(super) fn len(&self) -> usize {
        lock(&self.state).buf.len()
    }

    /// Whether every receiver is gone.
    pub(super) fn receivers_gone(&self) -> bool {
        lock(&self.state).receivers == 0
    }

    pub(super) fn capacity(&self) -> Option<usize> {
        self.cap
    }
}

/// [`send`](super::mpsc::Sender::send) failed: every receiver is gone. Carries the
/// message back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub struct SendError<T>(pub T);

/// [`recv`](super::mpsc::Receiver::recv) failed: the channel is empty and every sender
/// is gone, so no message can ever arrive.
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub struct RecvError;

/// Why [`try_recv`](super::mpsc::Receiver::try_recv) returned no message.
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub enum TryRecvError {
    /// The channel is empty right now; senders remain.
    Empty,
    /// The channel is empty and every sender is gone.
    Disconnected,
}

/// Why [`recv_timeout`](super::mpsc::Receiver::recv_timeout) returned no message.
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub enum RecvTimeoutError {
    /// No message arrived within the timeout; senders remain.
    Timeout,
    /// The channel is empty and every sender is gone.
    Disconnected,
}

/// Why [`try_send`](super::mpsc::SyncSender::try_send) did not send. Carries the
/// message back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum TrySendError<T> {
    /// The buffer is full (or, on a rendezvous channel, no receiver is waiting).
    Full(T),
    /// Every receiver is gone.
    Disconnected(T),
}

/// Why [`send_timeout`](super::mpsc::SyncSender::send_timeout) did not send. Carries
/// the message back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum SendTimeoutError<T> {
    /// The buffer stayed full (or no receiver took the rendezvous message) for the
    /// whole timeout.
    Timeout(T),
    /// Every receiver is gone.
    Disconnected(T),
}

impl<T> SendError<T> {
    /// The message that was not sent.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> TrySendError<T> {
    /// The message that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(v) | TrySendError::Disconnected(v) => v,
        }
    }
}

impl<T> SendTimeoutError<T> {
    /// The message that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            SendTimeoutError::Timeout(v) | SendTimeoutError::Disconnected(v) => v,
        }
    }
}

impl<T> From<SendFail<T>> for SendError<T> {
    fn from(f: SendFail<T>) -> SendError<T> {
        match f {
            SendFail::Full(v) | SendFail::Timeout(v) | SendFail::Disconnected(v) => SendError(v),
        }
    }
}

impl<T> From<SendFail<T>> for TrySendError<T> {
    fn from(f: SendFail<T>) -> TrySendError<T> {
        match f {
            SendFail::Full(v) | SendFail::Timeout(v) => TrySendError::Full(v),
            SendFail::Disconnected(v) => TrySendError::Disconnected(v),
        }
    }
}

impl<T> From<SendFail<T>> for SendTimeoutError<T> {
    fn from(f: SendFail<T>) -> SendTimeoutError<T> {
        match f {
            SendFail::Full(v) | SendFail::Timeout(v) => SendTimeoutError::Timeout(v),
            SendFail::Disconnected(v) => SendTimeoutError::Disconnected(v),
        }
    }
}

impl From<RecvFail> for RecvError {
    fn from(_: RecvFail) -> RecvError {
        RecvError
    }
}

impl From<RecvFail> for TryRecvError {
    fn from(f: RecvFail) -> TryRecvError {
        match f {
            RecvFail::Disconnected => TryRecvError::Disconnected,
            RecvFail::Empty | RecvFail::Timeout => TryRecvError::Empty,
        }
    }
}

impl From<RecvFail> for RecvTimeoutError {
    fn from(f: RecvFail) -> RecvTimeoutError {
        match f {
            RecvFail::Disconnected => RecvTimeoutError::Disconnected,
            RecvFail::Empty | RecvFail::Timeout => RecvTimeoutError::Timeout,
        }
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError { .. }")
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Disconnected(_) => f.write_str("Disconnected(..)"),
        }
    }
}

impl<T> fmt::Debug for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTimeoutError::Timeout(_) => f.write_str("Timeout(..)"),
            SendTimeoutError::Disconnected(_) => f.write_str("Disconnected(..)"),
        }
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sending on a channel whose receivers are all gone")
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("receiving on an empty channel whose senders are all gone")
    }
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TryRecvError::Empty => "receiving on an empty channel (senders remain)",
            TryRecvError::Disconnected => {
                "receiving on an empty channel whose senders are all gone"
            }
        })
    }
}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecvTimeoutError::Timeout => "timed out waiting to receive on a channel",
            RecvTimeoutError::Disconnected => {
                "receiving on an empty channel whose senders are all gone"
            }
        })
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrySendError::Full(_) => {
                "sending on a full channel (or a rendezvous channel no receiver waits on)"
            }
            TrySendError::Disconnected(_) => "sending on a channel whose receivers are all gone",
        })
    }
}

impl<T> fmt::Display for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendTimeoutError::Timeout(_) => "timed out waiting to send on a full channel",
            SendTimeoutError::Disconnected(_) => {
                "sending on a channel whose receivers are all gone"
            }
        })
    }
}

impl<T> Error for SendError<T> {}
impl Error for RecvError {}
impl Error for TryRecvError {}
impl Error for RecvTimeoutError {}
impl<T> Error for TrySendError<T> {}
impl<T> Error for SendTimeoutError<T> {}
