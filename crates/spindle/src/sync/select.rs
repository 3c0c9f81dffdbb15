//! Waiting on several channel operations at once: [`select!`](crate::select) and the
//! [`Select`] builder.
//!
//! ## Protocol
//!
//! A select runs in rounds. Each round:
//!
//! 1. **Try or register**, operation by operation, starting at a rotating index (so
//!    no operation starves another): under the operation's channel lock, complete it
//!    if it can (a message taken or delivered, or a disconnection seen), else queue an
//!    entry of one fresh `Group` (`sync::waiter`) in that operation's wait list. The
//!    first operation that completes is the select's result; the round then closes
//!    the group.
//! 2. **Wait** on the group until a notifier claims it or the deadline passes.
//! 3. **Close** the group (`Group::close`, a CAS from 0): it tells whether a notifier
//!    claimed operation `k` first. The group's other entries stay in their lists,
//!    decided: a notifier that finds one fails its claim and moves on to the next
//!    waiter of its list, and the lists sweep them out (`sync::waiter`).
//! 4. **Complete `k`** if it was claimed and can complete; else the next round.
//!
//! **No wakeup is lost.** A notifier that claims operation `k` spends its one wakeup on
//! this select. The select then completes `k`, or finds that `k` cannot complete
//! (another thread took the message or the room), in which case no other waiter needed
//! that wakeup; if it returns with another operation instead (one that completed in
//! step 1 while `k` was being claimed), or unwinds out of its wait (a cancel or a
//! shutdown), it hands the wakeup to the next waiter of `k`'s list (`pass_on`).
//!
//! **No operation completes twice.** Operations complete only under their channel's
//! lock, one at a time, and the round returns with the first that completes.
//!
//! The loom models `loom_select_*` run a select over two channels against two
//! senders, blocking and with a deadline.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use super::waiter::{Group, WaitList, deadline_after};
use crate::loom::Arc;
use crate::task::dump::WaitReason;

/// Makes the group of one round of a select, the first time an operation cannot
/// complete at once, and queues operations in their channels' lists.
#[doc(hidden)]
pub struct Registrar {
    group: Option<Arc<Group>>,
    /// The operation being tried.
    op: u32,
}

impl Registrar {
    fn new() -> Registrar {
        Registrar { group: None, op: 0 }
    }

    /// Queues the operation being tried in `list` (under the channel's lock).
    pub(super) fn enqueue(&mut self, list: &mut WaitList) {
        let g = self.group.get_or_insert_with(Group::new);
        list.push_select(g, self.op);
    }

    /// Closes the round's group (see `Group::close`): the operation a notifier
    /// claimed, if one did. The group's other entries stay in their lists, decided:
    /// the lists drop them (see `sync::waiter`).
    fn close(&self) -> Option<usize> {
        self.group
            .as_ref()
            .and_then(|g| g.close().err())
            .map(|k| k as usize)
    }
}

pub(super) mod sealed {
    /// Only spindle's channels can be selected on.
    #[allow(unreachable_pub)]
    pub trait Sealed {}
}

/// A receive that [`select!`](crate::select) and [`Select`] can wait on: the
/// receivers of [`mpsc`](super::mpsc), [`mpmc`](super::mpmc),
/// [`oneshot`](super::oneshot) and [`broadcast`](super::broadcast), and
/// [`CancelToken`](crate::CancelToken).
pub trait SelectRecv: sealed::Sealed {
    /// What the receive gives: a message or the channel's error.
    type Output;
    #[doc(hidden)]
    fn select_try(&self) -> Option<Self::Output>;
    #[doc(hidden)]
    fn select_try_or_register(&self, reg: &mut Registrar) -> Option<Self::Output>;
    #[doc(hidden)]
    fn select_pass_on(&self);
}

/// A send that [`select!`](crate::select) and [`Select`] can wait on: the senders of
/// [`mpsc`](super::mpsc) and [`mpmc`](super::mpmc).
pub trait SelectSend: sealed::Sealed {
    /// The message type.
    type Msg;
    /// What the send gives: `Ok(())`, or the error with the message.
    type Output;
    #[doc(hidden)]
    fn select_try(&self, msg: Self::Msg) -> Result<Self::Output, Self::Msg>;
    #[doc(hidden)]
    fn select_try_or_register(
        &self,
        msg: Self::Msg,
        reg: &mut Registrar,
    ) -> Result<Self::Output, Self::Msg>;
    #[doc(hidden)]
    fn select_pass_on(&self);
}

