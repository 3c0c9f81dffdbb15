//! What a thread publishes for the thread dump (`runtime::dump`): its name, what it
//! waits on and since when, and its stack block. It lives in the thread's join slot,
//! so the dump reads it from any OS thread without touching the TCB, which only the
//! thread's core may read.
//!
//! Protocol (one writer per field, all relaxed; the dump only reads):
//! - **Spawner**: the name and the stack block, before the slot's `activate`
//!   (release), after a release fence: the slot's generation changed before them.
//! - **The thread**: its wait (reason, argument, since when) before each block; a
//!   lazily built thread's stack block, when its core first runs it.
//! - **Dump**: reads the slot word (acquire), then these fields, then an acquire
//!   fence and the word again; a changed generation means the slot went to another
//!   thread meanwhile and the snapshot is dropped (a seqlock on the generation). The
//!   wait is a snapshot: the dump shows it only while the word's channel bits say the
//!   thread sleeps.

use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};

use crate::task::id::ThreadId;

/// Bytes of a name the dump shows (longer names are cut on a character boundary).
pub(crate) const NAME_BYTES: usize = 32;

/// What a sleeping thread waits for, as [`Handle::dump`](crate::Handle::dump) shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitReason {
    /// [`park`](crate::park) or `park_timeout`.
    Park,
    /// [`sleep`](crate::sleep), until this many milliseconds of the coarse monotonic
    /// clock.
    Sleep {
        /// The deadline (`CLOCK_MONOTONIC_COARSE`, milliseconds).
        until_ms: u64,
    },
    /// A [`sync::Mutex`](crate::sync::Mutex).
    Mutex,
    /// A [`sync::RwLock`](crate::sync::RwLock).
    RwLock,
    /// A [`sync::Condvar`](crate::sync::Condvar).
    Condvar,
    /// A channel of [`sync`](crate::sync): a receive, or a send to a full channel.
    Channel,
    /// A [`sync::Semaphore`](crate::sync::Semaphore).
    Semaphore,
    /// A [`sync::Barrier`](crate::sync::Barrier).
    Barrier,
    /// A [`sync::WaitGroup`](crate::sync::WaitGroup).
    WaitGroup,
    /// The join of thread `thread`.
    Join {
        /// The thread joined.
        thread: ThreadId,
    },
    /// An offloaded system call, number `nr`, in a service core's hands.
    Syscall {
        /// The system call number.
        nr: u32,
    },
    /// A free request slot of its core, to offload a system call.
    RequestSlot,
    /// Readiness of descriptor `fd` (a socket of [`net`](crate::net)).
    Io {
        /// The descriptor.
        fd: i32,
    },
    /// A call run on the blocking pool ([`blocking`](crate::blocking)).
    Blocking,
    /// A [`select!`](crate::select) or [`sync::Select`](crate::sync::Select) over
    /// this many operations.
    Select {
        /// The number of operations.
        ops: u32,
    },
    /// A [`CancelToken`](crate::CancelToken) or a
    /// [`broadcast`](crate::sync::broadcast) receive.
    Signal,
    /// A future's wakeup in [`block_on`](crate::block_on).
    Future,
}

impl WaitReason {
    fn encode(self) -> (u8, u64) {
        match self {
            WaitReason::Park => (1, 0),
            WaitReason::Sleep { until_ms } => (2, until_ms),
            WaitReason::Mutex => (3, 0),
            WaitReason::RwLock => (4, 0),
            WaitReason::Condvar => (5, 0),
            WaitReason::Channel => (6, 0),
            WaitReason::Semaphore => (7, 0),
            WaitReason::Barrier => (8, 0),
            WaitReason::WaitGroup => (9, 0),
            WaitReason::Join { thread } => (10, thread.as_u64()),
            WaitReason::Syscall { nr } => (11, u64::from(nr)),
            WaitReason::RequestSlot => (12, 0),
            WaitReason::Io { fd } => (13, fd as u64),
            WaitReason::Blocking => (14, 0),
            WaitReason::Select { ops } => (15, u64::from(ops)),
            WaitReason::Signal => (16, 0),
            WaitReason::Future => (17, 0),
        }
    }

