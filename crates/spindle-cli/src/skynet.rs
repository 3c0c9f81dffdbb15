//! Skynet: a tree of a million leaf threads, and the peak memory it takes.
//!
//! The root thread spawns 10 children, each of which spawns 10, down to `depth`
//! levels below the root (depth 6: 1,000,000 leaves, 1,111,111 threads in all). Leaf
//! `i` (0-based, left to right) returns `i`; every inner node returns the sum of its
//! children, so the root returns `L·(L−1)/2` for `L` leaves (499,999,500,000 at depth
//! 6), which is checked.
//!
//! Peak resident memory (`VmHWM`) is a figure of a whole process, so every run is a
//! fresh `spindle bench-child skynet RUNTIME DEPTH` process ([`crate::child`]) that
//! runs one runtime's tree once and prints a [`ChildReport`] line. [`run`] does
//! `runs` rounds, each running every selected runtime once in [`ALL`] order
//! (interleaved, so that drifts of the machine hit every runtime alike), and reports
//! the median wall time and the largest and median peak memory.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, json};

use crate::bench::Record;
use crate::child;
use crate::mem::status_field_kib;
use crate::stats::Summary;
use crate::workloads::{Runtime, on_may, on_spindle, on_tokio};

/// Levels below the root of the full tree: 10^6 leaves.
pub const DEFAULT_DEPTH: u32 = 6;

/// Runs per runtime of `spindle bench --skynet`.
pub const DEFAULT_RUNS: usize = 3;

/// Builds the tree of `depth` levels below the root on a runtime the function starts
/// itself; returns the root's sum and the time from spawning the root to its result
/// (runtime start and shutdown left out).
pub type SkynetFn = fn(depth: u32) -> (u64, Duration);

/// One runtime's skynet.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// Who builds the tree.
    pub runtime: Runtime,
    /// How, for reports.
    pub how: &'static str,
    /// Prepares the runtime's process-global state in the child, before `run`.
    pub init: fn(),
    /// The tree itself.
    pub run: SkynetFn,
}

/// Every runtime's skynet, in report order (the first is the base of the ratios).
pub const ALL: &[Entry] = &[
    Entry {
        runtime: Runtime::Spindle,
        how: "Builder::spawn 10 children + join each; one pinned core per allowed CPU (not Runtime::new's CPUs-1: measured faster, same peak RSS); root's children spread over the cores, deeper children on their parent's core one priority above it (depth first), 16 KiB stacks",
        init: nothing,
        run: on_spindle::skynet,
    },
    Entry {
        runtime: Runtime::May,
        how: "coroutine::spawn 10 children + join each, may's default config (one worker per CPU)",
        init: may_default,
        run: on_may::skynet,
    },
    Entry {
        runtime: Runtime::Tokio,
        how: "tokio::spawn 10 children + await each JoinHandle, multi_thread runtime (one worker per CPU)",
        init: nothing,
        run: on_tokio::skynet,
    },
];

fn may_default() {
    on_may::init_with(0);
}

fn nothing() {}

/// Leaves of a tree of `depth` levels below the root.
pub fn leaves(depth: u32) -> u64 {
    10u64.pow(depth)
}

/// Threads of a tree of `depth` levels below the root, root included.
pub fn threads(depth: u32) -> u64 {
    (0..=depth).map(leaves).sum()
}

/// What the root must return: the sum of `0..leaves(depth)`.
pub fn expected_sum(depth: u32) -> u64 {
    let l = leaves(depth);
    l * (l - 1) / 2
}

/// The entry of `runtime`, by name.
pub fn find(runtime: &str) -> Option<&'static Entry> {
    ALL.iter().find(|e| e.runtime.name() == runtime)
}

/// What one child run prints, as one JSON line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChildReport {
    /// The runtime's name.
    pub runtime: String,
    /// Levels below the root.
    pub depth: u32,
    /// The root's sum (checked against [`expected_sum`] by the child).
    pub sum: u64,
    /// The tree's time, in ns (see [`SkynetFn`]).
    pub wall_ns: u64,
    /// Peak resident memory of the child (`VmHWM`), in KiB.
    pub vm_hwm_kib: u64,
    /// Resident memory of the child before the runtime started (`VmRSS`), in KiB.
    pub rss_start_kib: u64,
}

