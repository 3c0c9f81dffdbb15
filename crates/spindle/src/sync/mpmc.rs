//! Multi-producer, multi-consumer channels: like [`mpsc`](super::mpsc), but the
//! [`Receiver`] is `Clone` too, and each message goes to exactly one receiver.
//!
//! [`channel`] is unbounded; [`sync_channel`] buffers up to its capacity (0 for a
//! rendezvous). Both return the same [`Sender`] type. Blocked receivers are served in
//! FIFO order; disconnection works as in `mpsc`, counting all receivers.
//!
//! # Examples
//!
//! ```
//! use spindle::sync::mpmc;
//!
//! spindle::run(|| {
//!     let (tx, rx) = mpmc::sync_channel(4);
//!     let workers: Vec<_> = (0..3)
//!         .map(|_| {
//!             let rx = rx.clone();
//!             spindle::spawn(move || rx.iter().sum::<u64>())
//!         })
//!         .collect();
//!     drop(rx);
//!     for i in 1..=100 {
//!         tx.send(i).unwrap();
//!     }
//!     drop(tx);
//!     let total: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
//!     assert_eq!(total, 5050);
//! });
//! ```

use std::fmt;
use std::time::Duration;

use super::chan::{Chan, Wait};
use super::mpsc::{iterators, receiver_methods, sender_impls, sender_methods};
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
/// send waits until a receiver takes its message.
pub fn sync_channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let c = Chan::new(Some(capacity));
    (Sender { chan: c.clone() }, Receiver { chan: c })
}

/// The sending half of an mpmc channel. Clone it for more producers.
pub struct Sender<T> {
    chan: Arc<Chan<T>>,
}

/// A receiving half of an mpmc channel. Clone it for more consumers; each message is
/// received once.
pub struct Receiver<T> {
    chan: Arc<Chan<T>>,
}

impl<T> Sender<T> {
    sender_methods!(
        ", waiting while a bounded buffer is full (on a rendezvous channel: until a receiver takes it; an unbounded channel never waits)."
    );

    /// The channel's capacity: `None` if unbounded (0 for a rendezvous channel).
    pub fn capacity(&self) -> Option<usize> {
        self.chan.capacity()
    }
}

sender_impls!(Sender);

impl<T> Receiver<T> {
    receiver_methods!();
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Receiver<T> {
        self.chan.add_receiver();
        Receiver {
            chan: self.chan.clone(),
        }
    }
}

iterators!();

super::select::chan_select!(recv: Receiver; send: Sender);
