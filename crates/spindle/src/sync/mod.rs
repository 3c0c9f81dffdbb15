//! Fiber-aware synchronisation: [`Mutex`], [`Condvar`], [`RwLock`], channels
//! ([`mpsc`], [`mpmc`], [`oneshot`], [`broadcast`]) and [`select!`](crate::select)
//! over them ([`Select`] for a set built at run time), [`Semaphore`], [`Barrier`],
//! [`WaitGroup`] and [`CancelToken`].
//!
//! ## Blocking semantics
//!
//! Every type here works from spindle threads and from plain OS threads, and both may
//! use the same object at once:
//!
//! - A **spindle thread** that has to wait is put to sleep and its core goes on
//!   running other spindle threads. The core itself never blocks on these types
//!   (unlike `std::sync::Mutex`, which stalls every thread of the core).
//! - An **OS thread** (outside any runtime, or a runtime's scheduler context) blocks
//!   normally: it spins briefly, then sleeps in the kernel on a futex.
//!
//! Waits never touch the thread's park token: a user's `spindle::park`/`unpark`
//! pairing is unaffected by locks and channels.
//!
//! ## The wait-node protocol
//!
//! All types share one primitive (`waiter.rs`). A waiter is a heap-allocated node
//! saying who waits — a spindle thread by its id, or an OS thread — and a `state`
//! word, 0 until notified. Each type keeps its wait lists under a small internal lock
//! that is held only for O(1) list operations and never across a block.
//!
//! 1. **Waiter:** under the internal lock, re-check the condition (e.g. "the mutex is
//!    held", "the channel is empty"), push a node, release the lock, then sleep until
//!    `state != 0`: a spindle thread in the runtime's internal block (a wake that
//!    comes before it sleeps leaves a token, so it does not sleep), an OS thread in
//!    `futex_wait(state, 0)` (which does not sleep if `state` is no longer 0).
//! 2. **Waker:** under the same lock, change the state that the waiter checks, pop the
//!    node and store the notification in `state` (release); after releasing the lock,
//!    wake the node's owner. The waker holds its own reference to the node, so the
//!    waiter may return and free its side the moment it sees `state != 0`.
//! 3. **Timeout:** a waiter whose deadline passes takes the lock and reads `state`.
//!    It is only written under that lock, so the answer is final: still 0 — the node
//!    is in its list; remove it and report the timeout; non-zero — a notification won
//!    the race, and the waiter acts on it exactly as if it had come in time (a handed
//!    over permit or lock is kept, a condvar wait reports no timeout).
//!
//! **Why no wakeup is lost.** The check in step 1 and the change in step 2 happen
//! under one lock, so either the waiter sees the change and does not wait, or its node
//! is in the list before the waker looks. A node in the list is notified by the next
//! waker that pops it, and a notified waiter returns: its `state` is set before the
//! wake, a spindle thread's wake token or an OS thread's futex value makes the sleep
//! return, and the waiter loops until `state != 0`, so spurious returns (stale tokens,
//! timers, signals) are harmless. Step 3 means a timeout never drops a notification.
//! Locks whose fast path is lock-free (`Mutex`, `RwLock`, `Semaphore`) set a
//! "waiters may be queued" bit in their atomic word, with a CAS made under the
//! internal lock; a release sees that bit in its own RMW on the same word and takes
//! the slow path, which finds the node.
//!
//! Nodes live on the heap rather than on the waiter's stack so that a spindle thread
//! abandoned by its runtime while blocked (its stack reclaimed without unwinding)
//! cannot leave a dangling pointer in a wait list. The cost is one small allocation
//! per blocking wait; fast paths allocate nothing.
//!
//! ## Fairness
//!
//! - `Mutex`: waiters queue FIFO; an unlock wakes the first, which then competes with
//!   newcomers (barging keeps throughput up when a lock is re-taken in a loop). A
//!   woken waiter that loses keeps its place at the front; after losing twice, the
//!   lock is handed to it directly, so no waiter starves.
//! - `RwLock`: writer-preferring. A waiting writer stops new readers; a release wakes
//!   one writer if any waits, else every waiting reader.
//! - `Semaphore`: strictly FIFO; released permits go straight to the first waiter.
//! - `Condvar`, channels, `Barrier`, `WaitGroup`: waiters are woken in FIFO order.
//!
//! ## Fast paths
//!
//! Uncontended `Mutex::lock`/unlock, `RwLock` read/write and their releases,
//! `Semaphore` acquire/release are single atomic instructions. Channels keep their
//! buffer under their internal lock, so a `send` or a `try_recv` is one uncontended
//! lock/unlock pair around a `VecDeque` operation.

mod barrier;
pub mod broadcast;
mod chan;
mod condvar;
pub mod mpmc;
pub mod mpsc;
mod mutex;
pub mod oneshot;
mod rwlock;
pub mod select;
mod semaphore;
mod token;
mod waiter;
mod waitgroup;

pub use barrier::{Barrier, BarrierWaitResult};
pub use condvar::{Condvar, WaitTimeoutResult};
pub use mutex::{Mutex, MutexGuard};
pub use rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use select::{
    Select, SelectRecv, SelectSend, SelectTimeoutError, SelectedOperation, TrySelectError,
};
pub use semaphore::{Semaphore, SemaphorePermit};
pub use token::CancelToken;
pub use waitgroup::WaitGroup;

/// Poisoning types, re-exported from `std::sync` (the same types std's locks use).
pub use std::sync::{LockResult, PoisonError, TryLockError, TryLockResult};
