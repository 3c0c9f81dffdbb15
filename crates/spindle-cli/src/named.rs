//! Named heterogeneous threads in the `spindle` command: `spindle names` (the static
//! thread table) and the `named_variants` bench.
//!
//! `named_variants` records, in the JSON shape of the other benches (`bench`,
//! `runtime`, `ns_per_op`, `ops`, extras):
//!
//! | runtime | one operation |
//! |---|---|
//! | `spindle` | `spindle::spawn` of an empty closure + join, one core |
//! | `spindle_named` | `spindle::spawn_named("nop", ())` + join, one core (`vs_spindle` is the ratio to `spawn`) |
//! | `dot_<variant>` | one call of that variant of the dot kernel ([`DOT_LEN`] `f32`s), on an OS thread |
//! | `picked_<type>` | `spawn_named("dot", ..)` + join on a core of that core type; `variant` says which one spindle picked |
//!
//! The core types are `big` (every feature of this machine) and `lite` (AVX2 and FMA,
//! no AVX-512), one core each.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, json};

use crate::bench::{Options, Record, calibrate};
use crate::dot::{self, DotArg};
use crate::stats::Summary;

/// Length of the vectors of the dot kernel.
pub const DOT_LEN: usize = 4096;

/// Prints the static thread table: name, variants, required features, argument and
/// return types, and which of this machine's core types can run each variant.
pub fn print_names(out: &mut impl std::io::Write) -> std::io::Result<()> {
    let types = spindle::topology::detected_types();
    writeln!(
        out,
        "core types of this machine: {}",
        types
            .iter()
            .map(|t| format!(
                "{} (CPUs {:?}, {} features)",
                t.name,
                t.cpus,
                t.features.len()
            ))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    let mut entries: Vec<_> = spindle::names::table().iter().collect();
    entries.sort_by_key(|e| (e.name(), e.variant()));
    writeln!(
        out,
        "\n{:<8} {:<10} {:<32} {:<40} {:<8} runs on",
        "name", "variant", "requires (with implied)", "argument", "returns"
    )?;
    for e in entries {
        let (needs, runs_on) = match e.features() {
            Ok(f) => {
                let on: Vec<&str> = types
                    .iter()
                    .filter(|t| t.features.contains(f))
                    .map(|t| t.name.as_str())
                    .collect();
                let declared = if e.requires().is_empty() {
                    "-".to_string()
                } else {
                    e.requires().join("+")
                };
                (
                    format!("{declared} ({})", f.len()),
                    if on.is_empty() {
                        "no core type here".to_string()
                    } else {
                        on.join(", ")
                    },
                )
            }
            Err(u) => (format!("unknown feature '{u}'"), "nowhere".to_string()),
        };
        writeln!(
            out,
            "{:<8} {:<10} {:<32} {:<40} {:<8} {runs_on}",
            e.name(),
            e.variant(),
            needs,
            e.arg_type(),
            e.return_type()
        )?;
    }
    Ok(())
}

/// One row of the bench: what it measures and how.
struct Row {
    runtime: String,
    op: String,
    variant: Option<&'static str>,
    core_type: Option<&'static str>,
    run: Box<dyn Fn(u64) -> Duration>,
    ops: u64,
    samples: Vec<f64>,
}

fn vectors() -> DotArg {
    let a: Arc<[f32]> = (0..DOT_LEN).map(|i| ((i % 17) as f32) * 0.25).collect();
    let b: Arc<[f32]> = (0..DOT_LEN).map(|i| ((i % 13) as f32) - 6.0).collect();
    (a, b)
}

/// `n` spawn + join of an empty closure (`named == false`) or of the `nop` named
/// thread, on a one-core runtime.
fn spawn_join(n: u64, named: bool) -> Duration {
    let rt = spindle::Runtime::builder()
        .cores(1)
        .build()
        .expect("one core");
    rt.block_on(|| {
        let t0 = Instant::now();
        for _ in 0..n {
            if named {
                spindle::spawn_named::<(), ()>("nop", (), spindle::Builder::new())
                    .expect("nop is in the table")
                    .join()
                    .expect("nop panicked");
            } else {
                spindle::spawn(|| ()).join().expect("empty thread panicked");
            }
        }
        t0.elapsed()
    })
}

/// The two core types of the `picked_*` rows.
fn typed_runtime() -> spindle::Runtime {
    spindle::Runtime::builder()
        .core_type(spindle::CoreType::new("big").cores(1))
        .core_type(
            spindle::CoreType::new("lite")
                .cores(1)
                .features(["avx2", "fma"]),
        )
        .pin(false)
        .build()
        .expect("big and lite core types")
}

/// `n` spawn_named("dot") + join on the core type `ty`; returns the time and the
/// variant picked.
fn picked(n: u64, ty: &'static str) -> (Duration, Option<&'static str>) {
    let rt = typed_runtime();
    let arg = vectors();
    rt.block_on(move || {
        let mut variant = None;
        let t0 = Instant::now();
        for _ in 0..n {
            let h = spindle::spawn_named::<DotArg, f32>(
                "dot",
                (arg.0.clone(), arg.1.clone()),
                spindle::Builder::new().core_type(ty),
            )
            .expect("dot runs on both types");
            variant = h.variant();
            black_box(h.join().expect("dot panicked"));
        }
        (t0.elapsed(), variant)
    })
}

/// The variant spindle picks for `dot` on core type `ty`.
fn picked_variant(ty: &'static str) -> Option<&'static str> {
    picked(1, ty).1
}

/// Runs the `named_variants` bench (if `opts` selects it) and returns its records.
/// Calls `step` before each calibration and repetition.
pub fn run(opts: &Options, mut step: impl FnMut(&str)) -> Vec<Record> {
    let mut rows: Vec<Row> = Vec::new();
    let mut add = |runtime: String,
                   op: String,
                   variant: Option<&'static str>,
                   core_type: Option<&'static str>,
                   run: Box<dyn Fn(u64) -> Duration>| {
        if opts.selects("named_variants", &runtime) {
            rows.push(Row {
                runtime,
                op,
                variant,
                core_type,
                run,
                ops: 0,
                samples: Vec::new(),
            });
        }
    };
    add(
        "spindle".into(),
        "spindle::spawn an empty closure + join, one core".into(),
        None,
        None,
        Box::new(|n| spawn_join(n, false)),
    );
    add(
        "spindle_named".into(),
        "spindle::spawn_named(\"nop\", ()) + join, one core".into(),
        Some("generic"),
        None,
        Box::new(|n| spawn_join(n, true)),
    );
    for (name, f) in dot::runnable_variants() {
        let arg = vectors();
        add(
            format!("dot_{name}"),
            format!("one call of the {name} dot kernel ({DOT_LEN} f32), OS thread"),
            Some(name),
            None,
            Box::new(move |n| {
                let t0 = Instant::now();
                for _ in 0..n {
                    black_box(f(black_box(&arg.0), black_box(&arg.1)));
                }
                t0.elapsed()
            }),
        );
    }
    for ty in ["big", "lite"] {
        let variant = picked_variant(ty);
        add(
            format!("picked_{ty}"),
            format!(
                "spawn_named(\"dot\", {DOT_LEN} f32) + join on core type {ty} (picked {})",
                variant.unwrap_or("?")
            ),
            variant,
            Some(ty),
            Box::new(move |n| picked(n, ty).0),
        );
    }
    for r in &mut rows {
        step(&format!("named_variants/{}: calibrating", r.runtime));
        r.ops = calibrate(&r.run, opts.target);
    }
    for rep in 1..=opts.reps {
        for r in &mut rows {
            step(&format!(
                "named_variants/{}: rep {rep}/{}",
                r.runtime, opts.reps
            ));
            let d = (r.run)(r.ops);
            r.samples.push(d.as_nanos() as f64 / r.ops as f64);
        }
    }
    let median = |runtime: &str| {
        rows.iter()
            .find(|r| r.runtime == runtime)
            .and_then(|r| Summary::of(&r.samples))
            .map(|s| s.median)
    };
    let spawn = median("spindle");
    rows.iter()
        .map(|r| {
            let s = Summary::of(&r.samples).expect("samples");
            let mut extra = Map::new();
            extra.insert("op".into(), json!(r.op));
            extra.insert("reps".into(), json!(r.samples.len()));
            extra.insert("min_ns_per_op".into(), json!(s.min));
            extra.insert("max_ns_per_op".into(), json!(s.max));
            extra.insert("spread_pct".into(), json!(s.spread_pct));
            let base = spawn.filter(|&b| b > 0.0);
            if let (true, Some(base)) = (r.runtime.starts_with("spindle"), base) {
                extra.insert("vs_spindle".into(), json!(s.median / base));
            }
            if let Some(v) = r.variant {
                extra.insert("variant".into(), json!(v));
            }
            if let Some(t) = r.core_type {
                extra.insert("core_type".into(), json!(t));
            }
            extra.insert("samples_ns_per_op".into(), json!(r.samples));
            Record {
                bench: "named_variants".into(),
                runtime: r.runtime.clone(),
                ns_per_op: s.median,
                ops: r.ops,
                extra,
            }
        })
        .collect()
}

/// The rows of the named-thread table, by runtime name.
const ROWS: [&str; 7] = [
    "spindle",
    "spindle_named",
    "dot_generic",
    "dot_avx2+fma",
    "dot_avx512f",
    "picked_big",
    "picked_lite",
];

/// Whether `opts` selects any row of [`run`].
pub fn selected(opts: &Options) -> bool {
    ROWS.iter().any(|r| opts.selects("named_variants", r))
}

/// Steps [`run`] reports for `opts` (a calibration and `reps` samples per row), an
/// estimate for the progress bar.
pub fn steps(opts: &Options) -> u64 {
    let rows = 4 + dot::runnable_variants().len();
    (rows * (opts.reps + 1)) as u64
}

/// Prints the records of [`run`] as a table.
pub fn print_table(records: &[Record]) {
    if records.is_empty() {
        return;
    }
    println!(
        "\n{:<20} {:<14} {:>10} {:>10} {:>10} {:>7} {:>11}  variant (core type)",
        "named_variants", "runtime", "ns/op", "min", "max", "spread", "vs spindle"
    );
    for r in records {
        let get = |k: &str| r.extra.get(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
        let ratio = r
            .extra
            .get("vs_spindle")
            .and_then(|v| v.as_f64())
            .map_or("-".into(), |v| format!("{v:.2}x"));
        let variant = r
            .extra
            .get("variant")
            .and_then(|v| v.as_str())
            .unwrap_or("-");
        let ty = r
            .extra
            .get("core_type")
            .and_then(|v| v.as_str())
            .map_or(String::new(), |t| format!(" ({t})"));
        println!(
            "{:<20} {:<14} {:>10.1} {:>10.1} {:>10.1} {:>6.0}% {:>11}  {variant}{ty}",
            "",
            r.runtime,
            r.ns_per_op,
            get("min_ns_per_op"),
            get("max_ns_per_op"),
            get("spread_pct"),
            ratio
        );
    }
}
