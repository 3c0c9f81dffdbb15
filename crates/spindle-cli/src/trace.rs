//! `spindle trace summary FILE`: a trace written by `SPINDLE_TRACE=FILE` summed up per
//! thread: its run time, its wait time by reason, its migrations.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

/// One thread's sums.
#[derive(Default, Debug, Clone, PartialEq)]
pub struct ThreadSum {
    /// The slice name: `thread N` or `N name`.
    pub name: String,
    /// Time running, in microseconds.
    pub run_us: f64,
    /// Runs (slices).
    pub runs: u64,
    /// Time between a slice that ended in a wait and its next run, by reason.
    pub wait_us: BTreeMap<String, f64>,
    /// Runs that began on another core than the last one.
    pub migrations: u64,
}

/// The sums of a trace, by thread id.
///
/// # Errors
///
/// The text is not a trace-event JSON object.
pub fn summarize(text: &str) -> Result<BTreeMap<u64, ThreadSum>, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not a trace file (JSON: {e})"))?;
    let events = v["traceEvents"]
        .as_array()
        .ok_or("not a trace file: no traceEvents array")?;
    let mut sums: BTreeMap<u64, ThreadSum> = BTreeMap::new();
    let mut begun: HashMap<u64, f64> = HashMap::new();
    let mut waiting: HashMap<u64, (String, f64)> = HashMap::new();
    for e in events {
        let (Some(ph), Some(thread)) = (e["ph"].as_str(), e["args"]["thread"].as_u64()) else {
            continue;
        };
        let ts = e["ts"].as_f64().unwrap_or(0.0);
        match ph {
            "B" => {
                let s = sums.entry(thread).or_default();
                s.name = e["name"].as_str().unwrap_or("").to_owned();
                s.runs += 1;
                begun.insert(thread, ts);
                if let Some((why, since)) = waiting.remove(&thread) {
                    *s.wait_us.entry(why).or_default() += ts - since;
                }
            }
            "E" => {
                if let Some(b) = begun.remove(&thread) {
                    sums.entry(thread).or_default().run_us += ts - b;
                }
                if let Some(why) = e["args"]["why"]
                    .as_str()
                    .and_then(|w| w.strip_prefix("wait: "))
                {
                    waiting.insert(thread, (why.to_owned(), ts));
                }
            }
            "i" if e["name"] == "migrate" => sums.entry(thread).or_default().migrations += 1,
            _ => {}
        }
    }
    Ok(sums)
}

/// The summary as a table, threads that ran longest first.
///
/// # Errors
///
/// The file cannot be read or is not a trace.
pub fn summary(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let sums = summarize(&text)?;
    let mut rows: Vec<(&u64, &ThreadSum)> = sums.iter().collect();
    rows.sort_by(|a, b| b.1.run_us.total_cmp(&a.1.run_us));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<28} {:>10} {:>7} {:>10}  waits",
        "thread", "run ms", "runs", "migrations"
    );
    for (_, s) in rows {
        let waits: Vec<String> = s
            .wait_us
            .iter()
            .map(|(why, us)| format!("{why} {:.2} ms", us / 1e3))
            .collect();
        let _ = writeln!(
            out,
            "{:<28} {:>10.3} {:>7} {:>10}  {}",
            s.name,
            s.run_us / 1e3,
            s.runs,
            s.migrations,
            if waits.is_empty() {
                "-".to_owned()
            } else {
                waits.join(", ")
            }
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_waits_and_migrations_are_summed_per_thread() {
        let t = r#"{"traceEvents":[
            {"name":"7 worker","ph":"B","ts":10.0,"pid":1,"tid":0,"args":{"thread":7}},
            {"name":"7 worker","ph":"E","ts":15.0,"pid":1,"tid":0,"args":{"thread":7,"why":"wait: mutex"}},
            {"name":"migrate","ph":"i","s":"t","ts":25.0,"pid":1,"tid":1,"args":{"thread":7,"from":0}},
            {"name":"7 worker","ph":"B","ts":25.0,"pid":1,"tid":1,"args":{"thread":7}},
            {"name":"7 worker","ph":"E","ts":27.5,"pid":1,"tid":1,"args":{"thread":7,"why":"exit"}}
        ]}"#;
        let s = summarize(t).unwrap();
        let w = &s[&7];
        assert_eq!((w.run_us, w.runs, w.migrations), (7.5, 2, 1));
        assert_eq!(w.wait_us["mutex"], 10.0);
        assert!(summarize("[1,2]").is_err());
    }
}
