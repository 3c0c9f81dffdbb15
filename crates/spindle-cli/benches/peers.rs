//! Criterion benchmarks: spindle and its peers side by side, one group per operation
//! (`switch`, `spawn_join`, `park_unpark`, `current`, `cross_core_pingpong`,
//! `remote_spawn`, `migration`, and `named_variants`: `spawn` against `spawn_named` of
//! an empty thread). The workloads are the ones `spindle bench` runs
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

/// `spindle::spawn` of an empty closure against `spindle::spawn_named` of the empty
/// `nop` thread (`spindle_cli::dot`), each joined, on one core.
fn named_variants(c: &mut Criterion) {
    let mut g = c.benchmark_group("named_variants");
    g.throughput(Throughput::Elements(1));
    let rt = spindle::Runtime::builder()
        .cores(1)
        .build()
        .expect("one core");
    g.bench_function("spindle", |b| {
        b.iter_custom(|n| {
            rt.block_on(|| {
                let t0 = std::time::Instant::now();
                for _ in 0..n {
                    spindle::spawn(|| ()).join().expect("empty thread");
                }
                t0.elapsed()
            })
        })
    });
    g.bench_function("spindle_named", |b| {
        b.iter_custom(|n| {
            rt.block_on(|| {
                let t0 = std::time::Instant::now();
                for _ in 0..n {
                    spindle::spawn_named::<(), ()>("nop", (), spindle::Builder::new())
                        .expect("nop is in the table")
                        .join()
                        .expect("nop");
                }
                t0.elapsed()
            })
        })
    });
    g.finish();
}

fn main() {
    workloads::init_peers();
    let mut c = Criterion::default().configure_from_args();
    for bench in Bench::ALL {
        group(&mut c, bench);
    }
    // Keeps the `dot` and `nop` named threads linked into this binary.
    std::hint::black_box(spindle_cli::dot::runnable_variants().len());
    named_variants(&mut c);
    c.final_summary();
}
