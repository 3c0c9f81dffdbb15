//! Multi-producer, single-consumer channels, like `std::sync::mpsc`, for spindle
//! threads and OS threads alike.
//!
//! [`channel`] makes an unbounded channel ([`Sender`] never waits); [`sync_channel`]
//! a bounded one ([`SyncSender`] waits while the buffer is full; capacity 0 makes a
//! rendezvous channel where each `send` waits until a receiver takes the message). A
//! blocked spindle thread sleeps and its core runs other threads; a blocked OS thread
//! blocks in the kernel. Messages from one sender arrive in the order sent.
//!
//! Disconnection follows std: when every sender is gone, `recv` drains the buffer and
//! then fails with [`RecvError`]; when the receiver is gone, sends fail and hand the
//! message back, and buffered messages are dropped.
//!
//! # Examples
//!
//! ```
//! use spindle::sync::mpsc;
//!
//! spindle::run(|| {
//!     let (tx, rx) = mpsc::channel();
//!     for i in 0..3 {
//!         let tx = tx.clone();
//!         spindle::spawn(move || tx.send(i).unwrap());
//!     }
//!     drop(tx);
//!     let mut got: Vec<i32> = rx.iter().collect(); // ends when all senders are gone
//!     got.sort();
//!     assert_eq!(got, [0, 1, 2]);
//! });
//! ```

use std::fmt;
use std::time::Duration;

use super::chan::{Chan, Wait};
use crate::loom::Arc;

pub use super::chan::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};

/// A new unbounded channel.
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let c = Chan::new(None);
    (Sender { chan: c.clone() }, Receiver { chan: c })
}

/// A new bounded channel that buffers up to `capacity` messages; with capacity 0, each
/// send waits until a receiver takes its message (a rendezvous).
///
/// # Examples
///
/// ```
/// use spindle::sync::mpsc;
///
/// spindle::run(|| {
///     let (tx, rx) = mpsc::sync_channel(1);
///     tx.send(1).unwrap();
///     assert!(matches!(tx.try_send(2), Err(mpsc::TrySendError::Full(2))));
///     assert_eq!(rx.recv(), Ok(1));
/// });
/// ```
pub fn sync_channel<T>(capacity: usize) -> (SyncSender<T>, Receiver<T>) {
    let c = Chan::new(Some(capacity));
    (SyncSender { chan: c.clone() }, Receiver { chan: c })
}

/// The sending half of an unbounded [`channel`]. Clone it for more producers.
pub struct Sender<T> {
    chan: Arc<Chan<T>>,
}

/// The sending half of a bounded [`sync_channel`]. Clone it for more producers.
pub struct SyncSender<T> {
    chan: Arc<Chan<T>>,
}

/// The receiving half of a channel. There is exactly one; for several, use
/// [`mpmc`](super::mpmc).
pub struct Receiver<T> {
    chan: Arc<Chan<T>>,
}

macro_rules! sender_methods {
    ($blocks:literal) => {
        /// Sends a message
        #[doc = $blocks]
        ///
        /// # Errors
        ///
        /// [`SendError`] (with the message) if the receiver is gone.
        pub fn send(&self, msg: T) -> Result<(), SendError<T>> {
            self.chan.send(msg, Wait::FOREVER).map_err(Into::into)
        }

        /// Sends a message if that needs no wait.
        ///
        /// # Errors
        ///
        /// [`TrySendError::Full`] if the buffer is full (on a rendezvous channel: no
        /// receiver is waiting), [`TrySendError::Disconnected`] if the receiver is
        /// gone; both carry the message.
        pub fn try_send(&self, msg: T) -> Result<(), TrySendError<T>> {
            self.chan.send(msg, Wait::No).map_err(Into::into)
        }

        /// Sends a message, waiting at most `timeout` for buffer space (on a
        /// rendezvous channel: for a receiver to take it).
        ///
        /// # Errors
        ///
        /// [`SendTimeoutError::Timeout`] when the time ran out,
        /// [`SendTimeoutError::Disconnected`] if the receiver is gone; both carry the
        /// message.
        pub fn send_timeout(&self, msg: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
            self.chan
                .send(msg, Wait::timeout(timeout))
                .map_err(Into::into)
        }
    };
}
pub(super) use sender_methods;