/// One operation of a running select, its type erased.
#[doc(hidden)]
pub trait Arm {
    /// Completes the operation if it can without waiting; keeps its output.
    fn attempt(&mut self) -> bool;
    /// Completes the operation if it can, else queues a node from `reg`.
    fn attempt_or_register(&mut self, reg: &mut Registrar) -> bool;
    fn pass_on(&self);
    /// The selected object's address, whether the arm receives, and the object's
    /// type, to check a [`SelectedOperation`] is completed with the object it was
    /// built with.
    fn identity(&self) -> (*const (), bool, &'static str);
}

/// A receive operation of a select and, once it completed, its output.
#[doc(hidden)]
pub struct RecvArm<'a, R: SelectRecv + ?Sized> {
    src: &'a R,
    out: Option<R::Output>,
}

impl<'a, R: SelectRecv + ?Sized> RecvArm<'a, R> {
    pub fn new(src: &'a R) -> Self {
        RecvArm { src, out: None }
    }

    /// The output of the completed operation.
    ///
    /// # Panics
    ///
    /// If the operation did not complete (a bug of the select).
    pub fn output(&mut self) -> R::Output {
        self.out.take().expect("the selected receive completed")
    }
}

impl<R: SelectRecv + ?Sized> Arm for RecvArm<'_, R> {
    fn attempt(&mut self) -> bool {
        self.out = self.src.select_try();
        self.out.is_some()
    }
    fn attempt_or_register(&mut self, reg: &mut Registrar) -> bool {
        self.out = self.src.select_try_or_register(reg);
        self.out.is_some()
    }
    fn pass_on(&self) {
        self.src.select_pass_on();
    }
    fn identity(&self) -> (*const (), bool, &'static str) {
        (
            (self.src as *const R).cast(),
            true,
            std::any::type_name::<R>(),
        )
    }
}

/// A send operation of a select: its message until delivered, then its output.
#[doc(hidden)]
pub struct SendArm<'a, S: SelectSend + ?Sized> {
    dst: &'a S,
    msg: Option<S::Msg>,
    out: Option<S::Output>,
}

impl<'a, S: SelectSend + ?Sized> SendArm<'a, S> {
    pub fn new(dst: &'a S, msg: S::Msg) -> Self {
        SendArm {
            dst,
            msg: Some(msg),
            out: None,
        }
    }

    /// The output of the completed operation.
    ///
    /// # Panics
    ///
    /// If the operation did not complete (a bug of the select).
    pub fn output(&mut self) -> S::Output {
        self.out.take().expect("the selected send completed")
    }

    /// Sends through `f` (a try, or a try-or-register) if the message is still here.
    fn offer(&mut self, f: impl FnOnce(&S, S::Msg) -> Result<S::Output, S::Msg>) -> bool {
        // A send whose message went out already (an earlier select of a reused
        // `Select`) never completes again, and queues nothing.
        let Some(msg) = self.msg.take() else {
            return false;
        };
        match f(self.dst, msg) {
            Ok(out) => {
                self.out = Some(out);
                true
            }
            Err(msg) => {
                self.msg = Some(msg);
                false
            }
        }
    }
}

impl<S: SelectSend + ?Sized> Arm for SendArm<'_, S> {
    fn attempt(&mut self) -> bool {
        self.offer(|d, m| d.select_try(m))
    }
    fn attempt_or_register(&mut self, reg: &mut Registrar) -> bool {
        self.offer(|d, m| d.select_try_or_register(m, reg))
    }
    fn pass_on(&self) {
        self.dst.select_pass_on();
    }
    fn identity(&self) -> (*const (), bool, &'static str) {
        (
            (self.dst as *const S).cast(),
            false,
            std::any::type_name::<S>(),
        )
    }
}

/// How long a select may wait.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// Not at all (`default =>`).
    Try,
    /// Until an operation completes.
    Block,
    /// At most this long (`default(timeout) =>`).
    Timeout(Duration),
}

