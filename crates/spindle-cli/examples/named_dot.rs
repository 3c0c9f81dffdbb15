//! Named heterogeneous threads: one dot-product kernel in three variants (`generic`,
//! `avx2+fma`, `avx512f`, see `spindle_cli::dot`), spawned by name on two core types.
//! `big` has every feature of this CPU, `lite` is declared with AVX2 and FMA only, so
//! spindle runs the AVX-512 variant on `big` (where the CPU has it) and the AVX2 one
//! on `lite` — and every variant gives the same result, within rounding.
//!
//! ```text
//! cargo run --release -p spindle-cli --example named_dot
//! ```

use std::sync::Arc;

use spindle::{Builder, CoreType, Runtime, spawn_named};
use spindle_cli::dot::{DotArg, dot_generic, tolerance};

fn main() {
    let rt = Runtime::builder()
        .core_type(CoreType::new("big").cores(1))
        .core_type(CoreType::new("lite").cores(1).features(["avx2", "fma"]))
        .build()
        .expect("a runtime with two core types");
    let a: Arc<[f32]> = (0..10_000).map(|i| (i as f32 * 0.01).sin()).collect();
    let b: Arc<[f32]> = (0..10_000).map(|i| (i as f32 * 0.02).cos()).collect();
    let want = dot_generic(&a, &b);
    rt.block_on(|| {
        for ty in ["big", "lite"] {
            let h = spawn_named::<DotArg, f32>(
                "dot",
                (a.clone(), b.clone()),
                Builder::new().core_type(ty),
            )
            .expect("dot runs on both types");
            let variant = h.variant().unwrap_or("?");
            let got = h.join().expect("dot panicked");
            println!("core type {ty:<5} ran variant {variant:<9} dot = {got}");
            assert!((got - want).abs() <= tolerance(&a, &b));
        }
        // Asking for a thread that is not in the table is a typed error.
        let err = spawn_named::<(), ()>("fft", (), Builder::new()).unwrap_err();
        println!("spawn_named(\"fft\"): {err}");
    });
    println!("generic reference: {want}");
}
