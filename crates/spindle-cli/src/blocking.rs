//! `spindle bench --blocking`: ordinary blocking code inside spindle threads.
//!
//! Two parts, each measurement in a fresh child process:
//!
//! - **gap**: on a runtime of one worker core, a thread sleeps 1 ms in a loop
//!   (`spindle::sleep`) while another thread of the same core makes one blocking call:
//!   `std::thread::sleep(500 ms)` (`gap_sleep`), a `read` on an empty pipe that an OS
//!   thread fills after 500 ms (`gap_pipe`), or `std::fs::read` of a 256 MiB file
//!   dropped from the page cache first (`gap_file`). The figure is the sleeper's worst
//!   gap between two wake-ups, with handoff (`spindle`) and without
//!   (`spindle_nohandoff`). The target is under 10 ms with handoff. `gap_service`
//!   reads the cold file through `spindle::fs` (offloaded) on a second worker core
//!   while the sleeper makes an offloaded `getpid` each round; the figure is the
//!   slowest `getpid`, which shows whether the read holds the service core.
//! - **blocking_mix**: 1,000 threads on the default runtime, of which 100 call
//!   `std::thread::sleep(1 ms)` in a loop (then `yield_now`) while 900 compute in
//!   chunks (1,000 steps of an LCG, then a yield) for [`MIX_MS`] ms; the figure is the
//!   chunks computed per second. Beside it: spindle without handoff; spindle with the
//!   sleeps inside `spindle::blocking`; tokio's default `multi_thread` runtime, whose
//!   sleepers use `spawn_blocking` as its docs recommend; Go, whose sleepers call
//!   `nanosleep(2)` (a blocking system call: Go's own `time.Sleep` would not block a
//!   thread). `blocking_mix_raw` is spindle's run with sleepers that never call the
//!   runtime (each is handed off once and stays on its OS thread; without handoff the
//!   first one would hold its core for good). `blocking_mix_base` is the same without
//!   the sleepers, so each runtime's loss to the sleepers shows.
//!
//! Repetitions go round every (case, runtime) in turn; a row reports the median.

use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, json};

use crate::bench::Record;
use crate::stats::Summary;

/// How long the blocking call of a gap case lasts (sleep, pipe).
const BLOCK_MS: u64 = 500;
/// How long blocking_mix computes.
pub const MIX_MS: u64 = 1000;
/// Threads of blocking_mix: a tenth sleep, the rest compute.
const THREADS: u64 = 1000;
/// Threads of blocking_mix that compute.
const COMPUTERS: u64 = THREADS - SLEEPERS;
/// Threads of blocking_mix that sleep.
const SLEEPERS: u64 = THREADS / 10;
/// Size of the cold file of `gap_file`.
const FILE_BYTES: usize = 256 << 20;

/// The cases of the suite.
pub const CASES: [&str; 7] = [
    "gap_sleep",
    "gap_pipe",
    "gap_file",
    "gap_service",
    "blocking_mix",
    "blocking_mix_raw",
    "blocking_mix_base",
];

/// The runtimes of a case.
pub fn runtimes(case: &str) -> &'static [&'static str] {
    if case == "gap_service" {
        &["spindle"]
    } else if case.starts_with("gap_") {
        &["spindle", "spindle_nohandoff"]
    } else if case == "blocking_mix_raw" {
        &["spindle"]
    } else {
        &[
            "spindle",
            "spindle_nohandoff",
            "spindle_blocking",
            "tokio",
            "go",
        ]
    }
}

/// What a child reports: the case's figure, and spindle's handoff count.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChildReport {
    value: f64,
    #[serde(default)]
    handed_off: u64,
}