/// Runs a select over `arms` (see the module docs): the index of the operation that
/// completed, or `None` if none could within `mode`.
#[doc(hidden)]
pub fn run(arms: &mut [&mut dyn Arm], mode: Mode) -> Option<usize> {
    let n = arms.len();
    let deadline = match mode {
        Mode::Try => return try_all(arms, fair_start(n)),
        Mode::Block => None,
        Mode::Timeout(d) => deadline_after(d),
    };
    let start = fair_start(n);
    // Under loom a deadline is "one look" (see `waiter`): the round after the wait is
    // the last.
    let mut last_round = false;
    loop {
        if last_round || deadline.is_some_and(|d| Instant::now() >= d) {
            return try_all(arms, start);
        }
        // Step 1.
        let mut reg = Registrar::new();
        let mut done = None;
        for j in 0..n {
            let i = (start + j) % n;
            reg.op = i as u32;
            if arms[i].attempt_or_register(&mut reg) {
                done = Some(i);
                break;
            }
        }
        if let Some(i) = done {
            let claimed = reg.close();
            // A notifier claimed another operation of ours meanwhile: its wakeup is
            // not ours to keep.
            if let Some(k) = claimed
                && k != i
            {
                arms[k].pass_on();
            }
            return Some(i);
        }
        // Step 2.
        let Some(group) = reg.group.clone() else {
            // Nothing was queued: there is no operation, or every one is a send of a
            // reused `Select` whose message went out already. None can complete.
            assert!(
                deadline.is_some(),
                "this select has no operation that can complete (none at all, or only sends of a reused Select whose messages went out): it would wait forever; add an operation, or a `default` arm"
            );
            if let Some(d) = deadline {
                crate::sched::wait::sleep(d.saturating_duration_since(Instant::now()));
            }
            return None;
        };
        {
            let leave = LeaveOnUnwind {
                arms: &*arms,
                reg: &reg,
                armed: true,
            };
            group.wait(deadline, WaitReason::Select { ops: n as u32 });
            let mut leave = leave;
            leave.armed = false;
        }
        last_round = cfg!(loom) && deadline.is_some();
        // Step 3.
        let claimed = reg.close();
        // Step 4.
        if let Some(k) = claimed
            && arms[k].attempt()
        {
            return Some(k);
        }
    }
}

/// Tries each operation once, from `start`: the first that completes.
fn try_all(arms: &mut [&mut dyn Arm], start: usize) -> Option<usize> {
    let n = arms.len();
    (0..n).map(|j| (start + j) % n).find(|&i| arms[i].attempt())
}

/// Leaves a select's wait cleanly when its thread unwinds out of it (a cancel or a
/// shutdown): closes the group (its entries are then dropped by their lists) and hands
/// a wakeup claimed for it to the next waiter of that operation.
struct LeaveOnUnwind<'a, 'b> {
    arms: &'a [&'b mut dyn Arm],
    reg: &'a Registrar,
    armed: bool,
}

impl Drop for LeaveOnUnwind<'_, '_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let claimed = self.reg.close();
        if let Some(k) = claimed {
            self.arms[k].pass_on();
        }
    }
}

/// A start index for the tries that rotates per call, so that the first operation of a
/// select does not always win over the others when several are ready.
fn fair_start(n: usize) -> usize {
    // A model must replay each execution the same way: no state across them.
    if cfg!(loom) {
        return 0;
    }
    std::thread_local! {
        // Atomic (relaxed, uncontended): a spindle thread may move to another carrier
        // between its load and its store, and another thread of this carrier may
        // touch it meanwhile; a lost update only repeats a start index.
        static NEXT: std::sync::atomic::AtomicUsize = const { std::sync::atomic::AtomicUsize::new(0) };
    }
    NEXT.with(|c| {
        let v = c.load(std::sync::atomic::Ordering::Relaxed);
        c.store(v.wrapping_add(1), std::sync::atomic::Ordering::Relaxed);
        v % n.max(1)
    })
}

/// A select over a set of operations built at run time; [`select!`](crate::select)
/// is the same for a set written in the source.
///
/// Add receives ([`recv`](Select::recv)) and sends ([`send`](Select::send)), each of
/// which gets its index, then wait with [`select`](Select::select),
/// [`try_select`](Select::try_select) or [`select_timeout`](Select::select_timeout).
/// The operation that completed is already done when the select returns: finish it
/// with [`SelectedOperation::recv`] or [`SelectedOperation::send`] on the same object
/// to get its output. A select that has to wait parks the calling thread, not its
/// core. A `Select` may be used again; a send operation offers its message once.
///
/// # Examples
///
/// ```
/// use spindle::sync::{Select, mpsc};
///
/// spindle::run(|| {
///     let chans: Vec<_> = (0..4).map(|_| mpsc::channel::<usize>()).collect();
///     let tx = chans[2].0.clone();
///     spindle::spawn(move || tx.send(42).unwrap());
///     let mut sel = Select::new();
///     for (_, rx) in &chans {
///         sel.recv(rx);
///     }
///     let op = sel.select();
///     let i = op.index();
///     assert_eq!(i, 2);
///     assert_eq!(op.recv(&chans[i].1), Ok(42));
/// });
/// ```
#[derive(Default)]
pub struct Select<'a> {
    arms: Vec<Box<dyn Arm + 'a>>,
}

