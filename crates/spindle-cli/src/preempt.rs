//! Time-slice benches of `spindle bench`: `preempt_latency` and `ticker_overhead`,
//! in the JSON shape of the other benches (`bench`, `runtime`, `ns_per_op`, `ops`,
//! extras).
//!
//! | bench / runtime | what |
//! |---|---|
//! | `preempt_latency` / `spindle` | slice expiry to switch for a **preemptible** spinner that makes no runtime call: `ns_per_op` is the median, `p99_ns` the 99th percentile |
//! | `preempt_latency` / `spindle_cooperative` | the same for a non-preemptible spinner that calls `preempt_point()` in its loop (the reschedule flag alone) |
//! | `ticker_overhead` / `spindle` | a compute loop on one worker core with the ticker running, ns per iteration (`vs_no_ticker` is the ratio to the same loop in a runtime built with `ticker(false)`) |
//! | `ticker_overhead` / `spindle_no_ticker` | the same without the ticker |
//!
//! `preempt_latency`: one core, slice [`LATENCY_SLICE`], tick 1 ms. A recorder thread
//! notes the time and yields to the spinner; when the recorder runs again, the
//! latency is `now - (then + slice)` (0 if the switch came early). The tick flags a
//! run once its slice has passed in ticks (the slice start is a tick count, so a run
//! that began mid-tick gets up to a tick less); a preemptible thread that has not
//! honoured the flag one tick later gets the signal. Expect about zero for a
//! cooperative spinner and about one tick for a preemptible one.
//!
//! `ticker_overhead`: two runtimes of one core each, one with the default ticker and
//! one with `ticker(false)`, measured in alternating order; the compute loop calls
//! `preempt_point()` every 4,096 iterations, as a well-behaved worker does, so with the
//! ticker it also pays for yielding once per slice.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Map, json};
use spindle::{Builder, Runtime};

use crate::bench::{Options, Record, calibrate};
use crate::stats::Summary;

/// Time slice of the `preempt_latency` spinner.
pub const LATENCY_SLICE: Duration = Duration::from_millis(1);

/// Latency samples per repetition of `preempt_latency`.
const LATENCY_PER_REP: usize = 40;

/// The runtimes each bench reports.
const LATENCY_RUNTIMES: [&str; 2] = ["spindle", "spindle_cooperative"];
const TICKER_RUNTIMES: [&str; 2] = ["spindle", "spindle_no_ticker"];

/// Whether `opts` selects anything here.
pub fn selected(opts: &Options) -> bool {
    LATENCY_RUNTIMES
        .iter()
        .any(|r| opts.selects("preempt_latency", r))
        || TICKER_RUNTIMES
            .iter()
            .any(|r| opts.selects("ticker_overhead", r))
}

/// Progress steps [`run`] reports for `opts`.
pub fn steps(opts: &Options) -> u64 {
    let lat = LATENCY_RUNTIMES
        .iter()
        .filter(|r| opts.selects("preempt_latency", r))
        .count();
    let tick = usize::from(
        TICKER_RUNTIMES
            .iter()
            .any(|r| opts.selects("ticker_overhead", r)),
    );
    (lat + tick * (1 + opts.reps)) as u64
}

/// Runs the selected benches and returns their records. Calls `step` before each
/// progress step.
pub fn run(opts: &Options, mut step: impl FnMut(&str)) -> Vec<Record> {
    let mut out = Vec::new();
    for (runtime, preemptible) in [("spindle", true), ("spindle_cooperative", false)] {
        if opts.selects("preempt_latency", runtime) {
            step(&format!("preempt_latency/{runtime}"));
            let samples = latency_samples(LATENCY_PER_REP * opts.reps, preemptible);
            out.push(latency_record(runtime, preemptible, &samples));
        }
    }
    if TICKER_RUNTIMES
        .iter()
        .any(|r| opts.selects("ticker_overhead", r))
    {
        out.extend(ticker_overhead(opts, &mut step));
    }
    out
}

/// Slice-expiry-to-switch latencies, in ns.
fn latency_samples(count: usize, preemptible: bool) -> Vec<f64> {
    let rt = Runtime::builder()
        .cores(1)
        .time_slice(LATENCY_SLICE)
        .build()
        .expect("a one-core runtime");
    rt.block_on(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let spinner = Builder::new()
            .core(0)
            .preemptible(preemptible)
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    if preemptible {
                        // No runtime call at all: only the signal preempts it.
                        std::hint::spin_loop();
                    } else {
                        spindle::preempt_point();
                    }
                }
            })
            .expect("spawn the spinner");
        let recorder = Builder::new()
            .core(0)
            .spawn(move || {
                let warmup = 5;
                let mut out = Vec::with_capacity(count);
                for i in 0..count + warmup {
                    let left = Instant::now();
                    // The spinner runs now, until its slice is over and it is
                    // switched out.
                    spindle::yield_now();
                    let back = Instant::now();
                    if i >= warmup {
                        let late = back.saturating_duration_since(left + LATENCY_SLICE);
                        out.push(late.as_nanos() as f64);
                    }
                }
                stop.store(true, Ordering::Relaxed);
                out
            })
            .expect("spawn the recorder");
        let out = recorder.join().expect("the recorder");
        spinner.join().expect("the spinner");
        out
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn latency_record(runtime: &str, preemptible: bool, samples: &[f64]) -> Record {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let mut extra = Map::new();
    let op = if preemptible {
        "slice expiry to switch, preemptible spinner without runtime calls (1 ms slice, 1 ms tick)"
    } else {
        "slice expiry to switch, spinner calling preempt_point() (1 ms slice, 1 ms tick)"
    };
    extra.insert("op".into(), json!(op));
    extra.insert("p50_ns".into(), json!(percentile(&v, 0.5)));
    extra.insert("p99_ns".into(), json!(percentile(&v, 0.99)));
    extra.insert(
        "min_ns".into(),
        json!(v.first().copied().unwrap_or(f64::NAN)),
    );
    extra.insert(
        "max_ns".into(),
        json!(v.last().copied().unwrap_or(f64::NAN)),
    );
    extra.insert("slice_ns".into(), json!(LATENCY_SLICE.as_nanos() as f64));
    extra.insert(
        "tick_ns".into(),
        json!(spindle::DEFAULT_TICK.as_nanos() as f64),
    );
    extra.insert("samples".into(), json!(v.len()));
    Record {
        bench: "preempt_latency".into(),
        runtime: runtime.into(),
        ns_per_op: percentile(&v, 0.5),
        ops: v.len() as u64,
        extra,
    }
}

