//! Named heterogeneous threads: the static table, variant choice per core type, typed
//! errors, and lazy contexts (the target core builds the thread).

mod common;

use std::sync::atomic::Ordering;

use proptest::prelude::*;
use spindle::names::choose;
use spindle::topology::{FEATURES, FeatureSet};
use spindle::{Builder, CoreType, Runtime, SpawnError, spawn_named};

#[spindle::thread(name = "which", variant = "generic")]
fn which_generic(x: u32) -> (u32, &'static str) {
    (x, "generic")
}

/// The features of `#[target_feature]` are required too: this variant needs AVX2
/// and FMA.
#[spindle::thread(name = "which", variant = "avx2")]
#[target_feature(enable = "fma")]
fn which_avx2(x: u32) -> (u32, &'static str) {
    (x, "avx2")
}

#[spindle::thread(name = "which", variant = "avx512f")]
fn which_avx512(x: u32) -> (u32, &'static str) {
    (x, "avx512f")
}

/// Only runs where AVX2 is.
#[spindle::thread(name = "wide", variant = "avx2")]
fn wide(v: Vec<u8>) -> usize {
    v.len()
}

/// Where the thread's stack block was built: the core it first ran on, and the
/// number of lazily built threads there so far.
#[spindle::thread(name = "where", variant = "generic")]
fn where_am_i(_: ()) -> Option<usize> {
    spindle::current_core()
}

#[spindle::thread(name = "boom")]
fn boom(_: ()) -> u8 {
    panic!("named threads unwind like others")
}

fn avx512() -> bool {
    spindle::topology::has_feature("avx512f") == Some(true)
}

/// Four cores, oversubscribed on two CPUs: two of the machine's full type, two
/// `lite` (AVX2, no AVX-512), one `plain` (SSE2 only).
fn runtime() -> Runtime {
    Runtime::builder()
        .core_type(CoreType::new("big").cores(2))
        .core_type(CoreType::new("lite").cores(1).features(["avx2", "fma"]))
        .core_type(CoreType::new("plain").cores(1).features(["sse2"]))
        .pin(false)
        .build()
        .unwrap()
}