/// The child side: builds the tree once on `runtime` and returns the JSON line to
/// print.
///
/// # Errors
///
/// A message if there is no such runtime, the sum is wrong, or `/proc/self/status`
/// has no `VmHWM`.
pub fn serve_child(runtime: &str, depth: u32) -> Result<String, String> {
    let e = find(runtime).ok_or_else(|| format!("no skynet for runtime {runtime:?}"))?;
    if depth > 9 {
        return Err(format!("depth {depth} is too deep (at most 9)"));
    }
    let status = || std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss_start_kib = status_field_kib(&status(), "VmRSS").unwrap_or(0);
    (e.init)();
    let (sum, wall) = (e.run)(depth);
    if sum != expected_sum(depth) {
        return Err(format!(
            "{runtime}: the root's sum is {sum}, not {}",
            expected_sum(depth)
        ));
    }
    let vm_hwm_kib = status_field_kib(&status(), "VmHWM").ok_or("no VmHWM in /proc/self/status")?;
    let r = ChildReport {
        runtime: runtime.into(),
        depth,
        sum,
        wall_ns: u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX),
        vm_hwm_kib,
        rss_start_kib,
    };
    serde_json::to_string(&r).map_err(|e| format!("cannot encode the report: {e}"))
}

/// The runs of one runtime.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Whose.
    pub entry: &'static Entry,
    /// Every successful run, in the order taken.
    pub runs: Vec<ChildReport>,
    /// The first failure, if a run failed (the runtime is not run again).
    pub error: Option<String>,
}

impl Outcome {
    /// Median wall time of the runs, in ms.
    pub fn wall_ms(&self) -> Option<f64> {
        let ms: Vec<f64> = self.runs.iter().map(|r| r.wall_ns as f64 / 1e6).collect();
        Summary::of(&ms).map(|s| s.median)
    }

    /// Largest and median peak resident memory of the runs, in KiB.
    pub fn hwm_kib(&self) -> Option<(u64, f64)> {
        let kib: Vec<f64> = self.runs.iter().map(|r| r.vm_hwm_kib as f64).collect();
        let s = Summary::of(&kib)?;
        Some((s.max as u64, s.median))
    }
}

/// Runs skynet `runs` times per runtime of [`ALL`] that `selected` accepts, each in
/// a fresh child process, interleaved. Before each child, calls `step` with what
/// comes next.
pub fn run(
    depth: u32,
    runs: usize,
    selected: impl Fn(&Entry) -> bool,
    mut step: impl FnMut(&str),
) -> Vec<Outcome> {
    let mut out: Vec<Outcome> = ALL
        .iter()
        .filter(|e| selected(e))
        .map(|entry| Outcome {
            entry,
            runs: Vec::with_capacity(runs),
            error: None,
        })
        .collect();
    for run in 1..=runs {
        for o in out.iter_mut().filter(|o| o.error.is_none()) {
            let name = o.entry.runtime.name();
            step(&format!("skynet/{name}: run {run}/{runs}"));
            let child =
                child::run(&["skynet".into(), name.into(), depth.to_string()]).and_then(|line| {
                    serde_json::from_str::<ChildReport>(line.trim())
                        .map_err(|e| format!("bad report from the child ({e}): {line}"))
                });
            match child {
                Ok(r) => o.runs.push(r),
                Err(e) => o.error = Some(e),
            }
        }
    }
    out
}

/// The base of the ratios: the first outcome that has a run (the first runtime of
/// [`ALL`] unless it failed).
pub fn base(outcomes: &[Outcome]) -> Option<&Outcome> {
    outcomes.iter().find(|o| !o.runs.is_empty())
}

/// Ratio of `value` to the base's, where both are known.
fn ratio(first: Option<f64>, value: Option<f64>) -> Option<f64> {
    match (first, value) {
        (Some(f), Some(v)) if f > 0.0 => Some(v / f),
        _ => None,
    }
}