/// The child side: runs `case` on `runtime` once and returns the JSON line to print.
///
/// # Errors
///
/// A message for an unknown case or runtime, or a failed set-up.
pub fn serve_child(case: &str, runtime: &str) -> Result<String, String> {
    let sleep = match runtime {
        "spindle" => Some(Sleep::Inline),
        "spindle_nohandoff" => Some(Sleep::NoHandoff),
        "spindle_blocking" => Some(Sleep::Pool),
        "tokio" => None,
        _ => return Err(format!("no blocking runtime {runtime:?}")),
    };
    let (value, handed_off) = match (case, sleep) {
        ("gap_sleep" | "gap_pipe" | "gap_file" | "gap_service", Some(Sleep::Inline)) => {
            gap(case, true)?
        }
        ("gap_sleep" | "gap_pipe" | "gap_file", Some(Sleep::NoHandoff)) => gap(case, false)?,
        ("blocking_mix", Some(how)) => mix_spindle(Some(how), how != Sleep::NoHandoff),
        ("blocking_mix_raw", Some(Sleep::Inline)) => mix_spindle(Some(Sleep::Raw), true),
        ("blocking_mix_base", Some(how)) => mix_spindle(None, how != Sleep::NoHandoff),
        ("blocking_mix" | "blocking_mix_base", None) => (mix_tokio(case == "blocking_mix"), 0),
        _ => return Err(format!("no blocking case {case:?} on {runtime}")),
    };
    serde_json::to_string(&ChildReport { value, handed_off })
        .map_err(|e| format!("cannot encode the report: {e}"))
}

/// How blocking_mix's spindle sleepers sleep.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sleep {
    /// `std::thread::sleep` in the thread, with handoff.
    Inline,
    /// `std::thread::sleep` in the thread, handoff off.
    NoHandoff,
    /// `std::thread::sleep` inside `spindle::blocking`.
    Pool,
    /// `std::thread::sleep` in the thread, with no runtime call in the loop.
    Raw,
}

/// A pipe whose ends are plain files (blocking reads and writes).
fn pipe() -> Result<(std::fs::File, std::fs::File), String> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe writes.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: pipe made them, and nothing else owns them.
    Ok(unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    })
}

/// Writes the cold file of `gap_file` and drops it from the page cache.
fn cold_file() -> Result<PathBuf, String> {
    let path = std::env::temp_dir().join(format!("spindle-cold-{}", std::process::id()));
    let mut f = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let block = vec![0x5au8; 1 << 20];
    for _ in 0..FILE_BYTES / block.len() {
        f.write_all(&block)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    f.sync_all()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    use std::os::fd::AsRawFd;
    // SAFETY: a valid descriptor; the call only advises the kernel.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    Ok(path)
}

/// A gap case on a one-worker runtime: the 1 ms sleeper's worst gap in ms while a
/// thread of its core makes the blocking call.
fn gap(case: &str, handoff: bool) -> Result<(f64, u64), String> {
    let file = if case == "gap_file" || case == "gap_service" {
        Some(cold_file()?)
    } else {
        None
    };
    let pipe = if case == "gap_pipe" {
        Some(pipe()?)
    } else {
        None
    };
    let offloaded = case == "gap_service";
    // `gap_service` reads on a core of its own: the figure is then the service
    // core's, not the copy's on the sleeper's core.
    let rt = spindle::Runtime::builder()
        .cores(if offloaded { 2 } else { 1 })
        .handoff(handoff)
        .build()
        .map_err(|e| e.to_string())?;
    let case = case.to_owned();
    let path = file.clone();
    let worst = rt.block_on(move || {
        let stop = Arc::new(AtomicBool::new(false));
        let worst = Arc::new(AtomicU64::new(0));
        let sleeper = {
            let (stop, worst) = (stop.clone(), worst.clone());
            spindle::Builder::new()
                .core(0)
                .spawn(move || {
                    let mut last = Instant::now();
                    while !stop.load(Ordering::Acquire) {
                        spindle::sleep(Duration::from_millis(1));
                        if offloaded {
                            // The figure is the offloaded call's own latency.
                            let t = Instant::now();
                            std::hint::black_box(spindle::sys::getpid());
                            let took = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
                            worst.fetch_max(took, Ordering::Relaxed);
                            last = Instant::now();
                            continue;
                        }
                        let now = Instant::now();
                        let gap = u64::try_from((now - last).as_nanos()).unwrap_or(u64::MAX);
                        worst.fetch_max(gap, Ordering::Relaxed);
                        last = now;
                    }
                })
                .expect("spawn the sleeper")
        };
        // Let the sleeper settle into its rhythm.
        spindle::sleep(Duration::from_millis(20));
        let (reader, writer) = match pipe {
            Some((r, w)) => (Some(r), Some(w)),
            None => (None, None),
        };
        let filler = writer.map(|mut w| {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(BLOCK_MS));
                let _ = w.write_all(b"x");
            })
        });
        let blocker = spindle::Builder::new()
            .core(usize::from(offloaded))
            .spawn(move || match case.as_str() {
                "gap_sleep" => std::thread::sleep(Duration::from_millis(BLOCK_MS)),
                "gap_pipe" => {
                    let mut buf = [0u8; 1];
                    let _ = reader.expect("the pipe").read_exact(&mut buf);
                }
                "gap_service" => {
                    let mut data = Vec::new();
                    if let Ok(mut f) = spindle::fs::File::open(path.expect("the file")) {
                        let _ = f.read_to_end(&mut data);
                    }
                    std::hint::black_box(data.len());
                }
                _ => {
                    let data = std::fs::read(path.expect("the file")).unwrap_or_default();
                    std::hint::black_box(data.len());
                }
            })
            .expect("spawn the blocker");
        blocker.join().expect("the blocker");
        spindle::sleep(Duration::from_millis(10));
        stop.store(true, Ordering::Release);
        sleeper.join().expect("the sleeper");
        if let Some(f) = filler {
            let _ = f.join();
        }
        worst.load(Ordering::Relaxed)
    });
    let handed = rt.handle().stats().total().handed_off;
    drop(rt);
    if let Some(p) = file {
        let _ = std::fs::remove_file(p);
    }
    Ok((worst as f64 / 1e6, handed))
}

