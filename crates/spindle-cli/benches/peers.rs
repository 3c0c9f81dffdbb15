//! Criterion benchmarks: spindle and its peers side by side, one group per operation
//! (`switch`, `spawn_join`, `park_unpark`, `current`). The workloads are the ones
//! `spindle bench` runs ([`spindle_cli::workloads`]), driven through `iter_custom`.
//!
//! ```text
//! cargo bench -p spindle-cli
//! cargo bench -p spindle-cli -- switch --warm-up-time 0.5 --measurement-time 1
//! ```

use criterion::{Criterion, Throughput};
use spindle_cli::workloads::{self, Bench};

fn group(c: &mut Criterion, bench: Bench) {
    let mut g = c.benchmark_group(bench.name());
    g.throughput(Throughput::Elements(1));
    for w in workloads::of(bench) {
        g.bench_function(w.runtime.name(), |b| b.iter_custom(w.run));
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