    fn decode(kind: u8, arg: u64) -> Option<WaitReason> {
        Some(match kind {
            1 => WaitReason::Park,
            2 => WaitReason::Sleep { until_ms: arg },
            3 => WaitReason::Mutex,
            4 => WaitReason::RwLock,
            5 => WaitReason::Condvar,
            6 => WaitReason::Channel,
            7 => WaitReason::Semaphore,
            8 => WaitReason::Barrier,
            9 => WaitReason::WaitGroup,
            10 => WaitReason::Join {
                thread: ThreadId::from_u64(arg),
            },
            11 => WaitReason::Syscall { nr: arg as u32 },
            12 => WaitReason::RequestSlot,
            13 => WaitReason::Io { fd: arg as i32 },
            14 => WaitReason::Blocking,
            15 => WaitReason::Select { ops: arg as u32 },
            16 => WaitReason::Signal,
            17 => WaitReason::Future,
            _ => return None,
        })
    }
}

impl std::fmt::Display for WaitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitReason::Park => f.write_str("park"),
            WaitReason::Sleep { until_ms } => {
                let left = until_ms.saturating_sub(crate::os::coarse_ms());
                write!(f, "sleep ({left} ms left)")
            }
            WaitReason::Mutex => f.write_str("mutex"),
            WaitReason::RwLock => f.write_str("rwlock"),
            WaitReason::Condvar => f.write_str("condvar"),
            WaitReason::Channel => f.write_str("channel"),
            WaitReason::Semaphore => f.write_str("semaphore"),
            WaitReason::Barrier => f.write_str("barrier"),
            WaitReason::WaitGroup => f.write_str("wait group"),
            WaitReason::Join { thread } => write!(f, "join of thread {thread}"),
            WaitReason::Syscall { nr } => write!(f, "offloaded system call {nr}"),
            WaitReason::RequestSlot => f.write_str("a free request slot"),
            WaitReason::Io { fd } => write!(f, "readiness of fd {fd}"),
            WaitReason::Blocking => f.write_str("blocking pool"),
            WaitReason::Select { ops } => write!(f, "select over {ops} operations"),
            WaitReason::Signal => f.write_str("a cancel token or a broadcast"),
            WaitReason::Future => f.write_str("a future (block_on)"),
        }
    }
}

/// A thread's published facts (a field of its join slot).
pub(crate) struct DumpInfo {
    name: [AtomicU64; NAME_BYTES / 8],
    /// The wait's kind (low 8 bits) and since when (the runtime's tick count, the
    /// rest).
    wait: AtomicU64,
    arg: AtomicU64,
    /// The end of the stack block (0: none yet) and its size class.
    stack_end: AtomicUsize,
    class: AtomicU8,
}

/// A snapshot of [`DumpInfo`].
pub(crate) struct Snapshot {
    pub(crate) name: Option<String>,
    /// The last wait and the tick it began at.
    pub(crate) wait: Option<(WaitReason, u64)>,
    pub(crate) stack_end: usize,
    pub(crate) class: u8,
}

impl DumpInfo {
    pub(crate) fn new() -> DumpInfo {
        DumpInfo {
            name: std::array::from_fn(|_| AtomicU64::new(0)),
            wait: AtomicU64::new(0),
            arg: AtomicU64::new(0),
            stack_end: AtomicUsize::new(0),
            class: AtomicU8::new(0),
        }
    }

