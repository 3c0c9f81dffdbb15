//! The trace export (`RuntimeBuilder::trace`): the file parses as JSON, has one named
//! track per core, and every switch-in has its switch-out on the same track.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::watchdog;
use spindle::Runtime;
use spindle::sync::Mutex;

#[test]
fn a_trace_has_a_track_per_core_and_every_slice_closes() {
    let done = watchdog("trace export", 60);
    let path = std::env::temp_dir().join(format!("spindle-trace-{}.json", std::process::id()));
    let rt = Runtime::builder()
        .cores(2)
        .service_cores(1)
        .trace(&path)
        .build()
        .unwrap();
    rt.block_on(|| {
        let m = Arc::new(Mutex::new(0u64));
        let hs: Vec<_> = (0..8)
            .map(|i| {
                let m = m.clone();
                spindle::spawn_on(i % 2, move || {
                    for _ in 0..200 {
                        *m.lock().unwrap() += 1;
                        spindle::yield_now();
                    }
                    spindle::sleep(Duration::from_millis(2));
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*m.lock().unwrap(), 1600);
    });
    drop(rt);
    let text = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let v: serde_json::Value = serde_json::from_str(&text).expect("the trace is JSON");
    let events = v["traceEvents"].as_array().unwrap();
    // One named track per core: the two workers and the hypercore.
    let tracks: Vec<u64> = events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .map(|e| e["tid"].as_u64().unwrap())
        .collect();
    assert_eq!(tracks.len(), 3, "{tracks:?}");
    // On each track, slices alternate B, E for one thread, and none is left open.
    let mut open: HashMap<u64, u64> = HashMap::new();
    let mut slices: HashMap<u64, usize> = HashMap::new();
    for e in events {
        let tid = e["tid"].as_u64().unwrap_or(0);
        let thread = e["args"]["thread"].as_u64();
        match e["ph"].as_str() {
            Some("B") => {
                assert!(open.insert(tid, thread.unwrap()).is_none(), "nested B: {e}");
                *slices.entry(tid).or_default() += 1;
            }
            Some("E") => assert_eq!(open.remove(&tid), thread, "E without its B: {e}"),
            _ => {}
        }
    }
    assert!(open.is_empty(), "slices left open: {open:?}");
    assert!(slices.get(&0).is_some_and(|&n| n >= 200) && slices.get(&1).is_some_and(|&n| n >= 200));
    let named = |n: &str| events.iter().filter(|e| e["name"] == n).count();
    assert!(
        named("spawn") >= 8 && named("wake") > 0,
        "no spawn or wake events"
    );
    let ends: Vec<&str> = events
        .iter()
        .filter(|e| e["ph"] == "E")
        .filter_map(|e| e["args"]["why"].as_str())
        .collect();
    for why in ["yield", "exit", "wait: sleep", "wait: join"] {
        assert!(ends.contains(&why), "no slice ended by {why:?}");
    }
    assert_eq!(v["spindleDropped"], 0);
    done.store(true, Ordering::Relaxed);
}
