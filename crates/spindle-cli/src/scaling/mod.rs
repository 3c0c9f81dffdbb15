//! `spindle bench --scaling`: plain user code (no placement hints) at growing core
//! counts, beside tokio, may, OS threads and Go.
//!
//! Every measurement runs in a fresh child process restricted to the first `cores`
//! CPUs the bench may use (all of them, and marked `oversubscribed`, when more cores
//! are asked than there are CPUs), so that every runtime gets the same CPUs:
//!
//! - spindle: a runtime of `cores` worker cores (and its hypercore, on the last of
//!   those CPUs);
//! - tokio: a `multi_thread` runtime with `cores` workers; may: `cores` workers;
//! - std: OS threads, for the workloads that fit them ([`on_std::fits`]);
//! - Go: the program in `crates/spindle-cli/peers/go`, built with `go build` when a Go
//!   toolchain is installed, with `GOMAXPROCS=cores`.
//!
//! A child runs its workload once to warm up, then once timed. Repetitions go round
//! every (workload, cores, runtime) in turn, so that drifts of the machine hit all of
//! them alike; a row reports the median wall time, the speedup against the smallest
//! core count of the same runtime, and the ratio to spindle at the same count.

pub mod on_may;
pub mod on_spindle;
pub mod on_std;
pub mod on_tokio;
pub mod plot;
pub mod work;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, json};

use crate::affinity;
use crate::bench::Record;
use crate::stats::Summary;
pub use on_spindle::Locality;
pub use work::{Size, Work};

/// The runtimes of the scaling suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Peer {
    /// This project.
    Spindle,
    /// Tokio's `multi_thread` runtime.
    Tokio,
    /// may.
    May,
    /// OS threads.
    Std,
    /// Go's goroutines.
    Go,
}

impl Peer {
    /// Every runtime, in run and report order.
    pub const ALL: [Peer; 5] = [Peer::Spindle, Peer::Tokio, Peer::May, Peer::Std, Peer::Go];

    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Spindle => "spindle",
            Peer::Tokio => "tokio",
            Peer::May => "may",
            Peer::Std => "std",
            Peer::Go => "go",
        }
    }

    /// The runtime named `name`.
    pub fn parse(name: &str) -> Option<Peer> {
        Peer::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Whether this runtime runs `work` (and, for Go, whether the peer could be built).
    fn runs(self, work: Work, go: Option<&PathBuf>) -> bool {
        match self {
            Peer::Std => on_std::fits(work),
            Peer::Go => go.is_some(),
            _ => true,
        }
    }
}

/// The core counts of a run by default: 1, 2, 4, ... up to the CPUs the bench may
/// use, and that count itself.
pub fn default_cores() -> Vec<usize> {
    let cpus = affinity::allowed_cpus().len().max(1);
    let mut v: Vec<usize> = std::iter::successors(Some(1usize), |c| Some(c * 2))
        .take_while(|&c| c <= cpus)
        .collect();
    if v.last() != Some(&cpus) {
        v.push(cpus);
    }
    v
}

/// What a child reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChildReport {
    ns: u64,
    /// Spindle's locality counters of the timed run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    locality: Option<Locality>,
}

/// The child side: restricts this process to the first `cores` allowed CPUs, runs
/// `work` on `peer` (not Go) and returns the JSON line to print.
///
/// # Errors
///
/// A message for an unknown workload or runtime.
pub fn serve_child(work: &str, peer: &str, cores: usize, quick: bool) -> Result<String, String> {
    let work = Work::parse(work).ok_or_else(|| format!("no scaling workload {work:?}"))?;
    let peer = Peer::parse(peer).ok_or_else(|| format!("no scaling runtime {peer:?}"))?;
    restrict_to(cores);
    let size = work.size(quick);
    let (d, locality) = match peer {
        Peer::Spindle => {
            let (d, l) = on_spindle::run(work, size, cores);
            (d, Some(l))
        }
        Peer::Tokio => (on_tokio::run(work, size, cores), None),
        Peer::May => (on_may::run(work, size, cores), None),
        Peer::Std if on_std::fits(work) => (on_std::run(work, size), None),
        Peer::Std | Peer::Go => return Err(format!("{} does not run in a child", peer.name())),
    };
    let r = ChildReport {
        ns: u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
        locality,
    };
    serde_json::to_string(&r).map_err(|e| format!("cannot encode the report: {e}"))
}

/// The first `cores` CPUs this process may use (all of them if there are fewer).
fn first_cpus(cores: usize) -> Vec<usize> {
    let allowed = affinity::allowed_cpus();
    allowed[..cores.min(allowed.len())].to_vec()
}

/// Restricts the calling process's threads-to-come to the first `cores` allowed CPUs.
fn restrict_to(cores: usize) {
    affinity::set_affinity(&first_cpus(cores));
}

