//! `spindle bench` without criterion: interleaved repetitions, medians, JSON records.
//!
//! For each bench, every selected runtime is first calibrated (its batch size is grown
//! until one batch takes about [`Options::target`]; this also warms it up). Then come
//! [`Options::reps`] repetitions, and within each repetition the runtimes run one
//! after the other in [`Runtime::ALL`](crate::workloads::Runtime::ALL) order (rep 1:
//! spindle, raw, std, ..., tokio; rep 2: the same...), so that slow drifts of
//! the machine hit every runtime alike. A repetition times one batch and yields one
//! sample, in ns per operation; a report gives the median, the extremes and the
//! spread.
//!
//! Workloads run through [`Workload::measure`], so the ones that need a process of
//! their own ([`Workload::in_child`]) get one per batch. Pinning outcomes and sampled
//! cross-CPU hops ([`affinity::HopSampler`]) are collected per repetition (not during
//! calibration) and reported as `pinned` and `crossed_cores_pct` / `hops_sampled`.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::affinity;
use crate::million::MillionReport;
use crate::stats::Summary;
use crate::workloads::{self, Bench, Runtime, Workload};

/// How much measuring to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Repetitions (samples) per workload.
    pub reps: usize,
    /// Wanted duration of one batch.
    pub target: Duration,
    /// Only workloads whose `bench/runtime` name contains this.
    pub filter: Option<String>,
}

impl Options {
    /// The default run: 11 repetitions of 25 ms batches.
    pub fn full() -> Options {
        Options {
            reps: 11,
            target: Duration::from_millis(25),
            filter: None,
        }
    }

    /// A quick run: 5 repetitions of 10 ms batches.
    pub fn quick() -> Options {
        Options {
            reps: 5,
            target: Duration::from_millis(10),
            filter: None,
        }
    }

    /// Whether the filter selects the workload named `bench/runtime`.
    pub fn selects(&self, bench: &str, runtime: &str) -> bool {
        self.filter
            .as_deref()
            .is_none_or(|f| format!("{bench}/{runtime}").contains(f))
    }

    /// The selected workloads, bench by bench.
    pub fn workloads(&self) -> Vec<&'static Workload> {
        workloads::ALL
            .iter()
            .filter(|w| self.selects(w.bench.name(), w.runtime.name()))
            .collect()
    }

    /// Progress steps of [`run`]: a calibration and `reps` samples per workload.
    pub fn steps(&self) -> u64 {
        (self.workloads().len() * (self.reps + 1)) as u64
    }
}

/// The samples of one workload.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// What was measured.
    pub workload: &'static Workload,
    /// Operations per batch.
    pub ops: u64,
    /// ns per operation, one per repetition, in the order taken.
    pub samples: Vec<f64>,
    /// For workloads that pin OS threads: whether every pinning worked.
    pub pinned: Option<bool>,
    /// For workloads that sample where their messages went: (hops that crossed CPUs,
    /// hops sampled), over the repetitions.
    pub hops: Option<(u64, u64)>,
}

impl Measurement {
    /// The share of sampled hops that crossed CPUs, in percent.
    pub fn crossed_pct(&self) -> Option<f64> {
        self.hops
            .filter(|h| h.1 > 0)
            .map(|(crossed, sampled)| crossed as f64 * 100.0 / sampled as f64)
    }

    /// Median, extremes, spread.
    pub fn summary(&self) -> Summary {
        Summary::of(&self.samples).unwrap_or(Summary {
            median: f64::NAN,
            min: f64::NAN,
            max: f64::NAN,
            spread_pct: f64::NAN,
        })
    }
}

/// A batch size for `run` whose batch takes about `target`: grows the count eightfold
/// until a batch takes an eighth of the target, scales it to the target, then refines
/// with three batches of the current estimate, keeping the fastest per-op time seen.
/// The refinement doubles as warm-up, and keeps a slow first run (cold caches, fresh
/// memory, a disturbed batch) from shrinking every later batch.
pub fn calibrate(run: impl Fn(u64) -> Duration, target: Duration) -> u64 {
    const MAX_OPS: u64 = 1 << 36;
    let ops_for = |per_op: f64| {
        let ops = if per_op > 0.0 {
            target.as_secs_f64() / per_op
        } else {
            MAX_OPS as f64
        };
        (ops as u64).clamp(1, MAX_OPS)
    };
    let per_op = |n: u64| run(n).as_secs_f64() / n as f64;
    let mut n = 1u64;
    loop {
        let d = run(n);
        if d >= target / 8 || n >= MAX_OPS {
            let mut best = d.as_secs_f64() / n as f64;
            for _ in 0..3 {
                best = best.min(per_op(ops_for(best)));
            }
            return ops_for(best);
        }
        n *= 8;
    }
}

