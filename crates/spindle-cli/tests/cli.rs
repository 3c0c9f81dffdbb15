//! The `spindle` binary end to end: `bench --json` prints one JSON object in the
//! documented shape; `top` reads a live program's page.

use std::process::Command;

fn spindle(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_spindle"))
        .args(args)
        .output()
        .expect("run spindle");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn results(stdout: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    v["results"].as_array().expect("a results array").clone()
}

#[test]
fn bench_json_has_one_record_per_runtime_with_a_median() {
    let (ok, out, err) = spindle(&["bench", "--quick", "--json", "--filter", "current"]);
    assert!(ok, "bench failed: {err}");
    let rs = results(&out);
    let runtimes: Vec<&str> = rs.iter().map(|r| r["runtime"].as_str().unwrap()).collect();
    assert!(
        runtimes.contains(&"spindle") && runtimes.contains(&"std"),
        "{runtimes:?}"
    );
    for r in &rs {
        assert_eq!(r["bench"], "current");
        assert!(r["ns_per_op"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["ops"].as_u64().unwrap() > 0, "{r}");
    }
}

#[test]
fn million_reports_threads_memory_and_guard_mode() {
    let (ok, out, err) = spindle(&[
        "bench",
        "--json",
        "--filter",
        "million",
        "--threads",
        "3000",
    ]);
    assert!(ok, "million failed: {err}");
    let rs = results(&out);
    let m = rs
        .iter()
        .find(|r| r["bench"] == "million")
        .expect("a million record");
    assert_eq!(m["runtime"], "spindle");
    assert_eq!(m["threads"], 3000);
    let kib = m["rss_kib_per_thread"].as_f64().unwrap();
    assert!(kib > 0.0, "{m}");
    assert!(
        ["madvise", "mprotect"].contains(&m["guard"].as_str().unwrap()),
        "{m}"
    );
}

#[test]
fn cross_core_raw_floor_reports_pinning_in_json() {
    let (ok, out, err) = spindle(&[
        "bench",
        "--quick",
        "--json",
        "--reps",
        "2",
        "--filter",
        "cross_core_pingpong/raw",
    ]);
    assert!(ok, "bench failed: {err}");
    let rs = results(&out);
    assert_eq!(rs.len(), 1, "{rs:?}");
    let r = &rs[0];
    assert_eq!(r["bench"], "cross_core_pingpong");
    assert_eq!(r["runtime"], "raw");
    assert!(r["ns_per_op"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["pinned"].is_boolean(), "{r}");
}

/// The may workloads of the cross-core benches run in a child process (may's worker
/// count is process-wide), and report how many of their hops crossed CPUs.
#[test]
fn child_process_workload_reports_sampled_hops() {
    let (ok, out, err) = spindle(&[
        "bench",
        "--quick",
        "--json",
        "--reps",
        "1",
        "--filter",
        "cross_core_pingpong/may",
    ]);
    assert!(ok, "bench failed: {err}");
    let rs = results(&out);
    assert_eq!(rs.len(), 1, "{rs:?}");
    let r = &rs[0];
    assert!(r["ns_per_op"].as_f64().unwrap() > 0.0, "{r}");
    let pct = r["crossed_cores_pct"].as_f64().expect("crossed_cores_pct");
    assert!((0.0..=100.0).contains(&pct), "{r}");
    assert!(r["hops_sampled"].as_u64().unwrap() > 0, "{r}");
}

#[test]
fn skynet_small_tree_reports_wall_time_and_peak_memory() {
    let (ok, out, err) = spindle(&[
        "bench",
        "--json",
        "--filter",
        "skynet",
        "--skynet-depth",
        "3",
    ]);
    assert!(ok, "skynet failed: {err}");
    let rs = results(&out);
    let runtimes: Vec<&str> = rs.iter().map(|r| r["runtime"].as_str().unwrap()).collect();
    assert!(
        runtimes.contains(&"may") && runtimes.contains(&"tokio"),
        "{runtimes:?}"
    );
    for r in &rs {
        assert_eq!(r["bench"], "skynet");
        assert_eq!(r["leaves"], 1000);
        assert_eq!(r["ops"], 1111);
        assert_eq!(r["runs"], 3, "{r}");
        assert_eq!(r["sum_ok"], true, "{r}");
        assert!(r["wall_ms"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["vm_hwm_kib"].as_u64().unwrap() > 0, "{r}");
    }
}

#[test]
fn names_prints_the_thread_table() {
    let (ok, out, err) = spindle(&["names"]);
    assert!(ok, "names failed: {err}");
    assert!(out.contains("core types of this machine"), "{out}");
    let dot: Vec<&str> = out.lines().filter(|l| l.starts_with("dot ")).collect();
    assert_eq!(dot.len(), 3, "{out}");
    for variant in ["generic", "avx2+fma", "avx512f"] {
        assert!(dot.iter().any(|l| l.contains(variant)), "{variant}:\n{out}");
    }
    // Argument and return types, and where each variant runs.
    assert!(
        dot.iter()
            .all(|l| l.contains("Arc<[f32]>") && l.contains(" f32 ")),
        "{out}"
    );
    let generic = dot.iter().find(|l| l.contains("generic")).unwrap();
    assert!(!generic.contains("no core type here"), "{generic}");
    assert!(out.lines().any(|l| l.starts_with("nop ")), "{out}");
}

#[test]
fn named_variants_reports_each_variant_the_picks_and_the_spawn_ratio() {
    let (ok, out, err) = spindle(&[
        "bench",
        "--json",
        "--reps",
        "2",
        "--quick",
        "--filter",
        "named_variants",
    ]);
    assert!(ok, "bench failed: {err}");
    let rs = results(&out);
    let get = |runtime: &str| {
        rs.iter()
            .find(|r| r["runtime"] == runtime)
            .unwrap_or_else(|| panic!("no {runtime} record in {out}"))
    };
    for r in &rs {
        assert_eq!(r["bench"], "named_variants");
        assert!(r["ns_per_op"].as_f64().unwrap() > 0.0, "{r}");
    }
    assert!(get("spindle_named")["vs_spindle"].as_f64().unwrap() > 0.0);
    assert_eq!(get("dot_generic")["variant"], "generic");
    assert_eq!(get("picked_lite")["variant"], "avx2+fma");
    assert_eq!(get("picked_lite")["core_type"], "lite");
    let big = get("picked_big")["variant"].as_str().unwrap();
    assert!(["avx512f", "avx2+fma"].contains(&big), "{big}");
}

/// Without wrk on the PATH the http bench still runs to the end and each record says
/// how to install it.
#[test]
fn http_bench_says_how_to_get_wrk_when_it_is_missing() {
    let out = Command::new(env!("CARGO_BIN_EXE_spindle"))
        .args(["bench", "--json", "--filter", "http/"])
        .env("PATH", "")
        .env("SPINDLE_EXE", env!("CARGO_BIN_EXE_spindle"))
        .output()
        .expect("run spindle");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rs = results(&String::from_utf8_lossy(&out.stdout));
    let runtimes: Vec<_> = rs.iter().map(|r| r["runtime"].as_str().unwrap()).collect();
    assert_eq!(runtimes, ["spindle", "tokio", "may"]);
    for r in &rs {
        assert_eq!(r["bench"], "http");
        assert!(r["ns_per_op"].is_null(), "{r}");
        let e = r["error"].as_str().expect("an error message");
        assert!(e.contains("apt-get install wrk"), "{e}");
    }
}

#[test]
fn top_fails_cleanly_on_a_process_without_a_stats_page() {
    // PID 1 (init) is no spindle program.
    let (ok, out, err) = spindle(&["top", "1"]);
    assert!(!ok, "{out}");
    assert!(err.contains("process 1 has no spindle stats page"), "{err}");
    assert!(err.contains("SPINDLE_STATS=1"), "{err}");
}

/// `spindle top PID --once` renders one frame of a live server's page.
#[test]
fn top_renders_a_running_programs_cores_and_threads() {
    use std::io::BufRead;
    let mut server = Command::new(env!("CARGO_BIN_EXE_spindle"))
        .args(["bench-child", "serve", "echo", "spindle"])
        .env("SPINDLE_STATS", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the echo server");
    let mut line = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening on"), "{line}");
    let pid = server.id().to_string();
    let (ok, out, err) = spindle(&["top", &pid, "--once"]);
    let _ = server.kill();
    let _ = server.wait();
    assert!(ok, "{err}");
    let head = format!("spindle top — pid {pid}");
    for needle in [
        head.as_str(),
        "switches/s",
        "service",
        "threads that ran longest",
    ] {
        assert!(out.contains(needle), "no {needle:?} in:\n{out}");
    }
}
