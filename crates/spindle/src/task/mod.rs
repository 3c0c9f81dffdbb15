//! What a thread is, apart from who runs it: its control block (`tcb`), its join slot
//! and the wait-channel protocol on it (`slot`), and the per-thread state the runtime
//! keeps across switches (the panic count, the panic report, the shutdown's unwind, the
//! values of `spindle::local!` keys).

pub(crate) mod abandon;
pub(crate) mod cancel;
pub(crate) mod current;
pub(crate) mod dump;
pub(crate) mod id;
pub(crate) mod locals;
pub(crate) mod panic_count;
pub(crate) mod panic_hook;
pub(crate) mod priority;
pub(crate) mod side_stack;
pub(crate) mod slot;
pub(crate) mod tcb;
