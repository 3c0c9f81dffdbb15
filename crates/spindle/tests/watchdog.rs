//! The watchdog: a thread that holds its core past N slices without a schedule point
//! (spinning and not preemptible, or blocked in the kernel) is reported once, at
//! warn level, with its name, id and core.
//!
//! A test binary of its own: it installs a process-wide `tracing` subscriber (the
//! tick runs on its own OS thread).

mod common;

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use spindle::{Builder, Runtime};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Warn-level events of target `spindle::watchdog`: each as "field=value ..." text.
static EVENTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={:?} ", field.name(), value);
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, "{}={} ", field.name(), value);
    }
}

impl Subscriber for Capture {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.target() == "spindle::watchdog"
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, e: &Event<'_>) {
        if *e.metadata().level() != Level::WARN {
            return;
        }
        let mut f = Fields(String::new());
        e.record(&mut f);
        EVENTS.lock().unwrap().push(f.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn install() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| tracing::subscriber::set_global_default(Capture).unwrap());
}

/// The reports naming thread id `id`.
fn reports_of(id: u64) -> Vec<String> {
    let needle = format!("id={id} ");
    EVENTS
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.contains(&needle))
        .cloned()
        .collect()
}

/// Waits up to 10 s for a report of `id`, then a little more for any duplicate.
fn wait_for_report(id: u64) -> Vec<String> {
    let start = Instant::now();
    while reports_of(id).is_empty() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(50));
    reports_of(id)
}

#[test]
fn a_spinning_thread_that_is_not_preemptible_is_reported_once() {
    install();
    let done = common::watchdog("a_spinning_thread_is_reported", 60);
    let rt = Runtime::builder()
        .cores(1)
        .time_slice(Duration::from_millis(2))
        .watchdog_slices(5)
        .build()
        .unwrap();
    let (_id, reports) = rt.block_on(|| {
        let h = Builder::new()
            .name("stuck-spinner")
            .core(0)
            .spawn(|| {
                // 10 ms is past 5 slices of 2 ms; spin far longer, with no runtime
                // call, until the report is out.
                let me = spindle::current().id().as_u64();
                let start = Instant::now();
                while reports_of(me).is_empty() && start.elapsed() < Duration::from_secs(10) {
                    for _ in 0..10_000 {
                        std::hint::spin_loop();
                    }
                }
                // Keep going a while: still one report for this run.
                let more = Instant::now();
                while more.elapsed() < Duration::from_millis(100) {
                    std::hint::spin_loop();
                }
                me
            })
            .unwrap();
        let id = h.thread().id().as_u64();
        assert_eq!(h.join().unwrap(), id);
        (id, reports_of(id))
    });
    assert_eq!(reports.len(), 1, "want exactly one report: {reports:?}");
    let r = &reports[0];
    assert!(r.contains("thread=stuck-spinner"), "{r}");
    assert!(r.contains("core=0"), "{r}");
    assert!(r.contains("not preemptible"), "{r}");
    done.store(true, Ordering::Relaxed);
}

#[test]
fn a_core_blocked_in_the_kernel_is_reported() {
    install();
    let done = common::watchdog("a_core_blocked_in_the_kernel_is_reported", 60);
    // Without handoff the core stays blocked with its OS thread (with it, the core
    // goes to a spare OS thread within a few ticks: `tests/handoff.rs`).
    let rt = Runtime::builder()
        .handoff(false)
        .cores(1)
        .time_slice(Duration::from_millis(2))
        .watchdog_slices(5)
        .build()
        .unwrap();
    let id = rt.block_on(|| {
        let h = Builder::new()
            .name("blocked-in-kernel")
            .core(0)
            .spawn(|| {
                // A blocking system call: the whole core sleeps in the kernel.
                std::thread::sleep(Duration::from_millis(400));
            })
            .unwrap();
        let id = h.thread().id().as_u64();
        h.join().unwrap();
        id
    });
    let reports = wait_for_report(id);
    assert_eq!(reports.len(), 1, "want exactly one report: {reports:?}");
    let r = &reports[0];
    assert!(r.contains("thread=blocked-in-kernel"), "{r}");
    assert!(r.contains("core=0"), "{r}");
    assert!(r.contains("blocked in the kernel"), "{r}");
    done.store(true, Ordering::Relaxed);
}

#[test]
fn threads_that_yield_are_not_reported() {
    install();
    let rt = Runtime::builder()
        .cores(1)
        .time_slice(Duration::from_millis(2))
        .watchdog_slices(3)
        .build()
        .unwrap();
    let id = rt.block_on(|| {
        let h = Builder::new()
            .name("polite")
            .core(0)
            .spawn(|| {
                let start = Instant::now();
                while start.elapsed() < Duration::from_millis(200) {
                    // A schedule point often enough: honours the slice.
                    spindle::preempt_point();
                }
            })
            .unwrap();
        let id = h.thread().id().as_u64();
        h.join().unwrap();
        id
    });
    std::thread::sleep(Duration::from_millis(20));
    assert!(reports_of(id).is_empty(), "{:?}", reports_of(id));
}
