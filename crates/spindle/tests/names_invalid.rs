//! A binary whose named-thread table is invalid: every runtime refuses to start, and
//! the error lists every offender.

use spindle::{ConfigError, CoreType, Runtime};

#[spindle::thread(name = "twice", variant = "generic")]
fn twice_a(x: u8) -> u8 {
    x
}

#[spindle::thread(name = "twice", variant = "generic")]
fn twice_b(x: u8) -> u8 {
    x + 1
}

#[spindle::thread(name = "also_twice")]
fn also_twice_a(_: ()) {}

#[spindle::thread(name = "also_twice", variant = "generic")]
fn also_twice_b(_: ()) {}

#[spindle::thread(name = "typo", variant = "avx9000")]
fn typo(_: ()) {}

#[spindle::thread(name = "mixed", variant = "generic")]
fn mixed_a(x: u8) -> u8 {
    x
}

#[spindle::thread(name = "mixed", variant = "avx2")]
fn mixed_b(x: u16) -> u8 {
    x as u8
}

#[spindle::thread(name = "only_avx2", variant = "avx2")]
fn only_avx2(_: ()) {}

#[test]
fn an_invalid_table_is_a_config_error_listing_every_offender() {
    // `plain` has SSE2 only: `only_avx2` and `typo` can run nowhere.
    let err = Runtime::builder()
        .core_type(CoreType::new("plain").cores(1).features(["sse2"]))
        .build()
        .err()
        .expect("an invalid table must stop the runtime");
    let ConfigError::ThreadTable(t) = &err else {
        panic!("{err:?}");
    };
    let dups: Vec<&str> = t.duplicates.iter().map(|d| d.0.as_str()).collect();
    assert_eq!(dups, ["also_twice", "twice"]);
    assert!(
        t.duplicates
            .iter()
            .all(|d| d.2.len() == 2 && d.2[0].contains("names_invalid.rs"))
    );
    assert_eq!(t.unknown_features.len(), 1);
    assert_eq!(t.unknown_features[0].2, "avx9000");
    assert_eq!(t.mismatched_types.len(), 1);
    assert_eq!(t.mismatched_types[0].0, "mixed");
    let unrunnable: Vec<&str> = t.unrunnable.iter().map(|u| u.0.as_str()).collect();
    assert_eq!(unrunnable, ["only_avx2", "typo"]);
    let msg = err.to_string();
    for needle in [
        "'twice'",
        "'also_twice'",
        "avx9000",
        "'mixed'",
        "'only_avx2'",
        "generic",
    ] {
        assert!(msg.contains(needle), "{needle} missing from:\n{msg}");
    }
    // The functions stay ordinary functions.
    assert_eq!(twice_a(1) + twice_b(1), 3);
    also_twice_a(());
    also_twice_b(());
    typo(());
    assert_eq!(mixed_a(1) + mixed_b(1), 2);
    only_avx2(());
}