/// One chunk of blocking_mix's compute: 1,000 steps of a 64-bit LCG.
#[inline(never)]
fn chunk(mut x: u64) -> u64 {
    for _ in 0..1000 {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
    }
    x
}

/// blocking_mix on spindle's default runtime: chunks per second.
fn mix_spindle(sleepers: Option<Sleep>, handoff: bool) -> (f64, u64) {
    let rt = spindle::Runtime::builder()
        .handoff(handoff)
        .build()
        .expect("the default runtime");
    let chunks = rt.block_on(move || {
        let stop = Arc::new(AtomicBool::new(false));
        let chunks = Arc::new(AtomicU64::new(0));
        let mut hs = Vec::new();
        if let Some(how) = sleepers {
            for _ in 0..SLEEPERS {
                let stop = stop.clone();
                hs.push(spindle::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match how {
                            Sleep::Pool => {
                                spindle::blocking(|| std::thread::sleep(Duration::from_millis(1)));
                            }
                            Sleep::Raw => std::thread::sleep(Duration::from_millis(1)),
                            Sleep::Inline | Sleep::NoHandoff => {
                                std::thread::sleep(Duration::from_millis(1));
                                // Code that blocks also talks to the runtime now and
                                // then (without it a sleeper would hold its core for
                                // good with handoff off: `blocking_mix_raw`).
                                spindle::yield_now();
                            }
                        }
                    }
                }));
            }
        }
        for c in 0..COMPUTERS {
            let (stop, chunks) = (stop.clone(), chunks.clone());
            hs.push(spindle::spawn(move || {
                let (mut x, mut done) = (c, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    x = chunk(x);
                    done += 1;
                    spindle::yield_now();
                }
                std::hint::black_box(x);
                chunks.fetch_add(done, Ordering::Relaxed);
            }));
        }
        spindle::sleep(Duration::from_millis(MIX_MS));
        stop.store(true, Ordering::Relaxed);
        for h in hs {
            h.join().expect("a mix thread");
        }
        chunks.load(Ordering::Relaxed)
    });
    let handed = rt.handle().stats().total().handed_off;
    (chunks as f64 * 1e3 / MIX_MS as f64, handed)
}