    /// The spawner's writes, before the slot is activated: the name (cut to
    /// [`NAME_BYTES`]), the stack block (`end` 0 if it has none yet), no wait.
    pub(crate) fn publish(&self, name: Option<&str>, end: usize, class: u8) {
        // Release: this slot's generation changed before these writes (the dump's
        // seqlock; pairs with its acquire fence).
        std::sync::atomic::fence(Ordering::Release);
        let mut bytes = [0u8; NAME_BYTES];
        if let Some(n) = name {
            let mut cut = n.len().min(NAME_BYTES);
            while !n.is_char_boundary(cut) {
                cut -= 1;
            }
            bytes[..cut].copy_from_slice(&n.as_bytes()[..cut]);
            // A name of 0 bytes is still a name: mark it with a first byte 0xff, which
            // no UTF-8 text starts with.
            if cut == 0 {
                bytes[0] = 0xff;
            }
        }
        for (w, chunk) in self.name.iter().zip(bytes.chunks(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            w.store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
        self.wait.store(0, Ordering::Relaxed);
        self.set_stack(end, class);
    }

    /// The stack block of the thread: its end and size class.
    pub(crate) fn set_stack(&self, end: usize, class: u8) {
        self.class.store(class, Ordering::Relaxed);
        self.stack_end.store(end, Ordering::Relaxed);
    }

    /// The thread's own write before it blocks, at tick `tick` of its runtime (its
    /// core's copy of the tick counter: a load of the core's own line, where a clock
    /// read would cost a few times more on every block).
    #[inline]
    pub(crate) fn note_wait(&self, reason: WaitReason, tick: u64) {
        let (kind, arg) = reason.encode();
        self.arg.store(arg, Ordering::Relaxed);
        self.wait
            .store(tick << 8 | u64::from(kind), Ordering::Relaxed);
    }

    /// The kind of the thread's last wait (0: none), for the trace.
    pub(crate) fn wait_kind(&self) -> u8 {
        self.wait.load(Ordering::Relaxed) as u8
    }

    /// The dump's read (the caller checks the slot's generation around it).
    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut bytes = [0u8; NAME_BYTES];
        for (w, chunk) in self.name.iter().zip(bytes.chunks_mut(8)) {
            chunk.copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
        }
        let name = match bytes[0] {
            0 => None,
            0xff => Some(String::new()),
            _ => {
                let len = bytes.iter().position(|&b| b == 0).unwrap_or(NAME_BYTES);
                Some(String::from_utf8_lossy(&bytes[..len]).into_owned())
            }
        };
        let w = self.wait.load(Ordering::Relaxed);
        let arg = self.arg.load(Ordering::Relaxed);
        Snapshot {
            name,
            wait: WaitReason::decode(w as u8, arg).map(|r| (r, w >> 8)),
            stack_end: self.stack_end.load(Ordering::Relaxed),
            class: self.class.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_waits_round_trip() {
        let d = DumpInfo::new();
        d.publish(Some("worker-7"), 4096, 2);
        let joined = ThreadId::from_parts(3, 1 << 8);
        d.note_wait(WaitReason::Join { thread: joined }, 7);
        let s = d.snapshot();
        assert_eq!(s.name.as_deref(), Some("worker-7"));
        assert_eq!(s.wait.unwrap(), (WaitReason::Join { thread: joined }, 7));
        assert_eq!((s.stack_end, s.class), (4096, 2));
        // Long names are cut on a character boundary; empty names stay names.
        d.publish(Some(&"é".repeat(20)), 0, 0);
        assert_eq!(d.snapshot().name.unwrap(), "é".repeat(16));
        d.publish(Some(""), 0, 0);
        assert_eq!(d.snapshot().name.as_deref(), Some(""));
        d.publish(None, 0, 0);
        assert!(d.snapshot().name.is_none() && d.snapshot().wait.is_none());
        for r in [
            WaitReason::Park,
            WaitReason::Sleep { until_ms: 99 },
            WaitReason::Syscall { nr: 45 },
            WaitReason::Io { fd: 7 },
            WaitReason::Blocking,
        ] {
            d.note_wait(r, 0);
            assert_eq!(d.snapshot().wait.unwrap().0, r);
        }
    }
}
