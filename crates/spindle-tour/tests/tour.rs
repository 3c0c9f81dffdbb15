//! The showcase end to end: `spindle-tour` tells its whole story.

use std::process::Command;

#[test]
fn the_tour_runs_and_reports() {
    let out = Command::new(env!("CARGO_BIN_EXE_spindle-tour"))
        .output()
        .expect("run spindle-tour");
    let (ok, out, err) = (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(ok, "tour failed: {err}");
    for needle in [
        "spindle tour: the default runtime on this machine has",
        "spawn across the cores",
        "spawn + join",
        "fork-join",
        "priorities: an urgent thread",
        "time slices",
        "offloaded getpid",
        "TCP echo",
        "named threads",
        "cores come and go",
        "locality",
        "\"napper\" prio 32: waiting on park",
        "tour done",
    ] {
        assert!(out.contains(needle), "tour output lacks {needle:?}:\n{out}");
    }
}