/// The JSON records of a skynet run: `ns_per_op` is the median wall time per thread
/// of the tree, `ops` the thread count.
pub fn records(outcomes: &[Outcome], depth: u32) -> Vec<Record> {
    let first = base(outcomes);
    let first_wall = first.and_then(Outcome::wall_ms);
    let first_hwm = first.and_then(Outcome::hwm_kib).map(|h| h.0 as f64);
    outcomes
        .iter()
        .map(|o| {
            let wall = o.wall_ms();
            let hwm = o.hwm_kib();
            let mut extra = Map::new();
            extra.insert(
                "op".into(),
                json!(format!(
                    "one thread of the skynet tree ({} leaves): {}",
                    leaves(depth),
                    o.entry.how
                )),
            );
            extra.insert("depth".into(), json!(depth));
            extra.insert("leaves".into(), json!(leaves(depth)));
            extra.insert("runs".into(), json!(o.runs.len()));
            extra.insert("wall_ms".into(), json!(wall));
            let samples: Vec<f64> = o.runs.iter().map(|r| r.wall_ns as f64 / 1e6).collect();
            extra.insert("wall_ms_samples".into(), json!(samples));
            extra.insert("vm_hwm_kib".into(), json!(hwm.map(|h| h.0)));
            extra.insert("vm_hwm_kib_median".into(), json!(hwm.map(|h| h.1)));
            let starts: Vec<u64> = o.runs.iter().map(|r| r.rss_start_kib).collect();
            extra.insert("rss_start_kib".into(), json!(starts.iter().max()));
            if let Some(r) = ratio(first_wall, wall) {
                extra.insert("wall_vs_first".into(), json!(r));
            }
            if let Some(r) = ratio(first_hwm, hwm.map(|h| h.0 as f64)) {
                extra.insert("vm_hwm_vs_first".into(), json!(r));
            }
            if let Some(f) = first {
                extra.insert("first".into(), json!(f.entry.runtime.name()));
            }
            extra.insert(
                "sum_ok".into(),
                json!(!o.runs.is_empty() && o.runs.iter().all(|r| r.sum == expected_sum(depth))),
            );
            if let Some(e) = &o.error {
                extra.insert("error".into(), json!(e));
            }
            let threads = threads(depth);
            Record {
                bench: "skynet".into(),
                runtime: o.entry.runtime.name().into(),
                ns_per_op: wall.map_or(f64::NAN, |ms| ms * 1e6 / threads as f64),
                ops: threads,
                extra,
            }
        })
        .collect()
}

/// Prints the skynet table: median wall ms, peak memory, ratios to the first row.
pub fn print_table(outcomes: &[Outcome], depth: u32, wall: Duration) {
    if outcomes.is_empty() {
        return;
    }
    println!(
        "\nskynet: {} leaves ({} threads), root sum {} checked; median of {} fresh processes per runtime, interleaved; peak RSS = VmHWM of the process (max of the runs); ratios vs {}",
        leaves(depth),
        threads(depth),
        expected_sum(depth),
        outcomes.iter().map(|o| o.runs.len()).max().unwrap_or(0),
        base(outcomes).map_or("-", |o| o.entry.runtime.name())
    );
    println!(
        "{:<20} {:<11} {:>10} {:>9} {:>13} {:>9}",
        "skynet", "runtime", "wall ms", "vs first", "peak RSS MiB", "vs first"
    );
    let first = base(outcomes);
    let (first_wall, first_hwm) = (
        first.and_then(Outcome::wall_ms),
        first.and_then(Outcome::hwm_kib).map(|h| h.0 as f64),
    );
    for o in outcomes {
        let wall_ms = o.wall_ms();
        let hwm = o.hwm_kib().map(|h| h.0 as f64);
        let r =
            |a: Option<f64>, b: Option<f64>| ratio(a, b).map_or("-".into(), |r| format!("{r:.2}x"));
        let note = o
            .error
            .as_deref()
            .map_or(String::new(), |e| format!("  failed: {e}"));
        println!(
            "{:<20} {:<11} {:>10} {:>9} {:>13} {:>9}{note}",
            "",
            o.entry.runtime.name(),
            wall_ms.map_or("-".into(), |ms| format!("{ms:.1}")),
            r(first_wall, wall_ms),
            hwm.map_or("-".into(), |k| format!("{:.1}", k / 1024.0)),
            r(first_hwm, hwm),
        );
    }
    println!("skynet done in {:.1} s", wall.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_sizes() {
        assert_eq!(leaves(6), 1_000_000);
        assert_eq!(threads(6), 1_111_111);
        assert_eq!(expected_sum(6), 499_999_500_000);
        assert_eq!(expected_sum(3), 499_500);
    }

    /// Every runtime builds a small tree right, here (the child processes are covered
    /// by the CLI tests).
    #[test]
    fn every_skynet_sums_right() {
        crate::workloads::init_peers();
        for e in ALL {
            let (sum, d) = (e.run)(3);
            assert_eq!(sum, expected_sum(3), "{:?}", e.runtime);
            assert!(d > Duration::ZERO);
        }
    }
}