macro_rules! receiver_methods {
    () => {
        /// Receives a message, waiting until one arrives.
        ///
        /// # Errors
        ///
        /// [`RecvError`] once the channel is empty and every sender is gone.
        pub fn recv(&self) -> Result<T, RecvError> {
            self.chan.recv(Wait::FOREVER).map_err(Into::into)
        }

        /// Receives a message if one is there.
        ///
        /// # Errors
        ///
        /// [`TryRecvError::Empty`] if there is none now, [`TryRecvError::Disconnected`]
        /// if none can come any more.
        pub fn try_recv(&self) -> Result<T, TryRecvError> {
            self.chan.recv(Wait::No).map_err(Into::into)
        }

        /// Receives a message, waiting at most `timeout`.
        ///
        /// # Errors
        ///
        /// [`RecvTimeoutError::Timeout`] when the time ran out (never before),
        /// [`RecvTimeoutError::Disconnected`] if the channel is empty and every sender
        /// is gone.
        pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
            self.chan.recv(Wait::timeout(timeout)).map_err(Into::into)
        }

        /// An iterator that waits for each message and ends when the channel is
        /// disconnected and empty.
        pub fn iter(&self) -> Iter<'_, T> {
            Iter { rx: self }
        }

        /// An iterator over the messages there now; it never waits.
        pub fn try_iter(&self) -> TryIter<'_, T> {
            TryIter { rx: self }
        }

        /// How many messages are buffered now.
        pub fn len(&self) -> usize {
            self.chan.len()
        }

        /// Whether no message is buffered now.
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }
    };
}
pub(super) use receiver_methods;

macro_rules! iterators {
    () => {
        /// Iterator of [`Receiver::iter`]: waits for each message.
        #[derive(Debug)]
        pub struct Iter<'a, T> {
            rx: &'a Receiver<T>,
        }

        /// Iterator of [`Receiver::try_iter`]: the messages there now.
        #[derive(Debug)]
        pub struct TryIter<'a, T> {
            rx: &'a Receiver<T>,
        }

        /// Owning iterator of a [`Receiver`]: waits for each message.
        #[derive(Debug)]
        pub struct IntoIter<T> {
            rx: Receiver<T>,
        }

        impl<T> Iterator for Iter<'_, T> {
            type Item = T;
            fn next(&mut self) -> Option<T> {
                self.rx.recv().ok()
            }
        }

        impl<T> Iterator for TryIter<'_, T> {
            type Item = T;
            fn next(&mut self) -> Option<T> {
                self.rx.try_recv().ok()
            }
        }

        impl<T> Iterator for IntoIter<T> {
            type Item = T;
            fn next(&mut self) -> Option<T> {
                self.rx.recv().ok()
            }
        }

        impl<'a, T> IntoIterator for &'a Receiver<T> {
            type Item = T;
            type IntoIter = Iter<'a, T>;
            fn into_iter(self) -> Iter<'a, T> {
                self.iter()
            }
        }

        impl<T> IntoIterator for Receiver<T> {
            type Item = T;
            type IntoIter = IntoIter<T>;
            fn into_iter(self) -> IntoIter<T> {
                IntoIter { rx: self }
            }
        }

        impl<T> Drop for Receiver<T> {
            fn drop(&mut self) {
                self.chan.drop_receiver();
            }
        }

        impl<T> fmt::Debug for Receiver<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct("Receiver").finish_non_exhaustive()
            }
        }
    };
}
pub(super) use iterators;

macro_rules! sender_impls {
    ($name:ident) => {
        impl<T> Clone for $name<T> {
            fn clone(&self) -> $name<T> {
                self.chan.add_sender();
                $name {
                    chan: self.chan.clone(),
                }
            }
        }

        impl<T> Drop for $name<T> {
            fn drop(&mut self) {
                self.chan.drop_sender();
            }
        }

        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        }
    };
}
pub(super) use sender_impls;

impl<T> Sender<T> {
    sender_methods!("; never waits: the channel is unbounded.");
}

impl<T> SyncSender<T> {
    sender_methods!(
        ", waiting while the buffer is full (on a rendezvous channel: until a receiver takes it)."
    );

    /// The channel's capacity (0 for a rendezvous channel).
    pub fn capacity(&self) -> usize {
        self.chan.capacity().unwrap_or(usize::MAX)
    }
}

sender_impls!(Sender);
sender_impls!(SyncSender);

impl<T> Receiver<T> {
    receiver_methods!();
}

iterators!();

super::select::chan_select!(recv: Receiver; send: Sender, SyncSender);
