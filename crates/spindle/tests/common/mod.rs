//! Helpers shared by the integration tests (each test binary uses some of them).
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Aborts the process if the returned flag is not set within `secs`: a lost wakeup
/// or a lost thread then fails the run instead of hanging it.
pub(crate) fn watchdog(name: impl Into<String>, secs: u64) -> Arc<AtomicBool> {
    let name = name.into();
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    std::thread::spawn(move || {
        for _ in 0..secs * 10 {
            std::thread::sleep(Duration::from_millis(100));
            if d.load(Ordering::Relaxed) {
                return;
            }
        }
        eprintln!("watchdog: {name} still running after {secs} s: lost wakeup or lost thread");
        std::process::abort();
    });
    done
}

/// Runs `f` under a [`watchdog`] of `secs` seconds and returns its value.
pub(crate) fn with_watchdog<R>(name: impl Into<String>, secs: u64, f: impl FnOnce() -> R) -> R {
    let done = watchdog(name, secs);
    let r = f();
    done.store(true, Ordering::Relaxed);
    r
}

/// Runs `f` as the main thread of a runtime with exactly one worker core (and the
/// service core), whatever the machine's size or `SPINDLE_CORES`: for tests of what
/// happens among the threads of one core (priorities, turns, yields).
pub(crate) fn on_one_core<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    spindle::Runtime::builder()
        .cores(1)
        .build()
        .expect("a one-core runtime")
        .block_on(f)
}

/// The environment variable that tells a test binary re-run by [`run_child`] which
/// case to play.
pub(crate) const CHILD_ENV: &str = "SPINDLE_TEST_CHILD";

/// The case this process plays, if it was started by [`run_child`].
pub(crate) fn child_case() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

/// What a child process left: exit code, stdout, stderr.
pub(crate) struct ChildOutput {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl std::fmt::Debug for ChildOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// How long a child process may run before it is killed (a hang then fails the test
/// with what the child printed, instead of hanging the suite).
const CHILD_LIMIT: Duration = Duration::from_secs(20);

/// Re-runs this test binary's test `entry` (which plays [`child_case`]) as a child
/// process with `case`; `configure` adds to the command (environment, limits). A
/// child still running after [`CHILD_LIMIT`] is killed (its exit code is then `None`).
pub(crate) fn run_child(
    entry: &str,
    case: &str,
    configure: impl FnOnce(&mut std::process::Command),
) -> ChildOutput {
    use std::io::Read;
    use std::process::Stdio;
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", entry, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, case)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    configure(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    // Drain both pipes while waiting, so a chatty child never blocks on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if start.elapsed() > CHILD_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::from_utf8_lossy(&err_t.join().unwrap()).into_owned();
    if status.is_none() {
        stderr.push_str(&format!("\n[killed after {CHILD_LIMIT:?}: it hung]"));
    }
    ChildOutput {
        code: status.and_then(|s| s.code()),
        stdout: String::from_utf8_lossy(&out_t.join().unwrap()).into_owned(),
        stderr,
    }
}

/// A tiny deterministic generator (xorshift), so failures replay.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// An OS thread outside the runtime that adds and removes cores of the default type
/// at random, keeping between 2 and 6, with a pause of `pause_us.0` plus up to
/// `pause_us.1` µs between changes (seeded with `seed`, so a failure replays).
pub(crate) struct Churner {
    stop: Arc<AtomicBool>,
    changes: Arc<std::sync::atomic::AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Churner {
    pub(crate) fn start(handle: spindle::Handle, seed: u64, pause_us: (u64, u64)) -> Churner {
        let stop = Arc::new(AtomicBool::new(false));
        let changes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let thread = {
            let (stop, changes) = (stop.clone(), changes.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(seed);
                while !stop.load(Ordering::Relaxed) {
                    let cores = handle.cores();
                    if cores.len() > 2 && rng.next().is_multiple_of(2) {
                        let victim = cores[(rng.next() as usize) % cores.len()].id;
                        // The core may have gone meanwhile: an error, not a loss.
                        let _ = handle.remove_core(victim);
                    } else if cores.len() < 6 {
                        handle.add_core(spindle::DEFAULT_TYPE).unwrap();
                    }
                    changes.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_micros(
                        pause_us.0 + rng.next() % pause_us.1.max(1),
                    ));
                }
            })
        };
        Churner {
            stop,
            changes,
            thread,
        }
    }

    /// Stops the churning and returns how many changes it made.
    pub(crate) fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        self.changes.load(Ordering::Relaxed)
    }
}

/// Counts its drops.
pub(crate) struct Counted(pub(crate) std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}
