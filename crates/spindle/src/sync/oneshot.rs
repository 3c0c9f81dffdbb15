//! One-shot channels: one message, sent once, by a [`Sender`] that is used up by it.
//!
//! The receiver may wait for the message from a spindle thread or an OS thread, with
//! [`recv`](Receiver::recv), [`try_recv`](Receiver::try_recv),
//! [`recv_timeout`](Receiver::recv_timeout), or in [`select!`](crate::select). A sender
//! dropped without sending disconnects the channel: the receiver gets
//! [`RecvError`]. Built on the channel core of [`mpsc`](super::mpsc) with room for the
//! one message, so a send never waits.
//!
//! # Examples
//!
//! ```
//! use spindle::sync::oneshot;
//!
//! spindle::run(|| {
//!     let (tx, rx) = oneshot::channel();
//!     spindle::spawn(move || tx.send(6 * 7).unwrap());
//!     assert_eq!(rx.recv(), Ok(42));
//!     // The sender is used up: nothing more can come.
//!     assert!(rx.recv().is_err());
//! });
//! ```

use std::fmt;
use std::time::Duration;

use super::chan::{Chan, Wait};
use crate::loom::Arc;

pub use super::chan::{RecvError, RecvTimeoutError, TryRecvError};

/// A new one-shot channel.
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let c = Chan::new(Some(1));
    (Sender { chan: c.clone() }, Receiver { chan: c })
}

/// The sending half of a one-shot channel; [`send`](Sender::send) uses it up.
pub struct Sender<T> {
    chan: Arc<Chan<T>>,
}

/// The receiving half of a one-shot channel.
pub struct Receiver<T> {
    chan: Arc<Chan<T>>,
}

impl<T> Sender<T> {
    /// Sends the message; never waits.
    ///
    /// # Errors
    ///
    /// The message back if the receiver is gone.
    pub fn send(self, msg: T) -> Result<(), T> {
        self.chan.send(msg, Wait::No).map_err(|f| match f {
            super::chan::SendFail::Full(v)
            | super::chan::SendFail::Timeout(v)
            | super::chan::SendFail::Disconnected(v) => v,
        })
    }

    /// Whether the receiver is gone (a send would fail).
    pub fn is_closed(&self) -> bool {
        self.chan.receivers_gone()
    }
}

impl<T> Receiver<T> {
    /// Waits for the message.
    ///
    /// # Errors
    ///
    /// [`RecvError`] if the sender was dropped without sending, or the message was
    /// received already.
    pub fn recv(&self) -> Result<T, RecvError> {
        self.chan.recv(Wait::FOREVER).map_err(Into::into)
    }

    /// Takes the message if it is there.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] if it was not sent yet, [`TryRecvError::Disconnected`]
    /// if it never will be.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.chan.recv(Wait::No).map_err(Into::into)
    }

    /// Waits at most `timeout` for the message.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`] if it did not come in time,
    /// [`RecvTimeoutError::Disconnected`] if it never will.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.chan.recv(Wait::timeout(timeout)).map_err(Into::into)
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.chan.drop_sender();
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.chan.drop_receiver();
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("oneshot::Sender { .. }")
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("oneshot::Receiver { .. }")
    }
}

super::select::chan_select!(recv: Receiver; send: );