/// blocking_mix on tokio's default `multi_thread` runtime, the sleepers through
/// `spawn_blocking`: chunks per second.
fn mix_tokio(sleepers: bool) -> f64 {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let chunks = rt.block_on(async move {
        let stop = Arc::new(AtomicBool::new(false));
        let chunks = Arc::new(AtomicU64::new(0));
        let mut hs = Vec::new();
        if sleepers {
            for _ in 0..SLEEPERS {
                let stop = stop.clone();
                hs.push(tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        tokio::task::spawn_blocking(|| {
                            std::thread::sleep(Duration::from_millis(1));
                        })
                        .await
                        .expect("a blocking sleep");
                    }
                }));
            }
        }
        for c in 0..COMPUTERS {
            let (stop, chunks) = (stop.clone(), chunks.clone());
            hs.push(tokio::spawn(async move {
                let (mut x, mut done) = (c, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    x = chunk(x);
                    done += 1;
                    tokio::task::yield_now().await;
                }
                std::hint::black_box(x);
                chunks.fetch_add(done, Ordering::Relaxed);
            }));
        }
        tokio::time::sleep(Duration::from_millis(MIX_MS)).await;
        stop.store(true, Ordering::Relaxed);
        for h in hs {
            h.await.expect("a mix task");
        }
        chunks.load(Ordering::Relaxed)
    });
    chunks as f64 * 1e3 / MIX_MS as f64
}

/// One measurement in a fresh process: the case's figure and spindle's handoffs.
fn measure(case: &str, runtime: &str, go: Option<&PathBuf>) -> Result<(f64, u64), String> {
    if runtime == "go" {
        let go = go.ok_or("the Go peer is not built")?;
        let chunks = crate::scaling::run_go(Command::new(go).args([
            case,
            &THREADS.to_string(),
            &MIX_MS.to_string(),
        ]))?;
        return Ok((chunks as f64 * 1e3 / MIX_MS as f64, 0));
    }
    let line = crate::child::run(&["blocking".into(), case.into(), runtime.into()])?;
    let r = serde_json::from_str::<ChildReport>(line.trim())
        .map_err(|e| format!("bad report from the child ({e}): {line}"))?;
    Ok((r.value, r.handed_off))
}

/// The samples of one (case, runtime).
#[derive(Debug, Clone)]
pub struct Row {
    /// The case.
    pub case: &'static str,
    /// The runtime.
    pub runtime: &'static str,
    /// The figure of each run (ms for gaps, chunks/s for the mix).
    pub values: Vec<f64>,
    /// Spindle's handoffs in each run.
    pub handed_off: Vec<u64>,
    /// Why the runs failed, if they did.
    pub error: Option<String>,
}

impl Row {
    /// The median figure, if any run succeeded.
    pub fn median(&self) -> Option<f64> {
        Summary::of(&self.values).map(|s| s.median)
    }
}

/// Runs every selected (case, runtime) `reps` times, interleaved, calling `step`
/// before each measurement.
pub fn run(
    reps: usize,
    selects: impl Fn(&str, &str) -> bool,
    mut step: impl FnMut(&str),
) -> Vec<Row> {
    let go = crate::scaling::build_go();
    let mut rows: Vec<Row> = CASES
        .iter()
        .flat_map(|&case| runtimes(case).iter().map(move |&rt| (case, rt)))
        .filter(|&(case, rt)| selects(case, rt) && (rt != "go" || go.is_some()))
        .map(|(case, runtime)| Row {
            case,
            runtime,
            values: Vec::new(),
            handed_off: Vec::new(),
            error: None,
        })
        .collect();
    for rep in 1..=reps {
        for row in rows.iter_mut().filter(|r| r.error.is_none()) {
            step(&format!(
                "blocking/{}/{}: rep {rep}/{reps}",
                row.case, row.runtime
            ));
            match measure(row.case, row.runtime, go.as_ref()) {
                Ok((v, h)) => {
                    row.values.push(v);
                    row.handed_off.push(h);
                }
                Err(e) => row.error = Some(e),
            }
        }
    }
    rows
}

/// The number of measurements [`run`] makes.
pub fn steps(reps: usize, selects: impl Fn(&str, &str) -> bool) -> u64 {
    let n = CASES
        .iter()
        .flat_map(|&case| runtimes(case).iter().map(move |&rt| (case, rt)))
        .filter(|&(case, rt)| selects(case, rt))
        .count();
    (n * reps) as u64
}

