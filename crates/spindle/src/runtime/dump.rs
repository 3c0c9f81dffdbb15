//! The thread dump ([`Handle::dump`], and on `SIGQUIT`): every live thread of a
//! runtime, grouped by the core it lives on, with its state, what it waits on and for
//! how long, and its stack.
//!
//! The dump touches no TCB: it reads what each thread publishes in its join slot
//! (`task::dump`), checked against the slot's generation, the slot word's channel
//! bits (sleeping or not), and each core's published running thread. So it works
//! while cores are stuck, and costs the threads nothing but one relaxed store pair
//! per block. It is a snapshot taken while threads run: a thread may change state
//! while it is read.
//!
//! Stacks: the size is the thread's block; "used" is the distance from the top of the
//! block to its deepest page resident in memory (`mincore`): the high-water mark of
//! the stack since its block was last handed back to the kernel. No backtraces are
//! taken: a frame walk of another thread's saved context would read a stack its core
//! may be writing.

use std::fmt;
use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::shared::Shared;
use crate::task::dump::WaitReason;
use crate::task::id::ThreadId;
use crate::task::priority::MAX_PRIORITY;
use crate::task::slot::{F_BLOCKED, F_PARKED};

/// What a thread is doing, as [`Handle::dump`](crate::Handle::dump) saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadState {
    /// On its core's CPU now.
    Running,
    /// Ready to run, queued on its core.
    Runnable,
    /// Asleep until something happens.
    Waiting(WaitReason),
}

/// One thread of a [`ThreadDump`].
#[derive(Clone, Debug)]
pub struct ThreadInfo {
    /// Its id ([`Thread::id`](crate::Thread::id)).
    pub id: ThreadId,
    /// Its name (cut to 32 bytes), if it has one.
    pub name: Option<String>,
    /// Its priority (0 to [`MAX_PRIORITY`](crate::MAX_PRIORITY)).
    pub priority: u8,
    /// What it was doing.
    pub state: ThreadState,
    /// For a waiting thread, how long it had waited, in whole ticks (1 ms by default;
    /// `None` for a runtime without a ticker).
    pub waited: Option<Duration>,
    /// Its stack block's size in bytes (0 for a thread whose core has not run it yet,
    /// which has no stack).
    pub stack_size: usize,
    /// The bytes of its stack in memory from the top down to the deepest page
    /// touched: the high-water mark since the block was last handed back.
    pub stack_used: usize,
}

/// The threads of one core of a [`ThreadDump`].
#[derive(Clone, Debug)]
pub struct CoreDump {
    /// The core's id.
    pub id: usize,
    /// Its core type.
    pub core_type: String,
    /// Whether it is a service core.
    pub service: bool,
    /// Its threads, the running one first, then by id.
    pub threads: Vec<ThreadInfo>,
}

/// Every live thread of a runtime, by core ([`Handle::dump`](crate::Handle::dump)).
/// Its `Display` is the text printed on `SIGQUIT`.
#[derive(Clone, Debug, Default)]
pub struct ThreadDump {
    /// The started cores with their threads.
    pub cores: Vec<CoreDump>,
    /// Threads not on any started core (not placed yet).
    pub unplaced: Vec<ThreadInfo>,
}

impl ThreadDump {
    /// Every thread of the dump.
    pub fn threads(&self) -> impl Iterator<Item = &ThreadInfo> {
        self.cores
            .iter()
            .flat_map(|c| c.threads.iter())
            .chain(self.unplaced.iter())
    }

    /// The thread with id `id`, if the dump has it.
    pub fn thread(&self, id: ThreadId) -> Option<&ThreadInfo> {
        self.threads().find(|t| t.id == id)
    }
}

