//! The bench families of `spindle bench`, behind one trait.
//!
//! A [`Family`] says whether a [`Selection`] picks any of it, how many progress steps
//! its run takes, runs (reporting each step), and hands back its JSON records and its
//! table. [`families`] lists them in run order; the command's progress bar, its filter
//! help ([`filter_words`]) and its output all come from that list.

use std::time::{Duration, Instant};

use crate::bench::{self, Measurement, Options, Record};
use crate::million::{self, MillionReport};
use crate::servers::{Kind, Peer};
use crate::workloads::Bench;
use crate::{named, netbench, preempt, scaling, skynet};

/// What the command line asked for.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Repetitions, batch length and the `--filter` text.
    pub opts: Options,
    /// `--million` (or `--threads`): the million-thread run, with this many threads.
    pub million: Option<usize>,
    /// `--skynet` (or `--skynet-depth`): the skynet tree, this many levels deep.
    pub skynet: Option<u32>,
    /// `--scaling` (or `--cores`, `--plot`): the scaling suite alone, at these core
    /// counts.
    pub scaling: Option<Vec<usize>>,
    /// `--plot`: where to draw the peer comparison's bars, or the scaling suite's
    /// speedups.
    pub plot: Option<std::path::PathBuf>,
    /// `--quick`: smaller sizes where a family has them.
    pub quick: bool,
    /// `--blocking`: the blocking suite alone.
    pub blocking: bool,
    /// `--cpus`, `--wrk-threads`, `--conns`: how the echo and http servers are loaded.
    pub load: netbench::Load,
}

impl Selection {
    /// Whether the filter asks for the million run alone (`--filter million`), or the
    /// scaling suite runs (alone).
    fn only_million(&self) -> bool {
        self.opts.filter.as_deref() == Some("million") || self.scaling.is_some() || self.blocking
    }
}

/// Reports the progress of a run: called before each step with what comes next.
pub type Progress<'a> = &'a mut (dyn FnMut(&str) + Send);

/// One family of benches.
pub trait Family {
    /// The words `--filter` matches in this family (bench names), for the help.
    fn words(&self) -> Vec<&'static str>;
    /// Whether `sel` picks any of it.
    fn selected(&self, sel: &Selection) -> bool;
    /// Progress steps [`Family::run`] takes for `sel`.
    fn steps(&self, sel: &Selection) -> u64;
    /// Runs what `sel` picks, calling `progress` before each step.
    ///
    /// # Errors
    ///
    /// A message when the run cannot be made at all.
    fn run(&mut self, sel: &Selection, progress: Progress<'_>) -> Result<(), String>;
    /// The run's JSON records.
    fn records(&self) -> Vec<Record>;
    /// Prints the run's table on stdout.
    fn print(&self, sel: &Selection);
}

/// Every family, in run order.
pub fn families() -> Vec<Box<dyn Family>> {
    vec![
        Box::new(Micro::default()),
        Box::new(Named::default()),
        Box::new(Preempt::default()),
        Box::new(Million::default()),
        Box::new(Skynet::default()),
        Box::new(Servers::default()),
        Box::new(Scaling::default()),
        Box::new(Blocking::default()),
    ]
}

/// Every word `--filter` can match, across `families` (runtime names aside).
pub fn filter_words(families: &[Box<dyn Family>]) -> Vec<&'static str> {
    families.iter().flat_map(|f| f.words()).collect()
}

/// The micro benches (`bench::run`): switch, spawn_join, park_unpark, ... against
/// every peer, interleaved.
#[derive(Default)]
pub struct Micro {
    measurements: Vec<Measurement>,
}

impl Family for Micro {
    fn words(&self) -> Vec<&'static str> {
        Bench::ALL.iter().map(|b| b.name()).collect()
    }

    fn selected(&self, sel: &Selection) -> bool {
        !sel.only_million() && !sel.opts.workloads().is_empty()
    }

    fn steps(&self, sel: &Selection) -> u64 {
        sel.opts.steps()
    }

    fn run(&mut self, sel: &Selection, progress: Progress<'_>) -> Result<(), String> {
        self.measurements = bench::run(&sel.opts, progress);
        Ok(())
    }

    fn records(&self) -> Vec<Record> {
        bench::records(&self.measurements)
    }

    fn print(&self, sel: &Selection) {
        print_micro(&self.measurements, &sel.opts);
    }
}