/// The JSON records: `ns_per_op` is the median gap in ns for the gap cases, and ns
/// per chunk for the mix.
pub fn records(rows: &[Row]) -> Vec<Record> {
    rows.iter()
        .map(|r| {
            let mut extra = Map::new();
            let median = r.median();
            let gap = r.case.starts_with("gap_");
            let ns = median.map_or(f64::NAN, |m| if gap { m * 1e6 } else { 1e9 / m });
            if gap {
                extra.insert("worst_gap_ms".into(), json!(median));
            } else {
                extra.insert("chunks_per_s".into(), json!(median));
                extra.insert("kept".into(), json!(kept(rows, r)));
            }
            extra.insert("samples".into(), json!(r.values));
            extra.insert("handed_off".into(), json!(r.handed_off));
            if let Some(e) = &r.error {
                extra.insert("error".into(), json!(e));
            }
            Record {
                bench: format!("blocking/{}", r.case),
                runtime: r.runtime.to_owned(),
                ns_per_op: ns,
                ops: 1,
                extra,
            }
        })
        .collect()
}

/// A mix row's throughput over the same runtime's without sleepers.
fn kept(rows: &[Row], row: &Row) -> Option<f64> {
    let base = rows
        .iter()
        .find(|r| r.case == "blocking_mix_base" && r.runtime == row.runtime)?
        .median()?;
    Some(row.median()? / base)
}

/// Prints the suite's tables.
pub fn print_table(rows: &[Row]) {
    println!("\nblocking code in spindle threads (medians; each run a fresh process)");
    println!(
        "\nworst gap of a 1 ms sleeper while a thread of its core blocks (1 worker core; target < 10 ms with handoff)"
    );
    println!(
        "{:<12} {:>20} {:>22} {:>10}",
        "case", "spindle (handoff)", "spindle (no handoff)", "handoffs"
    );
    for case in ["gap_sleep", "gap_pipe", "gap_file", "gap_service"] {
        let get = |rt: &str| rows.iter().find(|r| r.case == case && r.runtime == rt);
        let fmt = |r: Option<&Row>| match r {
            Some(Row { error: Some(e), .. }) => format!("error: {e}"),
            Some(r) => r.median().map_or("-".into(), |m| format!("{m:.1} ms")),
            None => "-".into(),
        };
        let on = get("spindle");
        if on.is_none() && get("spindle_nohandoff").is_none() {
            continue;
        }
        let handed = on
            .and_then(|r| r.handed_off.iter().max().copied())
            .unwrap_or(0);
        println!(
            "{case:<12} {:>20} {:>22} {handed:>10}",
            fmt(on),
            fmt(get("spindle_nohandoff"))
        );
    }
    println!(
        "\nblocking_mix: {COMPUTERS} threads compute for {MIX_MS} ms while {SLEEPERS} sleep 1 ms in a loop \
         (default runtimes; chunks of 1,000 LCG steps per second)"
    );
    println!(
        "{:<24} {:>14} {:>14} {:>8}",
        "sleepers", "with sleepers", "no sleepers", "kept"
    );
    let rows_of = [
        ("spindle", "blocking_mix", "spindle (sleep, yield)"),
        ("spindle", "blocking_mix_raw", "spindle (sleep only)"),
        ("spindle_nohandoff", "blocking_mix", "spindle, no handoff"),
        ("spindle_blocking", "blocking_mix", "spindle::blocking"),
        ("tokio", "blocking_mix", "tokio spawn_blocking"),
        ("go", "blocking_mix", "go nanosleep"),
    ];
    for (rt, case, label) in rows_of {
        let with = rows.iter().find(|r| r.case == case && r.runtime == rt);
        let base = rows
            .iter()
            .find(|r| r.case == "blocking_mix_base" && r.runtime == rt);
        if with.is_none() && base.is_none() {
            continue;
        }
        let m = |r: Option<&Row>| r.and_then(Row::median);
        let fmt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.2} M/s", v / 1e6));
        let kept = match (m(with), m(base)) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.1}%", 100.0 * a / b),
            _ => "-".into(),
        };
        println!(
            "{label:<24} {:>14} {:>14} {kept:>8}",
            fmt(m(with)),
            fmt(m(base))
        );
        for r in [with, base].into_iter().flatten() {
            if let Some(e) = &r.error {
                println!("  {}: error: {e}", r.case);
            }
        }
    }
}
