//! A panic belongs to its spindle thread: other threads of its core do not see it
//! (`panicking()`, lock poisoning), it moves with the thread when the thread blocks or
//! migrates while unwinding, its report names the spindle thread, the user's panic
//! hook keeps working, and a panic on the smallest stack survives a backtrace.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use spindle::{Builder, Runtime};

mod common;
use common::{on_one_core, with_watchdog};

/// Runs `f` when dropped (during the unwinding of its thread, in these tests).
struct OnDrop<F: FnMut()>(F);
impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

/// Thread A panics and, on its way out, sleeps in a destructor. Thread B runs on the
/// same core meanwhile: it is not panicking, and a mutex it locks and releases is not
/// poisoned. A is still panicking after its sleep.
#[test]
fn a_thread_that_sleeps_while_unwinding_keeps_its_panic_to_itself() {
    with_watchdog("sleep while unwinding", 60, || {
        on_one_core(|| {
            let a_after = Arc::new(AtomicU32::new(0));
            let a = {
                let a_after = a_after.clone();
                spindle::spawn(move || {
                    let _g = OnDrop(move || {
                        assert!(spindle::panicking());
                        spindle::sleep(Duration::from_millis(30));
                        // Both views agree, on whichever core we resumed.
                        let both = spindle::panicking() && std::thread::panicking();
                        a_after.store(if both { 1 } else { 2 }, Ordering::SeqCst);
                    });
                    panic!("A panics on purpose");
                })
            };
            let b = spindle::spawn(|| {
                spindle::sleep(Duration::from_millis(5));
                let m = spindle::sync::Mutex::new(0);
                let rw = spindle::sync::RwLock::new(0);
                *m.lock().unwrap() += 1;
                *rw.write().unwrap() += 1;
                (
                    spindle::panicking(),
                    std::thread::panicking(),
                    m.is_poisoned(),
                    rw.is_poisoned(),
                )
            });
            let seen_by_b = b.join().unwrap();
            assert!(a.join().is_err());
            assert_eq!(seen_by_b, (false, false, false, false), "B saw A's panic");
            assert_eq!(a_after.load(Ordering::SeqCst), 1, "A lost its panic");
        });
    });
}

/// A thread that migrates while unwinding takes its panic along: its old core is not
/// left panicking, its new core is not left with a count taken away, and a later real
/// panic on either core is seen as one.
#[test]
fn a_thread_that_migrates_while_unwinding_takes_its_panic_along() {
    with_watchdog("migrate while unwinding", 60, || {
        let rt = Runtime::builder().cores(2).build().unwrap();
        rt.block_on(|| {
            let moved = Arc::new(AtomicBool::new(false));
            let a = {
                let moved = moved.clone();
                Builder::new()
                    .core(0)
                    .spawn(move || {
                        let _g = OnDrop(move || {
                            spindle::migrate_to(1).unwrap();
                            moved.store(
                                spindle::current_core() == Some(1) && spindle::panicking(),
                                Ordering::SeqCst,
                            );
                        });
                        panic!("A panics on purpose");
                    })
                    .unwrap()
            };
            assert!(a.join().is_err());
            assert!(moved.load(Ordering::SeqCst), "A lost its panic on the way");
            for core in [0, 1] {
                let calm =
                    spindle::spawn_on(core, || (std::thread::panicking(), spindle::panicking()));
                assert_eq!(
                    calm.join().unwrap(),
                    (false, false),
                    "core {core} left panicking"
                );
                // A real panic there is seen, in its destructors, as a panic.
                let seen = Arc::new(AtomicU32::new(0));
                let s = seen.clone();
                let p = spindle::spawn_on(core, move || {
                    let _g = OnDrop(move || {
                        let v = u32::from(std::thread::panicking())
                            + 2 * u32::from(spindle::panicking());
                        s.store(v, Ordering::SeqCst);
                    });
                    panic!("a second panic on purpose");
                });
                assert!(p.join().is_err());
                assert_eq!(
                    seen.load(Ordering::SeqCst),
                    3,
                    "core {core}: a panic not seen as one"
                );
            }
        });
    });
}

/// A user's panic hook that says when it was set and what the panic said.
fn user_hook(when: &'static str) -> Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send> {
    Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .unwrap_or("?");
        eprintln!("user hook {when}: {msg}");
    })
}

/// The child side of the tests below.
#[test]
fn child_entry() {
    match common::child_case().as_deref() {
        Some("report") => {
            std::panic::set_hook(user_hook("before"));
            spindle::run(|| {
                let h = Builder::new()
                    .name("worker")
                    .spawn(|| panic!("boom one"))
                    .unwrap();
                assert!(h.join().is_err());
            });
            // A hook set while a runtime runs keeps working too.
            spindle::run(|| {
                std::panic::set_hook(user_hook("after"));
                let h = Builder::new()
                    .name("late")
                    .spawn(|| panic!("boom two"))
                    .unwrap();
                assert!(h.join().is_err());
            });
            println!("done");
        }
        Some("small-stack") => {
            let ok = spindle::run(|| {
                [spindle::MIN_STACK_SIZE, 2 * spindle::MIN_STACK_SIZE]
                    .into_iter()
                    .all(|size| {
                        Builder::new()
                            .name("small")
                            .stack_size(size)
                            .spawn(|| panic!("boom on a small stack"))
                            .unwrap()
                            .join()
                            .is_err()
                    })
            });
            println!("survived {ok}");
        }
        _ => {}
    }
}

#[test]
fn the_panic_report_names_the_spindle_thread_and_user_hooks_keep_working() {
    let c = common::run_child("child_entry", "report", |_| {});
    assert_eq!(c.code, Some(0), "{c:?}");
    assert!(c.stdout.contains("done"), "{c:?}");
    assert!(c.stderr.contains("user hook before: boom one"), "{c:?}");
    assert!(c.stderr.contains("user hook after: boom two"), "{c:?}");
    // The first report (spindle's wrapper of the user's hook) names the thread.
    assert!(c.stderr.contains("thread 'worker' (id "), "{c:?}");
}

#[test]
fn a_panic_on_the_smallest_stacks_survives_a_backtrace() {
    for bt in ["1", "full"] {
        let c = common::run_child("child_entry", "small-stack", |cmd| {
            cmd.env("RUST_BACKTRACE", bt);
        });
        assert_eq!(c.code, Some(0), "RUST_BACKTRACE={bt}: {c:?}");
        assert!(
            c.stdout.contains("survived true"),
            "RUST_BACKTRACE={bt}: {c:?}"
        );
        assert!(
            c.stderr.contains("boom on a small stack"),
            "RUST_BACKTRACE={bt}: {c:?}"
        );
        assert!(
            c.stderr.contains("stack backtrace"),
            "RUST_BACKTRACE={bt}: {c:?}"
        );
    }
}