/// The operation a [`Select`] completed; finish it with [`recv`](Self::recv) or
/// [`send`](Self::send) on the object it was added with.
#[must_use = "the operation completed: take its output with `recv` or `send`"]
pub struct SelectedOperation<'s, 'a> {
    index: usize,
    arm: &'s mut (dyn Arm + 'a),
    _select: PhantomData<&'s mut Select<'a>>,
}

/// [`Select::try_select`] found no operation that could complete at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrySelectError;

/// [`Select::select_timeout`] found no operation that could complete within the
/// timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectTimeoutError;

impl std::fmt::Display for TrySelectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no operation of the select could complete without waiting")
    }
}

impl std::fmt::Display for SelectTimeoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no operation of the select completed within the timeout")
    }
}

impl std::error::Error for TrySelectError {}
impl std::error::Error for SelectTimeoutError {}

impl<'a> Select<'a> {
    /// An empty select.
    pub fn new() -> Select<'a> {
        Select { arms: Vec::new() }
    }

    /// Adds a receive on `r`; returns its index.
    pub fn recv<R: SelectRecv + ?Sized>(&mut self, r: &'a R) -> usize {
        self.arms.push(Box::new(RecvArm::new(r)));
        self.arms.len() - 1
    }

    /// Adds a send of `msg` on `s`; returns its index. The message is dropped with the
    /// `Select` if it is never sent.
    pub fn send<S: SelectSend + ?Sized>(&mut self, s: &'a S, msg: S::Msg) -> usize {
        self.arms.push(Box::new(SendArm::new(s, msg)));
        self.arms.len() - 1
    }

    /// Waits until one operation completes.
    ///
    /// # Panics
    ///
    /// If no operation can ever complete (none was added, or every one is a send whose
    /// message went out in an earlier select): it would wait forever.
    pub fn select(&mut self) -> SelectedOperation<'_, 'a> {
        let i = self
            .run(Mode::Block)
            .expect("a blocking select returns an operation");
        self.selected(i)
    }

    /// Completes an operation that needs no wait.
    ///
    /// # Errors
    ///
    /// [`TrySelectError`] if none could complete at once.
    pub fn try_select(&mut self) -> Result<SelectedOperation<'_, 'a>, TrySelectError> {
        match self.run(Mode::Try) {
            Some(i) => Ok(self.selected(i)),
            None => Err(TrySelectError),
        }
    }

    /// Waits at most `timeout` for an operation to complete.
    ///
    /// # Errors
    ///
    /// [`SelectTimeoutError`] if none completed in time.
    pub fn select_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<SelectedOperation<'_, 'a>, SelectTimeoutError> {
        match self.run(Mode::Timeout(timeout)) {
            Some(i) => Ok(self.selected(i)),
            None => Err(SelectTimeoutError),
        }
    }

    fn run(&mut self, mode: Mode) -> Option<usize> {
        let mut arms: Vec<&mut dyn Arm> = self
            .arms
            .iter_mut()
            .map(|a| &mut **a as &mut dyn Arm)
            .collect();
        run(&mut arms, mode)
    }

    fn selected(&mut self, index: usize) -> SelectedOperation<'_, 'a> {
        SelectedOperation {
            index,
            arm: &mut *self.arms[index],
            _select: PhantomData,
        }
    }
}