/// Builds the Go peer into the target directory, if `go` is installed. `None` (and
/// the reason on stderr, once) otherwise.
pub fn build_go() -> Option<PathBuf> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/go");
    let exe = std::env::current_exe().ok()?;
    let out = exe.parent()?.join("go-scaling");
    let built = Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(&src)
        .env("CGO_ENABLED", "0")
        .output();
    match built {
        Ok(o) if o.status.success() => Some(out),
        Ok(o) => {
            eprintln!(
                "spindle bench: the Go peer did not build ({}); running without it",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            None
        }
        Err(_) => None,
    }
}

/// Runs the Go peer as `cmd` says and returns the one number it prints.
///
/// # Errors
///
/// A message if it cannot run, fails, or prints something else.
pub fn run_go(cmd: &mut Command) -> Result<u64, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run the Go peer: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the Go peer failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<u64>()
        .map_err(|e| format!("bad report from the Go peer: {e}"))
}

/// One measurement of `work` on `peer` at `cores`, in a fresh process.
fn measure(
    work: Work,
    peer: Peer,
    cores: usize,
    quick: bool,
    go: Option<&PathBuf>,
) -> Result<(Duration, Option<Locality>), String> {
    let (ns, locality) = if peer == Peer::Go {
        let go = go.ok_or("the Go peer is not built")?;
        let size = work.size(quick);
        let cpus = first_cpus(cores);
        let mut cmd = Command::new(go);
        cmd.args([work.name(), &size.n.to_string(), &size.m.to_string()])
            .env("GOMAXPROCS", cores.to_string());
        affinity::confine_command(&mut cmd, cpus);
        (run_go(&mut cmd)?, None)
    } else {
        let line = crate::child::run(&[
            "scale".into(),
            work.name().into(),
            peer.name().into(),
            cores.to_string(),
            u8::from(quick).to_string(),
        ])?;
        let r = serde_json::from_str::<ChildReport>(line.trim())
            .map_err(|e| format!("bad report from the child ({e}): {line}"))?;
        (r.ns, r.locality)
    };
    Ok((Duration::from_nanos(ns), locality))
}

/// The samples of one (workload, runtime, cores).
#[derive(Debug, Clone)]
pub struct Row {
    /// The workload.
    pub work: Work,
    /// The runtime.
    pub peer: Peer,
    /// Worker cores (and CPUs) of the runs.
    pub cores: usize,
    /// Wall time of each timed run, in ms.
    pub ms: Vec<f64>,
    /// Why the runs failed, if they did.
    pub error: Option<String>,
    /// Spindle's locality counters of each run.
    pub locality: Vec<Locality>,
}

impl Row {
    /// The median wall time in ms, if any run succeeded.
    pub fn median(&self) -> Option<f64> {
        Summary::of(&self.ms).map(|s| s.median)
    }

    /// The locality counters of the run with the median wall time (spindle only).
    pub fn locality_median(&self) -> Option<Locality> {
        let m = self.median()?;
        let i = self
            .ms
            .iter()
            .enumerate()
            .min_by(|a, b| (a.1 - m).abs().total_cmp(&(b.1 - m).abs()))?
            .0;
        self.locality.get(i).copied()
    }
}

/// A whole scaling run.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// One row per (workload, runtime, cores), in report order.
    pub rows: Vec<Row>,
    /// The sizes used.
    pub quick: bool,
    /// The CPUs the bench could use.
    pub cpus: usize,
}

impl Outcome {
    fn find(&self, work: Work, peer: Peer, cores: usize) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.work == work && r.peer == peer && r.cores == cores)
    }

    /// Speedup of `row` against the same runtime at the smallest core count.
    pub fn speedup(&self, row: &Row) -> Option<f64> {
        let base = self
            .rows
            .iter()
            .filter(|r| r.work == row.work && r.peer == row.peer)
            .min_by_key(|r| r.cores)?
            .median()?;
        Some(base / row.median()?)
    }

    /// `row`'s time over spindle's at the same core count (above 1: spindle faster).
    pub fn vs_spindle(&self, row: &Row) -> Option<f64> {
        let s = self.find(row.work, Peer::Spindle, row.cores)?.median()?;
        Some(row.median()? / s)
    }
}

/// Runs every selected (workload, runtime, cores) `reps` times, interleaved, calling
/// `step` before each measurement.
pub fn run(
    cores: &[usize],
    reps: usize,
    quick: bool,
    selects: impl Fn(Work, Peer) -> bool,
    mut step: impl FnMut(&str),
) -> Outcome {
    let go = build_go();
    let mut out = Outcome {
        rows: Vec::new(),
        quick,
        cpus: affinity::allowed_cpus().len().max(1),
    };
    for work in Work::ALL {
        for &k in cores {
            for peer in Peer::ALL {
                if selects(work, peer) && peer.runs(work, go.as_ref()) {
                    out.rows.push(Row {
                        work,
                        peer,
                        cores: k,
                        ms: Vec::new(),
                        error: None,
                        locality: Vec::new(),
                    });
                }
            }
        }
    }
    for rep in 1..=reps {
        for row in out.rows.iter_mut().filter(|r| r.error.is_none()) {
            step(&format!(
                "scaling/{}/{} at {} cores: rep {rep}/{reps}",
                row.work.name(),
                row.peer.name(),
                row.cores
            ));
            match measure(row.work, row.peer, row.cores, quick, go.as_ref()) {
                Ok((d, l)) => {
                    row.ms.push(d.as_secs_f64() * 1e3);
                    row.locality.extend(l);
                }
                Err(e) => row.error = Some(e),
            }
        }
    }
    out
}