/// `n` iterations of a compute loop on `rt`'s core; the time they took.
fn compute(rt: &Runtime, n: u64) -> Duration {
    rt.block_on(|| {
        let start = Instant::now();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for i in 0..n {
            x = (x.rotate_left(5) ^ i).wrapping_mul(0x2545_F491_4F6C_DD1D);
            if i % 4096 == 0 {
                spindle::preempt_point();
            }
        }
        black_box(x);
        start.elapsed()
    })
}

fn ticker_overhead(opts: &Options, step: &mut impl FnMut(&str)) -> Vec<Record> {
    let on = Runtime::builder()
        .cores(1)
        .build()
        .expect("a one-core runtime");
    let off = Runtime::builder()
        .cores(1)
        .ticker(false)
        .build()
        .expect("a one-core runtime");
    step("ticker_overhead: calibrating");
    let ops = calibrate(|n| compute(&off, n), opts.target);
    calibrate(|n| compute(&on, n), opts.target);
    let (mut s_on, mut s_off) = (Vec::new(), Vec::new());
    for rep in 0..opts.reps {
        step(&format!("ticker_overhead: rep {}/{}", rep + 1, opts.reps));
        // Alternate the order, so that a drift of the machine hits both alike.
        let per_op = |rt: &Runtime| compute(rt, ops).as_nanos() as f64 / ops as f64;
        if rep % 2 == 0 {
            s_on.push(per_op(&on));
            s_off.push(per_op(&off));
        } else {
            s_off.push(per_op(&off));
            s_on.push(per_op(&on));
        }
    }
    drop((on, off));
    let m_on = Summary::of(&s_on);
    let m_off = Summary::of(&s_off);
    let ratio = match (m_on, m_off) {
        (Some(a), Some(b)) if b.median > 0.0 => a.median / b.median,
        _ => f64::NAN,
    };
    let record = |runtime: &str, op: &str, s: Option<Summary>, samples: &[f64]| {
        let s = s.unwrap_or(Summary {
            median: f64::NAN,
            min: f64::NAN,
            max: f64::NAN,
            spread_pct: f64::NAN,
        });
        let mut extra = Map::new();
        extra.insert("op".into(), json!(op));
        extra.insert("reps".into(), json!(samples.len()));
        extra.insert("min_ns_per_op".into(), json!(s.min));
        extra.insert("max_ns_per_op".into(), json!(s.max));
        extra.insert("spread_pct".into(), json!(s.spread_pct));
        extra.insert("samples_ns_per_op".into(), json!(samples));
        Record {
            bench: "ticker_overhead".into(),
            runtime: runtime.into(),
            ns_per_op: s.median,
            ops,
            extra,
        }
    };
    let mut with = record(
        "spindle",
        "one iteration of a compute loop on a worker core, ticker on (1 ms tick, 10 ms slice)",
        m_on,
        &s_on,
    );
    with.extra.insert("vs_no_ticker".into(), json!(ratio));
    with.extra
        .insert("overhead_pct".into(), json!((ratio - 1.0) * 100.0));
    let without = record(
        "spindle_no_ticker",
        "one iteration of the same compute loop, runtime built with ticker(false)",
        m_off,
        &s_off,
    );
    let mut out = Vec::new();
    if opts.selects("ticker_overhead", "spindle") {
        out.push(with);
    }
    if opts.selects("ticker_overhead", "spindle_no_ticker") {
        out.push(without);
    }
    out
}

/// Prints the records of [`run`] as a table.
pub fn print_table(records: &[Record]) {
    if records.is_empty() {
        return;
    }
    println!(
        "\n{:<16} {:<20} {:>12} {:>12}  notes",
        "time slices", "runtime", "median", "p99 / min"
    );
    for r in records {
        let get = |k: &str| r.extra.get(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
        match r.bench.as_str() {
            "preempt_latency" => println!(
                "{:<16} {:<20} {:>10.0}µs {:>10.0}µs  slice expiry to switch, {} samples",
                r.bench,
                r.runtime,
                r.ns_per_op / 1e3,
                get("p99_ns") / 1e3,
                r.ops
            ),
            _ => println!(
                "{:<16} {:<20} {:>10.3}ns {:>10.3}ns  {}",
                r.bench,
                r.runtime,
                r.ns_per_op,
                get("min_ns_per_op"),
                r.extra.get("vs_no_ticker").and_then(|v| v.as_f64()).map_or(
                    String::new(),
                    |v| format!("with/without ticker: {v:.4} ({:+.2}%)", (v - 1.0) * 100.0)
                )
            ),
        }
    }
}
