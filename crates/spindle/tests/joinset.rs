//! `JoinSet`: results in completion order, `cancel_all`, a dropped set cancelling its
//! threads, panics reported.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use spindle::sync::mpsc;
use spindle::{Cancelled, JoinSet};

#[spindle::test(cores = 2)]
fn results_come_in_the_order_threads_finish() {
    let mut set = JoinSet::new();
    let (tx, rx) = mpsc::channel::<()>();
    let gates: Vec<_> = (0..4)
        .map(|i| {
            let (gtx, grx) = mpsc::channel::<()>();
            let tx = tx.clone();
            set.spawn(move || {
                grx.recv().unwrap();
                tx.send(()).unwrap();
                i
            });
            gtx
        })
        .collect();
    assert_eq!(set.len(), 4);
    assert!(set.try_join_next().is_none());
    // Release them in the order 2, 0, 3, 1, each after the previous was joined.
    let mut order = Vec::new();
    for i in [2, 0, 3, 1] {
        gates[i].send(()).unwrap();
        rx.recv().unwrap();
        order.push(set.join_next().unwrap().unwrap());
    }
    assert_eq!(order, [2, 0, 3, 1]);
    assert!(set.is_empty());
    assert!(set.join_next().is_none());
}

#[spindle::test(cores = 2)]
fn cancel_all_ends_every_thread_with_cancelled() {
    let mut set = JoinSet::new();
    for _ in 0..10 {
        set.spawn(|| spindle::sleep(Duration::from_secs(3600)));
    }
    set.spawn(|| panic!("expected in this test"));
    spindle::sleep(Duration::from_millis(5));
    set.cancel_all();
    let results = set.join_all();
    assert_eq!(results.len(), 11);
    let cancelled = results
        .iter()
        .filter(|r| r.as_ref().is_err_and(|p| p.is::<Cancelled>()))
        .count();
    let panicked = results
        .iter()
        .filter(|r| r.as_ref().is_err_and(|p| p.is::<&str>()))
        .count();
    assert_eq!((cancelled, panicked), (10, 1));
}

#[spindle::test(cores = 2)]
fn dropping_the_set_cancels_its_threads() {
    struct Count(Arc<AtomicUsize>);
    impl Drop for Count {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let ended = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for _ in 0..8 {
        let c = Count(ended.clone());
        set.spawn(move || {
            let _c = c;
            spindle::sleep(Duration::from_secs(3600));
        });
    }
    spindle::sleep(Duration::from_millis(5));
    drop(set);
    common::with_watchdog("dropped set", 30, || {
        while ended.load(Ordering::SeqCst) < 8 {
            spindle::sleep(Duration::from_millis(1));
        }
    });
}
