//! Measuring in a fresh `spindle` process.
//!
//! Two things need a process of their own: workloads whose peer is configured
//! process-wide in a way that clashes with the other benches (may's worker count:
//! one for the single-core benches, two for the cross-core ones), and figures of the
//! whole process (skynet's peak memory). The parent re-runs the `spindle` binary with
//! the hidden `bench-child` subcommand; the child prints one JSON line on stdout and
//! the parent parses it.
//!
//! ```text
//! spindle bench-child timed cross_core_pingpong/may 10000
//! {"ns":1234567,"crossed":3,"sampled":314,"pinned":null}
//! spindle bench-child skynet tokio 6
//! {"runtime":"tokio","depth":6,"sum":499999500000,"wall_ns":...,"vm_hwm_kib":...,"rss_start_kib":...}
//! ```

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::affinity;
use crate::workloads::{self, Workload};

/// The name of the hidden subcommand that runs a child.
pub const SUBCOMMAND: &str = "bench-child";

/// The `spindle` binary: the running one if it is `spindle`, else `$SPINDLE_EXE`,
/// else a `spindle` next to the running executable or one directory up (where cargo
/// puts it for test and bench executables, under `target/<profile>/deps/`).
pub fn spindle_exe() -> Option<PathBuf> {
    let me = std::env::current_exe().ok()?;
    if me.file_name().is_some_and(|n| n == "spindle") {
        return Some(me);
    }
    if let Some(p) = std::env::var_os("SPINDLE_EXE") {
        return Some(p.into());
    }
    me.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("spindle"))
        .find(|p| p.is_file())
}

/// How long a child may take before it is killed.
pub const TIME_LIMIT: Duration = Duration::from_secs(300);

/// Runs `spindle bench-child ARGS..` and returns its stdout. Kills the child if it
/// runs longer than [`TIME_LIMIT`].
///
/// # Errors
///
/// A message if the binary cannot be found or run, or the child fails or times out
/// (with the gist of its stderr: the lines that are not backtrace).
pub fn run(args: &[String]) -> Result<String, String> {
    let exe = spindle_exe()
        .ok_or("cannot find the spindle binary (build it, or set SPINDLE_EXE to its path)")?;
    let what = format!("`{} {SUBCOMMAND} {}`", exe.display(), args.join(" "));
    let mut child = Command::new(&exe)
        .arg(SUBCOMMAND)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    // Drain both pipes while waiting, so a chatty child never blocks on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let t0 = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if t0.elapsed() < TIME_LIMIT => thread::sleep(Duration::from_millis(2)),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    match status {
        Some(s) if s.success() => Ok(stdout),
        Some(s) => Err(format!("{what} failed ({s}): {}", gist(&stderr))),
        None => Err(format!(
            "{what} killed after {} s: {}",
            TIME_LIMIT.as_secs(),
            gist(&stderr)
        )),
    }
}

/// The first few distinct lines of a child's stderr that are not backtrace.
fn gist(stderr: &str) -> String {
    let mut lines: Vec<&str> = Vec::new();
    for line in stderr.lines().map(str::trim_end) {
        let noise = line.is_empty()
            || line.starts_with(char::is_whitespace)
            || line.starts_with("stack backtrace")
            || line.starts_with("note:");
        if !noise && !lines.contains(&line) && lines.len() < 3 {
            lines.push(line);
        }
    }
    lines.join(" | ")
}

/// What a timed child reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimedReport {
    /// The workload's result, in ns.
    pub ns: u64,
    /// Sampled hops that crossed CPUs (see [`affinity::HopSampler`]).
    pub crossed: u64,
    /// Sampled hops.
    pub sampled: u64,
    /// Whether every pinning succeeded, if the workload pinned.
    pub pinned: Option<bool>,
}

/// Runs `w` for `n` operations in a child process and returns its time; records the
/// child's sampled hops and pinning outcome here with [`affinity::record_hops`] and
/// [`affinity::record_pinned`].
///
/// # Errors
///
/// A message if the child cannot be run, fails, or prints something else than a
/// [`TimedReport`].
pub fn timed(w: &Workload, n: u64) -> Result<Duration, String> {
    let out = run(&["timed".into(), w.name(), n.to_string()])?;
    let r: TimedReport = serde_json::from_str(out.trim())
        .map_err(|e| format!("bad report from the child ({e}): {out}"))?;
    affinity::record_hops(r.crossed, r.sampled);
    if let Some(p) = r.pinned {
        affinity::record_pinned(p);
    }
    Ok(Duration::from_nanos(r.ns))
}

/// The child side of [`timed`]: configures the peers with
/// [`workloads::init_child_peers`], runs the workload named `name` (`bench/runtime`)
/// for `n` operations here, and returns the JSON line to print.
///
/// # Errors
///
/// A message if no workload has that name.
pub fn serve_timed(name: &str, n: u64) -> Result<String, String> {
    let w = workloads::find(name).ok_or_else(|| format!("no workload named {name:?}"))?;
    workloads::init_child_peers(w);
    affinity::take_hops();
    affinity::take_pinned();
    let d = (w.run)(n);
    let (crossed, sampled) = affinity::take_hops().unwrap_or((0, 0));
    let r = TimedReport {
        ns: u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
        crossed,
        sampled,
        pinned: affinity::take_pinned(),
    };
    serde_json::to_string(&r).map_err(|e| format!("cannot encode the report: {e}"))
}