/// The named-thread benches (`named`).
#[derive(Default)]
pub struct Named {
    records: Vec<Record>,
}

impl Family for Named {
    fn words(&self) -> Vec<&'static str> {
        vec!["named_variants"]
    }

    fn selected(&self, sel: &Selection) -> bool {
        !sel.only_million() && named::selected(&sel.opts)
    }

    fn steps(&self, sel: &Selection) -> u64 {
        named::steps(&sel.opts)
    }

    fn run(&mut self, sel: &Selection, progress: Progress<'_>) -> Result<(), String> {
        self.records = named::run(&sel.opts, progress);
        Ok(())
    }

    fn records(&self) -> Vec<Record> {
        self.records.clone()
    }

    fn print(&self, _: &Selection) {
        named::print_table(&self.records);
    }
}

/// Preemption latency and the ticker's overhead (`preempt`).
#[derive(Default)]
pub struct Preempt {
    records: Vec<Record>,
}

impl Family for Preempt {
    fn words(&self) -> Vec<&'static str> {
        vec!["preempt_latency", "ticker_overhead"]
    }

    fn selected(&self, sel: &Selection) -> bool {
        !sel.only_million() && preempt::selected(&sel.opts)
    }

    fn steps(&self, sel: &Selection) -> u64 {
        preempt::steps(&sel.opts)
    }

    fn run(&mut self, sel: &Selection, progress: Progress<'_>) -> Result<(), String> {
        self.records = preempt::run(&sel.opts, progress);
        Ok(())
    }

    fn records(&self) -> Vec<Record> {
        self.records.clone()
    }

    fn print(&self, _: &Selection) {
        preempt::print_table(&self.records);
    }
}

/// A million parked threads (`million`).
#[derive(Default)]
pub struct Million {
    report: Option<MillionReport>,
}

impl Family for Million {
    fn words(&self) -> Vec<&'static str> {
        vec!["million"]
    }

    fn selected(&self, sel: &Selection) -> bool {
        sel.scaling.is_none() && !sel.blocking && (sel.million.is_some() || sel.only_million())
    }

    fn steps(&self, _: &Selection) -> u64 {
        3
    }

    fn run(&mut self, sel: &Selection, progress: Progress<'_>) -> Result<(), String> {
        let threads = sel.million.unwrap_or(million::DEFAULT_THREADS);
        let report = million::run(threads, |phase| progress(&format!("million: {phase}")))?;
        self.report = Some(report);
        Ok(())
    }

    fn records(&self) -> Vec<Record> {
        self.report.iter().map(bench::million_record).collect()
    }

    fn print(&self, _: &Selection) {
        if let Some(r) = &self.report {
            print_million(r);
        }
    }
}

/// The skynet tree, in fresh processes (`skynet`).
#[derive(Default)]
pub struct Skynet {
    outcomes: Vec<skynet::Outcome>,
    depth: u32,
    wall: Duration,
}

impl Skynet {
    /// The skynet entries `sel` picks.
    fn entries(sel: &Selection) -> usize {
        skynet::ALL
            .iter()
            .filter(|e| sel.opts.selects("skynet", e.runtime.name()))
            .count()
    }

    /// Whether skynet runs: asked for, or named by the filter (no micro bench name
    /// contains "skynet").
    fn on(sel: &Selection) -> bool {
        sel.skynet.is_some()
            || sel
                .opts
                .filter
                .as_deref()
                .is_some_and(|f| f.starts_with("skynet"))
    }

    fn depth(sel: &Selection) -> u32 {
        sel.skynet.unwrap_or(skynet::DEFAULT_DEPTH)
    }
}