#[test]
fn the_most_specific_runnable_variant_runs_on_each_core_type() {
    let done = common::watchdog("named variant choice", 60);
    let rt = runtime();
    rt.block_on(|| {
        for (ty, want) in [
            ("big", if avx512() { "avx512f" } else { "avx2" }),
            ("lite", "avx2"),
            ("plain", "generic"),
        ] {
            let h =
                spawn_named::<u32, (u32, &'static str)>("which", 7, Builder::new().core_type(ty))
                    .unwrap();
            assert_eq!(h.variant(), Some(want), "on {ty}");
            assert_eq!(h.thread().name(), Some("which"));
            assert_eq!(h.join().unwrap(), (7, want), "on {ty}");
        }
        // By core id: cores 2 and 3 are lite and plain.
        let h =
            spawn_named::<u32, (u32, &'static str)>("which", 1, Builder::new().core(3)).unwrap();
        assert_eq!(h.join().unwrap().1, "generic");
        // Attributes apply: a name and a priority.
        let h = spawn_named::<u32, (u32, &'static str)>(
            "which",
            2,
            Builder::new()
                .name("w2")
                .priority(50)
                .stack_size(32 << 10)
                .core(2),
        )
        .unwrap();
        assert_eq!(h.thread().name(), Some("w2"));
        assert_eq!(h.join().unwrap(), (2, "avx2"));
        // Without attributes, the caller's type (big) is used when it can run the name.
        let h = spawn_named::<Vec<u8>, usize>("wide", vec![1, 2, 3], Builder::new()).unwrap();
        assert_eq!(h.join().unwrap(), 3);
        // A panic in a named thread is the join error.
        let h = spawn_named::<(), u8>("boom", (), Builder::new()).unwrap();
        assert!(h.join().is_err());
    });
    done.store(true, Ordering::Relaxed);
}

#[test]
fn the_table_holds_every_variant_with_its_features_and_types() {
    let mut which: Vec<_> = spindle::names::table()
        .iter()
        .filter(|e| e.name() == "which")
        .map(|e| (e.variant(), e.requires().to_vec()))
        .collect();
    which.sort();
    assert_eq!(
        which,
        [
            ("avx2", vec!["avx2", "fma"]),
            ("avx512f", vec!["avx512f"]),
            ("generic", vec![]),
        ]
    );
    let boom = spindle::names::table()
        .iter()
        .find(|e| e.name() == "boom")
        .unwrap();
    assert_eq!(boom.variant(), "generic");
    assert_eq!((boom.arg_type(), boom.return_type()), ("()", "u8"));
    assert!(boom.location().contains("named.rs"));
}

#[test]
fn bad_named_spawns_are_typed_errors_that_say_what_to_do() {
    let done = common::watchdog("named errors", 60);
    let rt = runtime();
    rt.block_on(|| {
        let err = spawn_named::<u32, u32>("nope", 1, Builder::new()).unwrap_err();
        assert!(matches!(&err, SpawnError::UnknownName { name, known } if name == "nope" && known.iter().any(|k| k == "which")));
        assert!(err.to_string().contains("#[spindle::thread(name = \"nope\""), "{err}");

        let err = spawn_named::<u64, u32>("which", 1, Builder::new()).unwrap_err();
        let SpawnError::TypeMismatch { expected, given, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(expected, "fn(u32) -> (u32, &str)");
        assert_eq!(given, "fn(u64) -> u32");
        assert!(err.to_string().contains("spawn_named::<A, R>"), "{err}");

        let err = spawn_named::<Vec<u8>, usize>("wide", vec![], Builder::new().core_type("plain"))
            .unwrap_err();
        assert!(matches!(&err, SpawnError::NoRunnableVariant { core_type, .. } if core_type == "plain"));
        assert!(err.to_string().contains("avx2"), "{err}");

        let err = spawn_named::<u32, (u32, &str)>("which", 1, Builder::new().core(9)).unwrap_err();
        assert_eq!(err, SpawnError::NoSuchCore { core: 9 });
        let err = spawn_named::<u32, (u32, &str)>("which", 1, Builder::new().core_type("gpu"))
            .unwrap_err();
        assert_eq!(err, SpawnError::NoSuchType { name: "gpu".into() });
        let err = spawn_named::<u32, (u32, &str)>("which", 1, Builder::new().priority(99))
            .unwrap_err();
        assert!(matches!(err, SpawnError::Priority { .. }));
    });
    // Outside a runtime, and after shutdown.
    assert_eq!(
        spawn_named::<(), u8>("boom", (), Builder::new()).unwrap_err(),
        SpawnError::NoRuntime
    );
    let handle = rt.handle().clone();
    let h = Builder::new()
        .spawn_named_in::<u32, (u32, &str)>(&handle, "which", 5)
        .unwrap();
    assert_eq!(h.join().unwrap().0, 5);
    drop(rt);
    let err = Builder::new()
        .spawn_named_in::<u32, (u32, &str)>(&handle, "which", 5)
        .unwrap_err();
    assert_eq!(err, SpawnError::ShutDown);
    assert!(err.to_string().contains("build a new one"));
    done.store(true, Ordering::Relaxed);
}

#[test]
fn the_target_core_builds_a_lazily_created_thread() {
    let done = common::watchdog("lazy contexts", 60);
    let rt = runtime();
    rt.block_on(|| {
        let here = spindle::current_core().unwrap();
        // Bind this thread to its core: the balancer moves unbound threads, and the
        // test needs the creating core to stay the same.
        spindle::migrate_to(here).unwrap();
        let other = (0..2).find(|&c| c != here).unwrap();
        // Counters of both big cores before, read on each core.
        let built_on = |core: usize| {
            spindle::spawn_on(core, || spindle::core_stats().unwrap().built)
                .join()
                .unwrap()
        };
        let (here0, other0) = (built_on(here), built_on(other));
        let n = 20;
        for _ in 0..n {
            let h =
                spawn_named::<(), Option<usize>>("where", (), Builder::new().core(other)).unwrap();
            assert_eq!(h.join().unwrap(), Some(other));
        }
        let (here1, other1) = (built_on(here), built_on(other));
        // Every named thread (and the probe spawned onto `other`) was built there; the
        // creating core built none (its own probes are local spawns, built eagerly).
        assert!(other1 - other0 >= n, "{other0} -> {other1}");
        assert_eq!(
            here1, here0,
            "the creating core built threads it did not run"
        );
    });
    done.store(true, Ordering::Relaxed);
}

fn feature_set() -> impl Strategy<Value = FeatureSet> {
    any::<u64>().prop_map(|bits| FeatureSet(bits & ((1u64 << FEATURES.len()) - 1)))
}

proptest! {
    /// For random core-type feature sets, the chosen variant is runnable there and no
    /// runnable variant is more specific.
    #[test]
    fn the_chosen_variant_is_runnable_and_most_specific(
        variants in proptest::collection::vec(feature_set(), 0..8),
        have in feature_set(),
    ) {
        let variants: Vec<FeatureSet> = variants.into_iter().map(FeatureSet::closure).collect();
        let have = have.closure();
        match choose(&variants, have) {
            Some(i) => {
                prop_assert!(have.contains(variants[i]));
                for v in &variants {
                    prop_assert!(!(have.contains(*v) && v.len() > variants[i].len()));
                }
            }
            None => prop_assert!(variants.iter().all(|v| !have.contains(*v))),
        }
    }
}