impl<'a> SelectedOperation<'_, 'a> {
    /// The index of the operation, as [`Select::recv`] or [`Select::send`] returned it.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The output of the receive on `r` that completed.
    ///
    /// # Panics
    ///
    /// If the operation is not a receive added with `r`.
    pub fn recv<R: SelectRecv + ?Sized>(self, r: &R) -> R::Output {
        self.check((r as *const R).cast(), true, std::any::type_name::<R>());
        let arm: *mut (dyn Arm + 'a) = self.arm;
        // SAFETY: `check` found that the arm is a `RecvArm` made for an object of
        // type `R` at `r`'s address: this very object, so the arm's concrete type is
        // `RecvArm<'_, R>` (only lifetimes may differ, and `R::Output`'s are those of
        // the object itself). The pointer comes from a `&mut` we hold for this call.
        let arm = unsafe { &mut *arm.cast::<RecvArm<'_, R>>() };
        arm.output()
    }

    /// The output of the send on `s` that completed.
    ///
    /// # Panics
    ///
    /// If the operation is not a send added with `s`.
    pub fn send<S: SelectSend + ?Sized>(self, s: &S) -> S::Output {
        self.check((s as *const S).cast(), false, std::any::type_name::<S>());
        let arm: *mut (dyn Arm + 'a) = self.arm;
        // SAFETY: as in `recv`: `check` found a `SendArm` made for this object `s`.
        let arm = unsafe { &mut *arm.cast::<SendArm<'_, S>>() };
        arm.output()
    }

    fn check(&self, addr: *const (), recv: bool, ty: &'static str) {
        let (a, r, t) = self.arm.identity();
        let what = if recv { "receive" } else { "send" };
        assert!(
            a == addr && r == recv && t == ty,
            "the selected operation {} is not a {what} on this object: complete it with the object it was added with",
            self.index
        );
    }
}

/// Implements [`SelectRecv`] and [`SelectSend`] for channel halves that hold their
/// channel core in a field `chan`.
macro_rules! chan_select {
    (recv: $($recv:ident),*; send: $($send:ident),*) => {
        $(
            impl<T> $crate::sync::select::sealed::Sealed for $recv<T> {}
            impl<T> $crate::sync::select::SelectRecv for $recv<T> {
                type Output = Result<T, RecvError>;
                fn select_try(&self) -> Option<Self::Output> {
                    self.chan.select_recv()
                }
                fn select_try_or_register(
                    &self,
                    reg: &mut $crate::sync::select::Registrar,
                ) -> Option<Self::Output> {
                    self.chan.select_recv_or_register(reg)
                }
                fn select_pass_on(&self) {
                    self.chan.pass_on(true);
                }
            }
        )*
        $(
            impl<T> $crate::sync::select::sealed::Sealed for $send<T> {}
            impl<T> $crate::sync::select::SelectSend for $send<T> {
                type Msg = T;
                type Output = Result<(), SendError<T>>;
                fn select_try(&self, msg: T) -> Result<Self::Output, T> {
                    self.chan.select_send(msg)
                }
                fn select_try_or_register(
                    &self,
                    msg: T,
                    reg: &mut $crate::sync::select::Registrar,
                ) -> Result<Self::Output, T> {
                    self.chan.select_send_or_register(msg, reg)
                }
                fn select_pass_on(&self) {
                    self.chan.pass_on(false);
                }
            }
        )*
    };
}
pub(super) use chan_select;

/// Waits on several channel operations and runs the arm of the first that completes,
/// with [crossbeam's syntax]. A select that has to wait parks the calling thread, not
/// its core (and blocks an OS thread on a futex).
///
/// - `recv(r) -> msg => body`: a receive on `r` (a receiver of
///   [`mpsc`](crate::sync::mpsc), [`mpmc`](crate::sync::mpmc),
///   [`oneshot`](crate::sync::oneshot), [`broadcast`](crate::sync::broadcast), or a
///   [`CancelToken`](crate::CancelToken)); `msg` is its result, e.g.
///   `Result<T, RecvError>`, `Err` once the channel is empty and disconnected.
/// - `send(s, v) -> res => body`: a send of `v` on `s` (a sender of `mpsc` or
///   `mpmc`); `res` is `Result<(), SendError<T>>`. `v` is evaluated before the select
///   waits, and dropped if another arm completes.
/// - `default => body`: runs if no operation can complete at once.
/// - `default(timeout) => body`: runs if none completes within `timeout`.
///
/// Without a `default`, the select waits for as long as it takes. When several
/// operations are ready, the one tried first rotates from call to call, so none
/// starves. A select with no arms does not compile. Bodies may be blocks or
/// expressions followed by a comma; they may use the channels freely (the select
/// borrows them only while it waits). At most 32 operations.
///
/// [crossbeam's syntax]: https://docs.rs/crossbeam-channel/latest/crossbeam_channel/macro.select.html
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use spindle::sync::mpsc;
///
/// spindle::run(|| {
///     let (tx1, rx1) = mpsc::channel::<u32>();
///     let (tx2, rx2) = mpsc::sync_channel::<&str>(1);
///     spindle::spawn(move || tx1.send(7).unwrap());
///     let got = spindle::select! {
///         recv(rx1) -> msg => msg.unwrap(),
///         send(tx2, "hi") -> res => { res.unwrap(); 0 }
///     };
///     // Either the number arrived first, or the send had room at once.
///     assert!(got == 7 || rx2.try_recv() == Ok("hi"));
///
///     let (_keep, idle) = mpsc::channel::<u32>();
///     spindle::select! {
///         recv(idle) -> _ => unreachable!(),
///         default(Duration::from_millis(5)) => {}
///     }
/// });
/// ```
///
/// A select needs at least one arm:
///
/// ```compile_fail
/// spindle::run(|| spindle::select! {});
/// ```
#[macro_export]
macro_rules! select {
    ($($tokens:tt)+) => {
        $crate::__select_parse!(
            ()
            ()
            (0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31)
            $($tokens)+
        )
    };
}

/// The parser of [`select!`]: collects its arms, then hands them to
/// `__select_emit!`. State: `(operations) (default) (free indices) rest`.
#[doc(hidden)]
#[macro_export]
macro_rules! __select_parse {
    // A receive.
    (($($ops:tt)*) $def:tt ($i:tt $($is:tt)*) recv($r:expr) -> $m:pat => $body:block, $($rest:tt)*) => {
        $crate::__select_parse!(($($ops)* [$i recv ($r) ($m) $body]) $def ($($is)*) $($rest)*)
    };
    (($($ops:tt)*) $def:tt ($i:tt $($is:tt)*) recv($r:expr) -> $m:pat => $body:block $($rest:tt)*) => {
        $crate::__select_parse!(($($ops)* [$i recv ($r) ($m) $body]) $def ($($is)*) $($rest)*)
    };
    (($($ops:tt)*) $def:tt ($i:tt $($is:tt)*) recv($r:expr) -> $m:pat => $body:expr, $($rest:tt)*) => {
        $crate::__select_parse!(($($ops)* [$i recv ($r) ($m) { $body }]) $def ($($is)*) $($rest)*)
    };
    (($($ops:tt)*) $def:tt ($i:tt $($is:tt)*) recv($r:expr) -> $m:pat => $body:expr) => {
        $crate::__select_parse!(($($ops)* [$i recv ($r) ($m) { $body }]) $def ($($is)*))
    };
    // A send.
    (($($ops:tt)*) $def:tt ($i:tt $($is:tt)*) send($s:expr, $v:expr) -> $m:pat => $body:block, $($rest:tt)*) => {
        $crate::__select_parse!(($($ops)* [$i send ($s, $v) ($m) $body]) $def ($($is)*) $($rest)*)
    };
    (($($ops:tt)*) $def:tt ($i:tt $($is:tt)*) send($s:expr, $v:expr) -> $m:pat => $body:block $($rest:tt)*) => {
        $crate::__select_parse!(($($ops)* [$i send ($s, $v) ($m) $body]) $def ($($is)*) $($rest)*)
    };
    (($($ops:tt)*) $def:tt ($i:tt $($is:tt)*) send($s:expr, $v:expr) -> $m:pat => $body:expr, $($rest:tt)*) => {
        $crate::__select_parse!(($($ops)* [$i send ($s, $v) ($m) { $body }]) $def ($($is)*) $($rest)*)
    };
    (($($ops:tt)*) $def:tt ($i:tt $($is:tt)*) send($s:expr, $v:expr) -> $m:pat => $body:expr) => {
        $crate::__select_parse!(($($ops)* [$i send ($s, $v) ($m) { $body }]) $def ($($is)*))
    };
    // The default, at most one.
    ($ops:tt () $is:tt default $(($t:expr))? => $body:block, $($rest:tt)*) => {
        $crate::__select_parse!($ops (($($t)?) $body) $is $($rest)*)
    };
    ($ops:tt () $is:tt default $(($t:expr))? => $body:block $($rest:tt)*) => {
        $crate::__select_parse!($ops (($($t)?) $body) $is $($rest)*)
    };
    ($ops:tt () $is:tt default $(($t:expr))? => $body:expr, $($rest:tt)*) => {
        $crate::__select_parse!($ops (($($t)?) { $body }) $is $($rest)*)
    };
    ($ops:tt () $is:tt default $(($t:expr))? => $body:expr) => {
        $crate::__select_parse!($ops (($($t)?) { $body }) $is)
    };
    ($ops:tt ($($def:tt)+) $is:tt default $($rest:tt)*) => {
        ::core::compile_error!("a select! takes at most one `default` arm")
    };
    // Done.
    ($ops:tt $def:tt $is:tt) => {
        $crate::__select_emit!($ops $def)
    };
    ($ops:tt $def:tt () $($rest:tt)+) => {
        ::core::compile_error!("a select! takes at most 32 operations")
    };
    ($ops:tt $def:tt $is:tt $($rest:tt)+) => {
        ::core::compile_error!(
            "expected a select! arm: `recv(r) -> msg => ..`, `send(s, v) -> res => ..`, `default => ..` or `default(timeout) => ..`"
        )
    };
}

/// The code of a parsed [`select!`]: the operations in a tuple, the select, and a
/// match on the operation that completed.
#[doc(hidden)]
#[macro_export]
macro_rules! __select_emit {
    (($([$i:tt $kind:ident ($($args:expr),+) ($m:pat) $body:block])*) $def:tt) => {{
        let mut __arms = ($($crate::__select_emit!(@arm $kind $($args),+),)*);
        let __mode = $crate::__select_emit!(@mode $def);
        let __chosen = $crate::sync::select::run(
            &mut [$(&mut __arms.$i as &mut dyn $crate::sync::select::Arm),*],
            __mode,
        );
        match __chosen {
            $(
                ::core::option::Option::Some($i) => {
                    // The arms move in here and go at the block's end: the body
                    // may use the channels freely.
                    let $m = {
                        let mut __done = __arms;
                        __done.$i.output()
                    };
                    $body
                }
            )*
            _ => $crate::__select_emit!(@default $def),
        }
    }};
    (@arm recv $r:expr) => {
        $crate::sync::select::RecvArm::new(&$r)
    };
    (@arm send $s:expr, $v:expr) => {
        $crate::sync::select::SendArm::new(&$s, $v)
    };
    (@mode ()) => {
        $crate::sync::select::Mode::Block
    };
    (@mode (() $body:block)) => {
        $crate::sync::select::Mode::Try
    };
    (@mode (($t:expr) $body:block)) => {
        $crate::sync::select::Mode::Timeout($t)
    };
    (@default ()) => {
        ::core::unreachable!("a select without a default returns an operation")
    };
    (@default ($t:tt $body:block)) => {
        $body
    };
}

#[cfg(all(test, loom))]
mod loom_select {
    use super::*;
    use crate::sync::mpmc;
    use loom::thread;

    /// One select over two channels, each of which gets one message from its own
    /// sender thread. `timeout`: the select gives up after one look (loom's deadline).
    /// Whatever the interleaving, the select takes at most one message, a blocking
    /// select takes exactly one (loom reports a deadlock if a wakeup is lost), and
    /// each message is either the select's or still in its channel.
    fn select_vs_two_senders(timeout: bool) {
        loom::model(move || {
            let (ta, ra) = mpmc::channel::<u32>();
            let (tb, rb) = mpmc::channel::<u32>();
            let s1 = thread::spawn(move || ta.send(1).unwrap());
            let s2 = thread::spawn(move || tb.send(2).unwrap());
            let mut a = RecvArm::new(&ra);
            let mut b = RecvArm::new(&rb);
            let mode = if timeout {
                Mode::Timeout(Duration::from_secs(1))
            } else {
                Mode::Block
            };
            let chosen = run(&mut [&mut a, &mut b], mode);
            let got = match chosen {
                Some(0) => Some(a.output().expect("sent before its sender left")),
                Some(1) => Some(b.output().expect("sent before its sender left")),
                None => None,
                Some(_) => unreachable!(),
            };
            assert!(
                timeout || got.is_some(),
                "a blocking select returned nothing"
            );
            s1.join().unwrap();
            s2.join().unwrap();
            let mut all: Vec<u32> = got.into_iter().collect();
            all.extend(ra.try_recv().ok());
            all.extend(rb.try_recv().ok());
            all.sort();
            assert_eq!(all, [1, 2], "a message was lost or taken twice");
        });
    }

    #[test]
    fn loom_select_blocking_vs_two_senders() {
        select_vs_two_senders(false);
    }

    #[test]
    fn loom_select_timeout_vs_two_senders() {
        select_vs_two_senders(true);
    }
}