impl Family for Skynet {
    fn words(&self) -> Vec<&'static str> {
        vec!["skynet"]
    }

    fn selected(&self, sel: &Selection) -> bool {
        sel.scaling.is_none() && !sel.blocking && Skynet::on(sel) && Skynet::entries(sel) > 0
    }

    fn steps(&self, sel: &Selection) -> u64 {
        (Skynet::entries(sel) * skynet::DEFAULT_RUNS) as u64
    }

    fn run(&mut self, sel: &Selection, progress: Progress<'_>) -> Result<(), String> {
        let wall = Instant::now();
        self.depth = Skynet::depth(sel);
        self.outcomes = skynet::run(
            self.depth,
            skynet::DEFAULT_RUNS,
            |e| sel.opts.selects("skynet", e.runtime.name()),
            progress,
        );
        self.wall = wall.elapsed();
        Ok(())
    }

    fn records(&self) -> Vec<Record> {
        skynet::records(&self.outcomes, self.depth)
    }

    fn print(&self, _: &Selection) {
        skynet::print_table(&self.outcomes, self.depth, self.wall);
    }
}

/// Echo and HTTP servers under `wrk` (`netbench`).
#[derive(Default)]
pub struct Servers {
    outcomes: Vec<netbench::Outcome>,
}

impl Servers {
    fn pairs(sel: &Selection) -> impl Iterator<Item = (Kind, Peer)> + '_ {
        [Kind::Echo, Kind::Http]
            .into_iter()
            .flat_map(|k| Peer::ALL.map(move |p| (k, p)))
            .filter(move |&(k, p)| !sel.only_million() && sel.opts.selects(k.name(), p.name()))
    }
}

impl Family for Servers {
    fn words(&self) -> Vec<&'static str> {
        vec![Kind::Echo.name(), Kind::Http.name()]
    }

    fn selected(&self, sel: &Selection) -> bool {
        Servers::pairs(sel).next().is_some()
    }

    fn steps(&self, sel: &Selection) -> u64 {
        Servers::pairs(sel).count() as u64
    }

    fn run(&mut self, sel: &Selection, progress: Progress<'_>) -> Result<(), String> {
        self.outcomes = netbench::run(
            |k, p| !sel.only_million() && sel.opts.selects(k.name(), p.name()),
            &sel.load,
            progress,
        );
        Ok(())
    }

    fn records(&self) -> Vec<Record> {
        netbench::records(&self.outcomes)
    }

    fn print(&self, _: &Selection) {
        netbench::print_table(&self.outcomes);
    }
}

/// The scaling suite (`scaling`): plain user code at growing core counts.
#[derive(Default)]
pub struct Scaling {
    outcome: scaling::Outcome,
}

impl Scaling {
    /// Repetitions of each measurement (each is a whole process): `--reps` if given,
    /// at most 5; 3 with `--quick`.
    fn reps(sel: &Selection) -> usize {
        if sel.quick {
            sel.opts.reps.min(3)
        } else {
            sel.opts.reps.min(5)
        }
    }

    fn selects(sel: &Selection) -> impl Fn(scaling::Work, scaling::Peer) -> bool + '_ {
        |w, p| sel.opts.selects(&format!("scaling/{}", w.name()), p.name())
    }
}

impl Family for Scaling {
    fn words(&self) -> Vec<&'static str> {
        vec!["scaling"]
    }

    fn selected(&self, sel: &Selection) -> bool {
        sel.scaling.is_some()
    }

    fn steps(&self, sel: &Selection) -> u64 {
        let cores = sel.scaling.as_deref().unwrap_or_default();
        scaling::steps(cores, Scaling::reps(sel), Scaling::selects(sel))
    }

    fn run(&mut self, sel: &Selection, progress: Progress<'_>) -> Result<(), String> {
        let cores = sel.scaling.as_deref().unwrap_or_default();
        self.outcome = scaling::run(
            cores,
            Scaling::reps(sel),
            sel.quick,
            Scaling::selects(sel),
            progress,
        );
        if let Some(path) = &sel.plot {
            scaling::plot::draw(&self.outcome, path)?;
        }
        Ok(())
    }

    fn records(&self) -> Vec<Record> {
        scaling::records(&self.outcome)
    }

    fn print(&self, sel: &Selection) {
        scaling::print_table(&self.outcome);
        if let Some(path) = &sel.plot {
            println!("\nplot: {}", path.display());
        }
    }
}

