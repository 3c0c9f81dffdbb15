//! Criterion benchmarks: spindle and its peers side by side, one group per operation
//! (`switch`, `spawn_join`, `park_unpark`, `current`, `cross_core_pingpong`,
//! `remote_spawn`, `migration`). The workloads are the ones `spindle bench` runs
//! ([`spindle_cli::workloads`]), driven through `iter_custom`; those that run in a
//! child process find the `spindle` binary cargo builds beside the benchmark (or at
//! `$SPINDLE_EXE`). Skynet is `spindle bench --skynet` only: it needs a fresh process
//! per run for its peak memory.
//!
//! ```text
//! cargo bench -p spindle-cli
//! cargo bench -p spindle-cli -- switch --warm-up-time 0.5 --measurement-time 1
//! cargo bench -p spindle-cli -- cross_core --warm-up-time 0.5 --measurement-time 1
//! ```

use criterion::{Criterion, Throughput};
use spindle_cli::workloads::{self, Bench};

fn group(c: &mut Criterion, bench: Bench) {
    let mut g = c.benchmark_group(bench.name());
    g.throughput(Throughput::Elements(1));
    for w in workloads::of(bench) {
        g.bench_function(w.runtime.name(), |b| b.iter_custom(|n| w.measure(n)));
    }
    g.finish();
}

fn main() {
    workloads::init_peers();
    let mut c = Criterion::default().configure_from_args();
    for bench in Bench::ALL {
        group(&mut c, bench);
    }
    c.final_summary();
}
