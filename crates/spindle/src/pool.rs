//! The blocking pool of a runtime: at most [`BLOCKING_THREADS`] OS threads that run
//! jobs which may block, started on demand, idle ones exiting after a while, all
//! stopped with the runtime.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Most OS threads a runtime's pool runs at once; more work queues.
pub const BLOCKING_THREADS: usize = 16;

/// How long an idle pool thread waits for work before it exits.
const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// How long a shutdown waits for pool threads still running a job.
const STOP_WAIT: Duration = Duration::from_millis(100);

/// A job for a pool thread.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// A runtime's blocking pool.
#[derive(Default)]
pub(crate) struct Pool {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<PoolState>,
    cv: Condvar,
}

#[derive(Default)]
struct PoolState {
    queue: VecDeque<Job>,
    threads: usize,
    idle: usize,
    /// The runtime shut down: threads exit, nothing more is accepted.
    closed: bool,
    /// The pool's threads, to be joined at shutdown.
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl Pool {
    /// Queues `job`; starts a thread if none is idle and the pool has room. Returns
    /// the job if the pool is closed.
    pub(crate) fn submit(&self, job: Job) -> Result<(), Job> {
        let mut s = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.closed {
            return Err(job);
        }
        s.queue.push_back(job);
        if s.idle > 0 {
            self.inner.cv.notify_one();
            return Ok(());
        }
        if s.threads < BLOCKING_THREADS {
            let inner = self.inner.clone();
            let spawned = std::thread::Builder::new()
                .name("spindle-blocking".into())
                .spawn(move || inner.work());
            if let Ok(h) = spawned {
                s.threads += 1;
                s.handles.retain(|h| !h.is_finished());
                s.handles.push(h);
            }
        }
        // Otherwise a busy pool thread takes it when it is done.
        Ok(())
    }

    /// Stops the pool (the runtime's shutdown): queued jobs are dropped (their callers
    /// were unwound), idle threads exit at once, busy ones after their job. Waits a
    /// little for those; a job that blocks longer keeps its thread until it returns.
    pub(crate) fn shut_down(&self) {
        let (queued, handles) = {
            let mut s = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
            s.closed = true;
            (std::mem::take(&mut s.queue), std::mem::take(&mut s.handles))
        };
        self.inner.cv.notify_all();
        drop(queued);
        let deadline = Instant::now() + STOP_WAIT;
        for h in handles {
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            if h.is_finished() {
                let _ = h.join();
            }
        }
    }
}

impl Inner {
    fn work(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if s.closed {
                s.threads -= 1;
                return;
            }
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
