//! Random spawn / join / detach / yield sequences: every join returns the value its
//! own thread produced, live ids are distinct, and ids of finished threads are never
//! observed again on a live thread.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Spawn(u32),
    Join(usize),
    Detach(usize),
    Yield,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<u32>().prop_map(Op::Spawn),
        2 => any::<usize>().prop_map(Op::Join),
        1 => any::<usize>().prop_map(Op::Detach),
        1 => Just(Op::Yield),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn join_returns_the_right_value_and_ids_never_repeat(ops in proptest::collection::vec(op(), 1..200)) {
        spindle::run(move || {
            let mut live: Vec<(spindle::JoinHandle<(u32, spindle::ThreadId)>, u32)> = Vec::new();
            let mut dead: HashSet<spindle::ThreadId> = HashSet::new();
            for op in ops {
                match op {
                    Op::Spawn(v) => {
                        let h = spindle::spawn(move || {
                            spindle::yield_now();
                            (v, spindle::current().id())
                        });
                        let id = h.thread().id();
                        assert!(!dead.contains(&id), "id {id:?} of a finished thread reused");
                        let ids: HashMap<_, _> = live.iter().map(|(h, _)| (h.thread().id(), ())).collect();
                        assert!(!ids.contains_key(&id), "two live threads share {id:?}");
                        live.push((h, v));
                    }
                    Op::Join(k) if !live.is_empty() => {
                        let (h, v) = live.swap_remove(k % live.len());
                        let id = h.thread().id();
                        let (got, seen_id) = h.join().unwrap();
                        assert_eq!(got, v);
                        assert_eq!(seen_id, id, "thread saw another id than its handle");
                        dead.insert(id);
                    }
                    Op::Detach(k) if !live.is_empty() => {
                        let (h, _) = live.swap_remove(k % live.len());
                        dead.insert(h.thread().id());
                    }
                    _ => spindle::yield_now(),
                }
            }
            for (h, v) in live {
                assert_eq!(h.join().unwrap().0, v);
            }
        });
    }
}
