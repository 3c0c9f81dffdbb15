//! The fallback ticker: an OS thread that runs the tick when the runtime has no
//! hypercore. With a hypercore the tick is its `spindle-ticker` maintenance thread
//! (`maintenance`); a ticker on a worker core could not interrupt the core it runs on.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use super::clock::{Clock, Ticker};
use crate::loom::Ordering;

/// Starts the OS thread `spindle-ticker`, which calls `tick` every tick of `clock`
/// until [`stop`].
pub(crate) fn start(clock: &Clock, tick: impl Fn(Instant) + Send + 'static) -> std::io::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let period = clock.config.tick;
    let thread = std::thread::Builder::new()
        .name("spindle-ticker".into())
        .spawn(move || {
            let mut next = Instant::now();
            while !s.load(Ordering::Acquire) {
                next += period;
                let now = Instant::now();
                if next > now {
                    std::thread::park_timeout(next - now);
                    continue_if_early(&s, next);
                } else {
                    // Late (a loaded machine): do not try to catch up.
                    next = now;
                }
                if s.load(Ordering::Acquire) {
                    break;
                }
                tick(Instant::now());
            }
        })?;
    *clock.ticker.lock().unwrap_or_else(|e| e.into_inner()) = Some(Ticker { stop, thread });
    Ok(())
}

/// Parks until `next` (a `park_timeout` may return early), unless stopped.
fn continue_if_early(stop: &AtomicBool, next: Instant) {
    loop {
        let now = Instant::now();
        if now >= next || stop.load(Ordering::Acquire) {
            return;
        }
        std::thread::park_timeout(next - now);
    }
}

/// Stops the ticker OS thread, if it runs, and waits for it.
pub(crate) fn stop(clock: &Clock) {
    let t = clock
        .ticker
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some(t) = t {
        t.stop.store(true, Ordering::Release);
        t.thread.thread().unpark();
        let _ = t.thread.join();
    }
}
