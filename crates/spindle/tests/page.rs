//! The live stats page (`RuntimeBuilder::stats`): a reader in this process sees the
//! cores and the busiest threads while they run, the page goes with the runtime, and
//! a process without a page is a clear error.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::watchdog;
use spindle::page::{PAGE_EVERY, PageError, StatsPage};
use spindle::{Builder, Runtime};

#[test]
fn a_reader_sees_the_cores_and_the_busiest_thread_while_they_run() {
    let done = watchdog("stats page", 60);
    let rt = Runtime::builder()
        .cores(2)
        .service_cores(1)
        .stats(true)
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    // Two threads on core 1 that yield to each other: the core switches all along.
    let busy = rt.block_on(move || {
        ["busy-bee", "busy-wasp"].map(|name| {
            let st = st.clone();
            Builder::new()
                .name(name)
                .core(1)
                .spawn(move || {
                    let mut n = 0u64;
                    while !st.load(Ordering::Relaxed) {
                        n += 1;
                        if n.is_multiple_of(1000) {
                            spindle::yield_now();
                        }
                    }
                })
                .unwrap()
        })
    });
    let pid = std::process::id();
    std::thread::sleep(PAGE_EVERY * 2);
    let page = StatsPage::open(pid).unwrap();
    let a = page.read().unwrap();
    std::thread::sleep(PAGE_EVERY * 2);
    let b = page.read().unwrap();
    assert_eq!(a.pid, pid);
    assert!(
        b.writes > a.writes,
        "the page was not rewritten: {a:?} {b:?}"
    );
    assert_eq!(b.cores.len(), 3, "{b:?}");
    let row = |s: &spindle::page::PageSnapshot, id: usize| {
        s.cores.iter().find(|c| c.id == id).cloned().unwrap()
    };
    assert!(row(&b, 1).switches > row(&a, 1).switches, "{a:?} {b:?}");
    assert!(row(&b, 2).service && !row(&b, 1).service);
    assert_eq!(row(&b, 0).core_type, "default");
    let bee = b
        .top
        .iter()
        .find(|t| t.name.as_deref() == Some("busy-bee"))
        .unwrap_or_else(|| panic!("busy-bee is not among the busiest: {b:?}"));
    assert_eq!(bee.id, busy[0].thread().id().as_u64());
    assert!(bee.ticks > 10, "{b:?}");
    stop.store(true, Ordering::Relaxed);
    for h in busy {
        h.join().unwrap();
    }
    drop(page);
    drop(rt);
    assert!(matches!(
        StatsPage::open(pid),
        Err(PageError::NoPage { .. })
    ));
    done.store(true, Ordering::Relaxed);
}

#[test]
fn a_process_without_a_page_is_a_clear_error() {
    // PID 1 (init) is no spindle program.
    let e = StatsPage::open(1).err().unwrap();
    assert!(matches!(e, PageError::NoPage { pid: 1 }), "{e:?}");
    assert!(e.to_string().contains("SPINDLE_STATS=1"), "{e}");
}