/// Takes the dump of `shared`'s runtime.
pub(crate) fn take(shared: &Shared) -> ThreadDump {
    let started = shared.started();
    let running: Vec<u64> = started
        .iter()
        .map(|c| {
            if c.clock.run.load(Ordering::Relaxed) != 0 {
                c.clock.id.load(Ordering::Relaxed)
            } else {
                0
            }
        })
        .collect();
    let mut dump = ThreadDump {
        cores: started
            .iter()
            .filter(|c| c.state() == crate::sched::CoreState::Active)
            .map(|c| CoreDump {
                id: c.id,
                core_type: shared.types[c.ty.load(Ordering::Relaxed)].name.clone(),
                service: shared.is_service(c.id),
                threads: Vec::new(),
            })
            .collect(),
        unplaced: Vec::new(),
    };
    // The runtime's tick count (0 without a ticker: waits are then not timed).
    let now = started
        .iter()
        .map(|c| c.clock.now.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    let tick_ns = shared.clock.tick_ns();
    for (index, slot) in shared.live_slots() {
        let g1 = slot.word.generation_now();
        let flags = slot.word.flags();
        let snap = slot.info.snapshot();
        let home = slot.home.load(Ordering::Relaxed);
        let level = slot.level.load(Ordering::Relaxed);
        // The seqlock's check (`task::dump`): the slot still holds the same thread.
        std::sync::atomic::fence(Ordering::Acquire);
        if slot.word.generation_now() != g1 {
            continue;
        }
        let id = ThreadId::from_parts(index, g1);
        let core = started.iter().position(|c| c.owner() == home.cast_const());
        let state = if core.is_some_and(|c| running[c] == id.as_u64()) {
            ThreadState::Running
        } else if flags & F_PARKED != 0 {
            ThreadState::Waiting(WaitReason::Park)
        } else if flags & F_BLOCKED != 0 {
            ThreadState::Waiting(snap.wait.map_or(WaitReason::Park, |(r, _)| r))
        } else {
            ThreadState::Runnable
        };
        let waited = match state {
            ThreadState::Waiting(_) if now != 0 => snap
                .wait
                .map(|(_, since)| Duration::from_nanos(now.saturating_sub(since) * tick_ns)),
            _ => None,
        };
        let stack_size = if snap.stack_end == 0 {
            0
        } else {
            crate::stack::class_size(usize::from(snap.class))
        };
        let info = ThreadInfo {
            id,
            name: snap.name,
            priority: MAX_PRIORITY.saturating_sub(level),
            state,
            waited,
            stack_size,
            stack_used: stack_used(snap.stack_end, stack_size),
        };
        match core.and_then(|c| dump.cores.iter_mut().find(|d| d.id == c)) {
            Some(d) => d.threads.push(info),
            None => dump.unplaced.push(info),
        }
    }
    for c in &mut dump.cores {
        c.threads
            .sort_by_key(|t| (t.state != ThreadState::Running, t.id));
    }
    dump
}

/// The resident bytes of the stack block ending at `end` of `size` bytes, from the
/// top down to its deepest resident page.
fn stack_used(end: usize, size: usize) -> usize {
    if end == 0 || size == 0 {
        return 0;
    }
    let page = crate::os::page_size();
    let base = end - size;
    let pages = size / page;
    let mut vec = vec![0u8; pages];
    // SAFETY: `[base, end)` is a stack block of the arena, which stays mapped for the life of the process; `vec` has one byte per page of it.
    let rc = unsafe { libc::mincore(base as *mut libc::c_void, size, vec.as_mut_ptr()) };
    if rc != 0 {
        return 0;
    }
    vec.iter()
        .position(|b| b & 1 != 0)
        .map_or(0, |first| (pages - first) * page)
}

impl fmt::Display for ThreadDump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n: usize = self.threads().count();
        writeln!(f, "spindle thread dump: {n} threads")?;
        for c in &self.cores {
            let n = c.threads.len();
            let kind = if c.service {
                "service core".to_owned()
            } else {
                format!("type {}", c.core_type)
            };
            writeln!(
                f,
                "\ncore {} ({kind}): {n} thread{}",
                c.id,
                if n == 1 { "" } else { "s" }
            )?;
            for t in &c.threads {
                writeln!(f, "  {t}")?;
            }
        }
        if !self.unplaced.is_empty() {
            writeln!(f, "\nnot on a core yet: {} threads", self.unplaced.len())?;
            for t in &self.unplaced {
                writeln!(f, "  {t}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for ThreadInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "thread {}", self.id)?;
        if let Some(n) = &self.name {
            write!(f, " {n:?}")?;
        }
        write!(f, " prio {}: ", self.priority)?;
        match self.state {
            ThreadState::Running => f.write_str("running")?,
            ThreadState::Runnable => f.write_str("runnable")?,
            ThreadState::Waiting(r) => write!(f, "waiting on {r}")?,
        }
        if let Some(w) = self.waited {
            write!(f, " for {} ms", w.as_millis())?;
        }
        if self.stack_size > 0 {
            write!(
                f,
                "; stack {} KiB, {} KiB used",
                self.stack_size / 1024,
                self.stack_used / 1024
            )?;
        }
        Ok(())
    }
}

/// The runtimes whose dump `SIGQUIT` prints.
static ON_SIGQUIT: std::sync::Mutex<Vec<Weak<Shared>>> = std::sync::Mutex::new(Vec::new());

/// The write end of the pipe the `SIGQUIT` handler writes to (-1 until installed).
static PIPE_WRITE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// Prints `shared`'s dump on `SIGQUIT` from now on: installs the handler and the
/// printing OS thread once per process, unless the program has a `SIGQUIT`
/// disposition of its own (then nothing is installed and `false` is returned).
pub(crate) fn on_sigquit(shared: &std::sync::Arc<Shared>) -> bool {
    static INSTALLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *INSTALLED.get_or_init(install);
    if ok {
        let mut list = ON_SIGQUIT.lock().unwrap_or_else(|e| e.into_inner());
        list.retain(|w| w.strong_count() > 0);
        list.push(std::sync::Arc::downgrade(shared));
    }
    ok
}

extern "C" fn sigquit(_: libc::c_int) {
    let fd = PIPE_WRITE.load(Ordering::Relaxed);
    let b = 1u8;
    // SAFETY: write(2) is async-signal-safe; a one-byte write from a live value to our pipe (a full pipe drops it: a dump is pending anyway).
    unsafe { libc::write(fd, std::ptr::from_ref(&b).cast(), 1) };
}

fn install() -> bool {
    // SAFETY: reading the current disposition into a zeroed sigaction.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only reads the old one.
    if unsafe { libc::sigaction(libc::SIGQUIT, std::ptr::null(), &mut old) } != 0
        || old.sa_sigaction != libc::SIG_DFL
    {
        return false;
    }
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return false;
    }
    let read = fds[0];
    // The reader blocks: clear its O_NONBLOCK.
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(read, libc::F_SETFL, 0) };
    PIPE_WRITE.store(fds[1], Ordering::Relaxed);
    let spawned = std::thread::Builder::new()
        .name("spindle-dump".into())
        .spawn(move || {
            let mut b = [0u8; 64];
            // SAFETY: reading into a live buffer from our pipe.
            while unsafe { libc::read(read, b.as_mut_ptr().cast(), b.len()) } > 0 {
                let live: Vec<std::sync::Arc<Shared>> = ON_SIGQUIT
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .filter_map(Weak::upgrade)
                    .collect();
                for s in live {
                    if !s.shutdown.load(Ordering::Acquire) {
                        eprint!("{}", take(&s));
                    }
                }
            }
        });
    if spawned.is_err() {
        return false;
    }
    // SAFETY: an all-zero sigaction is valid; we set the handler and flags below.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = sigquit as extern "C" fn(libc::c_int) as usize;
    sa.sa_flags = libc::SA_RESTART;
    // SAFETY: installing a handler that only makes an async-signal-safe write.
    unsafe { libc::sigaction(libc::SIGQUIT, &sa, std::ptr::null_mut()) == 0 }
}