/// The number of measurements [`run`] makes.
pub fn steps(cores: &[usize], reps: usize, selects: impl Fn(Work, Peer) -> bool) -> u64 {
    let go = which_go();
    let per_rep = Work::ALL
        .iter()
        .flat_map(|&w| Peer::ALL.map(move |p| (w, p)))
        .filter(|&(w, p)| selects(w, p) && p.runs(w, go.as_ref()))
        .count();
    (per_rep * cores.len() * reps) as u64
}

/// Whether a Go toolchain is on the PATH (the peer is built when the run starts).
fn which_go() -> Option<PathBuf> {
    Command::new("go")
        .arg("version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| PathBuf::from("go"))
}

/// The JSON records: one per row, `ns_per_op` the median wall time of one run.
pub fn records(o: &Outcome) -> Vec<Record> {
    o.rows
        .iter()
        .map(|r| {
            let mut extra = Map::new();
            let size = r.work.size(o.quick);
            extra.insert("cores".into(), json!(r.cores));
            extra.insert("oversubscribed".into(), json!(r.cores > o.cpus));
            extra.insert("wall_ms".into(), json!(r.median()));
            extra.insert("samples_ms".into(), json!(r.ms));
            extra.insert("speedup".into(), json!(o.speedup(r)));
            extra.insert("vs_spindle".into(), json!(o.vs_spindle(r)));
            extra.insert("op".into(), json!(r.work.describe(size)));
            if let Some(e) = &r.error {
                extra.insert("error".into(), json!(e));
            }
            if let Some(l) = r.locality_median() {
                extra.insert("locality".into(), json!(l));
            }
            Record {
                bench: format!("scaling/{}", r.work.name()),
                runtime: r.peer.name().into(),
                ns_per_op: r.median().map_or(f64::NAN, |ms| ms * 1e6),
                ops: 1,
                extra,
            }
        })
        .collect()
}

/// Prints one table per workload: a row per runtime, a column per core count with
/// the wall time, the speedup and the ratio to spindle.
pub fn print_table(o: &Outcome) {
    if o.rows.is_empty() {
        return;
    }
    let mut cores: Vec<usize> = o.rows.iter().map(|r| r.cores).collect();
    cores.sort_unstable();
    cores.dedup();
    println!(
        "\nscaling: median wall time of one run (speedup against its own smallest core count, \
         time / spindle's); {} CPUs usable{}",
        o.cpus,
        if cores.iter().any(|&c| c > o.cpus) {
            "; counts above that are oversubscribed"
        } else {
            ""
        }
    );
    for work in Work::ALL {
        let rows: Vec<&Row> = o.rows.iter().filter(|r| r.work == work).collect();
        if rows.is_empty() {
            continue;
        }
        println!("\n{} ({})", work.name(), work.describe(work.size(o.quick)));
        print!("{:<10}", "runtime");
        for c in &cores {
            print!(" {:>28}", format!("{c} cores"));
        }
        println!();
        for peer in Peer::ALL {
            let mine: Vec<&&Row> = rows.iter().filter(|r| r.peer == peer).collect();
            if mine.is_empty() {
                continue;
            }
            print!("{:<10}", peer.name());
            for &c in &cores {
                let cell = match mine.iter().find(|r| r.cores == c) {
                    Some(r) => match (&r.error, r.median()) {
                        (Some(_), _) | (None, None) => "failed".to_owned(),
                        (None, Some(ms)) => format!(
                            "{ms:.1} ms ({:.2}x, {})",
                            o.speedup(r).unwrap_or(f64::NAN),
                            o.vs_spindle(r).map_or("-".into(), |v| format!("{v:.2}x"))
                        ),
                    },
                    None => "-".to_owned(),
                };
                print!(" {cell:>28}");
            }
            println!();
        }
        for r in rows.iter().filter(|r| r.peer == Peer::Spindle) {
            if let Some(l) = r.locality_median() {
                println!(
                    "  spindle at {} cores (warm-up and timed run): {:.1}% of {} spawns \
                     kept local, {} threads stolen on {} requests ({} refused), {} sleeping \
                     cores woken, threads ended on {} of {} cores",
                    r.cores,
                    100.0 * l.spawned_local as f64 / l.spawned.max(1) as f64,
                    l.spawned,
                    l.stolen,
                    l.requests,
                    l.refused,
                    l.sibling_wakes,
                    l.cores_used,
                    r.cores
                );
            }
        }
        for r in rows.iter().filter_map(|r| r.error.as_ref().map(|e| (r, e))) {
            println!("  {} at {} cores: {}", r.0.peer.name(), r.0.cores, r.1);
        }
    }
}