/// The blocking suite (`blocking`): blocking calls in spindle threads, with and
/// without handoff, beside tokio and Go.
#[derive(Default)]
pub struct Blocking {
    rows: Vec<crate::blocking::Row>,
}

impl Blocking {
    /// Repetitions of each measurement (each is a whole process): `--reps` if given,
    /// at most 5; 3 with `--quick`.
    fn reps(sel: &Selection) -> usize {
        if sel.quick {
            sel.opts.reps.min(3)
        } else {
            sel.opts.reps.min(5)
        }
    }

    fn selects(sel: &Selection) -> impl Fn(&str, &str) -> bool + '_ {
        |case, rt| sel.opts.selects(&format!("blocking/{case}"), rt)
    }
}

impl Family for Blocking {
    fn words(&self) -> Vec<&'static str> {
        vec!["blocking"]
    }

    fn selected(&self, sel: &Selection) -> bool {
        sel.blocking
    }

    fn steps(&self, sel: &Selection) -> u64 {
        crate::blocking::steps(Blocking::reps(sel), Blocking::selects(sel))
    }

    fn run(&mut self, sel: &Selection, progress: Progress<'_>) -> Result<(), String> {
        self.rows = crate::blocking::run(Blocking::reps(sel), Blocking::selects(sel), progress);
        Ok(())
    }

    fn records(&self) -> Vec<Record> {
        crate::blocking::records(&self.rows)
    }

    fn print(&self, _: &Selection) {
        crate::blocking::print_table(&self.rows);
    }
}

/// Formats ns with a precision that suits its size.
fn fmt_ns(ns: f64) -> String {
    if !ns.is_finite() {
        "-".into()
    } else if ns < 10.0 {
        format!("{ns:.2}")
    } else if ns < 1000.0 {
        format!("{ns:.1}")
    } else {
        format!("{ns:.0}")
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The micro benches' table: one block per bench, one row per runtime.
fn print_micro(ms: &[Measurement], opts: &Options) {
    if ms.is_empty() {
        return;
    }
    println!(
        "median of {} interleaved repetitions, ~{} ms per batch; \"vs spindle\" = runtime / spindle (>1: slower than spindle)",
        opts.reps,
        opts.target.as_millis()
    );
    for b in Bench::ALL {
        let rows: Vec<&Measurement> = ms.iter().filter(|m| m.workload.bench == b).collect();
        if rows.is_empty() {
            continue;
        }
        println!(
            "\n{:<20} {:<11} {:>10} {:>10} {:>10} {:>7} {:>11} {:>11}",
            b.name(),
            "runtime",
            "ns/op",
            "min",
            "max",
            "spread",
            "vs spindle",
            "ops/batch"
        );
        for m in rows {
            let s = m.summary();
            let ratio = bench::vs_spindle(m, ms).map_or("-".into(), |r| format!("{r:.2}x"));
            let mut note = match m.pinned {
                Some(false) => "  (not pinned)".to_owned(),
                _ => String::new(),
            };
            if let Some(pct) = m.crossed_pct() {
                note += &format!("  (crossed CPUs in {pct:.1}% of sampled hops)");
            }
            println!(
                "{:<20} {:<11} {:>10} {:>10} {:>10} {:>6.0}% {:>11} {:>11}{note}",
                "",
                m.workload.runtime.name(),
                fmt_ns(s.median),
                fmt_ns(s.min),
                fmt_ns(s.max),
                s.spread_pct,
                ratio,
                m.ops
            );
        }
    }
}

/// The million run's line.
fn print_million(r: &MillionReport) {
    println!(
        "\nmillion: {} spindle threads parked at once: {:.2} KiB resident each (RSS {} -> {} MiB), guard pages: {}; spawn {:.0} ns each ({:.0} ms), all parked after {:.0} ms more, unpark + join all {:.0} ms, total {:.2} s, every join Ok",
        r.threads,
        r.rss_kib_per_thread(),
        r.rss_before_kib / 1024,
        r.rss_after_kib / 1024,
        r.guard.map_or("unknown", |g| g.as_str()),
        r.spawn_ns_per_thread(),
        ms(r.spawn),
        ms(r.settle),
        ms(r.teardown),
        r.wall.as_secs_f64()
    );
}
