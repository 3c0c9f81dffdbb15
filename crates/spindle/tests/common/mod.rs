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