/// Measures every selected workload. Before each progress step (see
/// [`Options::steps`]) calls `step` with what comes next.
pub fn run(opts: &Options, mut step: impl FnMut(&str)) -> Vec<Measurement> {
    workloads::init_peers();
    let selected = opts.workloads();
    let mut out = Vec::new();
    let mut step = |what: String| step(&what);
    for bench in Bench::ALL {
        let ws: Vec<&'static Workload> = selected
            .iter()
            .copied()
            .filter(|w| w.bench == bench)
            .collect();
        let mut ms: Vec<Measurement> = Vec::with_capacity(ws.len());
        for w in ws {
            step(format!(
                "{}/{}: calibrating",
                bench.name(),
                w.runtime.name()
            ));
            affinity::take_pinned();
            let ops = calibrate(|n| w.measure(n), opts.target);
            // Calibration's hops are not counted: only the repetitions'.
            affinity::take_hops();
            ms.push(Measurement {
                workload: w,
                ops,
                samples: Vec::with_capacity(opts.reps),
                pinned: w.pins.then(|| affinity::take_pinned().unwrap_or(false)),
                hops: None,
            });
        }
        for rep in 1..=opts.reps {
            for m in &mut ms {
                let w = m.workload;
                step(format!(
                    "{}/{}: rep {rep}/{}",
                    bench.name(),
                    w.runtime.name(),
                    opts.reps
                ));
                let d = w.measure(m.ops);
                m.samples.push(d.as_nanos() as f64 / m.ops as f64);
                if w.pins {
                    let ok = affinity::take_pinned().unwrap_or(false);
                    m.pinned = Some(m.pinned.unwrap_or(true) && ok);
                }
                if let Some((crossed, sampled)) = affinity::take_hops() {
                    let (c, s) = m.hops.unwrap_or((0, 0));
                    m.hops = Some((c + crossed, s + sampled));
                }
            }
        }
        out.extend(ms);
    }
    out
}

/// One result line of the JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// Bench name (`switch`, `spawn_join`, `park_unpark`, `current`,
    /// `cross_core_pingpong`, `remote_spawn`, `migration`, `million`, `skynet`).
    pub bench: String,
    /// Runtime name (`spindle`, `raw`, `std`, `std_park`, `corosensei`, `may`,
    /// `tokio`, `std_mutex`, `crossbeam`).
    pub runtime: String,
    /// Median ns per operation.
    pub ns_per_op: f64,
    /// Operations per timed batch.
    pub ops: u64,
    /// Further fields, flattened into the record.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The JSON document `spindle bench --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// One record per workload, then the million run and the skynet runs if any.
    pub results: Vec<Record>,
}

/// Ratio of `m`'s median to spindle's median for the same bench, if spindle ran.
pub fn vs_spindle(m: &Measurement, all: &[Measurement]) -> Option<f64> {
    let base = all
        .iter()
        .find(|o| o.workload.bench == m.workload.bench && o.workload.runtime == Runtime::Spindle)?
        .summary()
        .median;
    (base > 0.0).then(|| m.summary().median / base)
}

/// The JSON records of `measurements`.
pub fn records(measurements: &[Measurement]) -> Vec<Record> {
    measurements
        .iter()
        .map(|m| {
            let s = m.summary();
            let mut extra = Map::new();
            extra.insert("op".into(), json!(m.workload.op));
            extra.insert("reps".into(), json!(m.samples.len()));
            extra.insert("min_ns_per_op".into(), json!(s.min));
            extra.insert("max_ns_per_op".into(), json!(s.max));
            extra.insert("spread_pct".into(), json!(s.spread_pct));
            if let Some(r) = vs_spindle(m, measurements) {
                extra.insert("vs_spindle".into(), json!(r));
            }
            if let Some(p) = m.pinned {
                extra.insert("pinned".into(), json!(p));
            }
            if let (Some(pct), Some((_, sampled))) = (m.crossed_pct(), m.hops) {
                extra.insert("crossed_cores_pct".into(), json!(pct));
                extra.insert("hops_sampled".into(), json!(sampled));
            }
            if m.workload.bench == Bench::Migration && s.median > 0.0 {
                extra.insert("items_per_s".into(), json!(1e9 / s.median));
            }
            extra.insert("samples_ns_per_op".into(), json!(m.samples));
            Record {
                bench: m.workload.bench.name().into(),
                runtime: m.workload.runtime.name().into(),
                ns_per_op: s.median,
                ops: m.ops,
                extra,
            }
        })
        .collect()
}

/// The JSON record of a million-thread run.
pub fn million_record(r: &MillionReport) -> Record {
    let mut extra = Map::new();
    extra.insert("threads".into(), json!(r.threads));
    extra.insert("rss_kib_per_thread".into(), json!(r.rss_kib_per_thread()));
    extra.insert(
        "guard".into(),
        json!(r.guard.map_or("unknown", |g| g.as_str())),
    );
    extra.insert(
        "op".into(),
        json!("spawn a thread that counts itself and parks (ns_per_op: spawn time)"),
    );
    extra.insert("rss_before_kib".into(), json!(r.rss_before_kib));
    extra.insert("rss_after_kib".into(), json!(r.rss_after_kib));
    extra.insert("handles_bytes".into(), json!(r.handles_bytes));
    extra.insert("settle_ms".into(), json!(r.settle.as_secs_f64() * 1e3));
    extra.insert("teardown_ms".into(), json!(r.teardown.as_secs_f64() * 1e3));
    extra.insert("wall_ms".into(), json!(r.wall.as_secs_f64() * 1e3));
    extra.insert("switches".into(), json!(r.stats.switches));
    extra.insert("all_joined_ok".into(), json!(true));
    Record {
        bench: "million".into(),
        runtime: "spindle".into(),
        ns_per_op: r.spawn_ns_per_thread(),
        ops: r.threads as u64,
        extra,
    }
}
