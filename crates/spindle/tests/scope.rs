//! Scoped threads (`spindle::scope`): borrowing, joining, panics, and a shutdown that
//! abandons a scope while its threads still run.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::watchdog;
use spindle::Runtime;

#[test]
fn scoped_threads_borrow_and_are_joined_before_scope_returns() {
    let done = watchdog("scope borrows", 60);
    let rt = Runtime::builder().cores(2).build().unwrap();
    rt.block_on(|| {
        let data: Vec<u64> = (0..1000).collect();
        let mut sums = [0u64; 4];
        let finished = AtomicUsize::new(0);
        let total = spindle::scope(|s| {
            for (i, sum) in sums.iter_mut().enumerate() {
                let (data, finished) = (&data, &finished);
                s.spawn(move || {
                    spindle::sleep(Duration::from_millis(5));
                    *sum = data[i * 250..(i + 1) * 250].iter().sum();
                    finished.fetch_add(1, Ordering::Relaxed);
                });
            }
            let h = s.spawn(|| data.len());
            h.join().unwrap()
        });
        // Every thread ended before `scope` returned, joined or not.
        assert_eq!(finished.load(Ordering::Relaxed), 4);
        assert_eq!(total, 1000);
        assert_eq!(sums.iter().sum::<u64>(), data.iter().sum::<u64>());
    });
    done.store(true, Ordering::Relaxed);
}

#[test]
fn panics_propagate_like_std() {
    let done = watchdog("scope panics", 60);
    let rt = Runtime::builder().cores(1).build().unwrap();
    rt.block_on(|| {
        // An unjoined panic: scope panics, after the slow thread finished too.
        let slow_done = AtomicBool::new(false);
        let r = catch_unwind(AssertUnwindSafe(|| {
            spindle::scope(|s| {
                s.spawn(|| panic!("boom"));
                s.spawn(|| {
                    spindle::sleep(Duration::from_millis(20));
                    slow_done.store(true, Ordering::Relaxed);
                });
            })
        }));
        assert!(r.is_err(), "an unjoined panic must make scope panic");
        assert!(slow_done.load(Ordering::Relaxed));
        // A panic reported by join does not.
        let v = spindle::scope(|s| {
            let h = s.spawn(|| -> u32 { panic!("seen") });
            assert!(h.join().is_err());
            7
        });
        assert_eq!(v, 7);
        // The closure's own panic goes on after its threads ended.
        let ended = AtomicBool::new(false);
        let r = catch_unwind(AssertUnwindSafe(|| {
            spindle::scope(|s| {
                s.spawn(|| {
                    spindle::sleep(Duration::from_millis(10));
                    ended.store(true, Ordering::Relaxed);
                });
                panic!("from the closure");
            })
        }));
        let msg = *r.unwrap_err().downcast::<&str>().unwrap();
        assert_eq!(msg, "from the closure");
        assert!(ended.load(Ordering::Relaxed));
    });
    done.store(true, Ordering::Relaxed);
}

#[test]
fn a_shutdown_unwinds_a_scope_only_after_its_threads_ended() {
    let done = watchdog("scope at shutdown", 60);
    let rt = Runtime::builder().cores(1).build().unwrap();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let order = order.clone();
        rt.spawn(move || {
            struct Note(Arc<std::sync::Mutex<Vec<&'static str>>>, &'static str);
            impl Drop for Note {
                fn drop(&mut self) {
                    self.0.lock().unwrap().push(self.1);
                }
            }
            let _caller = Note(order.clone(), "caller unwound");
            let borrowed = Note(order.clone(), "borrowed dropped");
            spindle::scope(|s| {
                s.spawn(|| {
                    let _inner = Note(order.clone(), "scoped thread unwound");
                    let _ = &borrowed;
                    loop {
                        spindle::park();
                    }
                });
            });
        });
    }
    std::thread::sleep(Duration::from_millis(30));
    drop(rt);
    let order = order.lock().unwrap().clone();
    assert_eq!(
        order,
        [
            "scoped thread unwound",
            "borrowed dropped",
            "caller unwound"
        ],
        "the scope's frame went before its thread"
    );
    done.store(true, Ordering::Relaxed);
}
