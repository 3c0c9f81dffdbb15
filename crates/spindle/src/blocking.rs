//! `spindle::blocking`: arbitrary blocking work on a small pool of OS threads.

use std::any::Any;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use crate::thread::{Waiter, block_internal};

/// Most OS threads the pool runs at once; more work queues.
pub const BLOCKING_THREADS: usize = 16;

/// How long an idle pool thread waits for work before it exits.
const KEEP_ALIVE: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    state: Mutex<PoolState>,
    cv: Condvar,
}

#[derive(Default)]
struct PoolState {
    queue: VecDeque<Job>,
    threads: usize,
    idle: usize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        state: Mutex::new(PoolState::default()),
        cv: Condvar::new(),
    })
}

impl Pool {
    fn submit(&'static self, job: Job) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.queue.push_back(job);
        if s.idle > 0 {
            self.cv.notify_one();
            return;
        }
        if s.threads < BLOCKING_THREADS {
            let spawned = std::thread::Builder::new()
                .name("spindle-blocking".into())
                .spawn(move || self.work());
            if spawned.is_ok() {
                s.threads += 1;
            }
        }
        // Otherwise a busy pool thread takes it when it is done.
    }

    fn work(&'static self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(job) = s.queue.pop_front() {
                drop(s);
                job();
                s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                continue;
            }
            s.idle += 1;
            let (g, t) = self
                .cv
                .wait_timeout(s, KEEP_ALIVE)
                .unwrap_or_else(|e| e.into_inner());
            s = g;
            s.idle -= 1;
            if t.timed_out() && s.queue.is_empty() {
                s.threads -= 1;
                return;
            }
        }
    }
}

type Outcome<R> = Mutex<Option<Result<R, Box<dyn Any + Send>>>>;

/// Runs `f`, which may block (a blocking `std` call, a DNS lookup, a slow disk read),
/// on a pool of at most [`BLOCKING_THREADS`] OS threads, and returns its result. The
/// calling spindle thread sleeps meanwhile; its core runs other threads. A panic in
/// `f` is resumed in the caller. On a plain OS thread `f` simply runs there.
///
/// # Examples
///
/// ```
/// let n = spindle::run(|| {
///     spindle::blocking(|| {
///         std::thread::sleep(std::time::Duration::from_millis(1)); // blocks a pool thread
///         40 + 2
///     })
/// });
/// assert_eq!(n, 42);
/// ```
pub fn blocking<F, R>(f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let Some(me) = Waiter::current() else {
        return f();
    };
    let out: Arc<Outcome<R>> = Arc::new(Mutex::new(None));
    let job = {
        let out = out.clone();
        Box::new(move || {
            let r = catch_unwind(AssertUnwindSafe(f));
            *out.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            me.wake();
        })
    };
    pool().submit(job);
    loop {
        if let Some(r) = out.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return r.unwrap_or_else(|p| resume_unwind(p));
        }
        block_internal(None);
    }
}
