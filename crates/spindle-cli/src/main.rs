//! `spindle`: a short tour of the runtime (no arguments), and `spindle bench`, which
//! compares spindle with OS threads, corosensei, may, tokio and crossbeam, and with
//! raw cache-line floors for the cross-core benches.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use spindle_cli::bench::{Options, Report};
use spindle_cli::family::{self, Family, Selection};
use spindle_cli::million;
use spindle_cli::workloads;
use spindle_cli::{child, named, servers, skynet};

#[derive(Parser)]
#[command(
    name = "spindle",
    version,
    about = "Tour and benchmarks of the spindle runtime"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// A short tour of the runtime on this machine, a figure per line (the default).
    Tour,
    /// Compare spindle with std threads, corosensei, may, tokio and crossbeam.
    Bench(BenchArgs),
    /// A live view of a running spindle program started with SPINDLE_STATS=1: per
    /// core its state, threads, switches, spawns, steals and system calls per second,
    /// and the threads that ran longest (q quits).
    Top {
        /// The program's process id.
        pid: u32,
        /// Print one frame as text and exit (for scripts and logs).
        #[arg(long)]
        once: bool,
    },
    /// Read a trace written with SPINDLE_TRACE=FILE.
    Trace {
        #[command(subcommand)]
        what: TraceCommand,
    },
    /// Print the static table of named threads (#[spindle::thread]) in this binary:
    /// name, variants, required features, argument and return types, and which of
    /// this machine's core types can run each variant.
    Names,
    /// Internal: one measurement in a fresh process, for `spindle bench`.
    #[command(name = child::SUBCOMMAND, hide = true)]
    Child {
        #[command(subcommand)]
        what: ChildCommand,
    },
}

#[derive(Subcommand)]
enum TraceCommand {
    /// Per thread: run time, runs, migrations, and wait time by reason.
    Summary {
        /// The trace file.
        file: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
enum ChildCommand {
    /// Run workload NAME (`bench/runtime`) for N operations; print its time as JSON.
    Timed { name: String, n: u64 },
    /// Build the skynet tree of DEPTH levels once on RUNTIME; print time and peak RSS.
    Skynet { runtime: String, depth: u32 },
    /// Run server KIND (echo, http) on PEER (spindle, tokio, may) on a free loopback
    /// port until killed; print `listening on ADDR` first.
    Serve { kind: String, peer: String },
    /// Run scaling workload WORK on RUNTIME with CORES cores, restricted to that many
    /// CPUs, at the quick size if QUICK is 1; print its time as JSON.
    Scale {
        work: String,
        runtime: String,
        cores: usize,
        quick: u8,
    },
    /// Run case CASE of the blocking suite on RUNTIME once; print its figure as JSON.
    Blocking { case: String, runtime: String },
}

#[derive(Args)]
struct BenchArgs {
    /// Fewer and shorter repetitions (5 × 10 ms batches instead of 11 × 25 ms).
    #[arg(long)]
    quick: bool,
    /// Print one JSON object on stdout instead of a table (no progress bar).
    #[arg(long)]
    json: bool,
    /// Only workloads whose `bench/runtime` contains NAME, e.g. `switch`, `tokio`,
    /// `park_unpark/may`; `million` runs only the million-thread run.
    #[arg(long, value_name = "NAME")]
    filter: Option<String>,
    /// Repetitions per workload (default 11, or 5 with --quick).
    #[arg(long, value_name = "N")]
    reps: Option<usize>,
    /// Also spawn a million parked threads and report resident memory per thread.
    #[arg(long)]
    million: bool,
    /// Thread count of the million run (implies --million).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Also build the 1,000,000-leaf skynet tree on each runtime, 3 fresh processes
    /// each, and report wall time and peak memory; `--filter skynet` runs only it.
    #[arg(long)]
    skynet: bool,
    /// Levels of the skynet tree below the root (default 6: 10^6 leaves; implies
    /// --skynet).
    #[arg(long, value_name = "D", hide = true)]
    skynet_depth: Option<u32>,
    /// Run the scaling suite instead: plain user code (skynet, fib, fanin, pairs, ring,
    /// chained_spawn, yield_many, spawn_join_default) at growing core counts, every
    /// runtime restricted to the same CPUs.
    #[arg(long)]
    scaling: bool,
    /// Core counts of the scaling suite (default: 1, 2, 4, ... up to the CPUs usable;
    /// larger counts run oversubscribed). Implies --scaling.
    #[arg(long, value_name = "N,N,..", value_delimiter = ',')]
    cores: Option<Vec<usize>>,
    /// The echo and http servers run on the first N CPUs and their load generator on
    /// the rest (e.g. `--cpus 8 --wrk-threads 8 --conns 256` on 16 CPUs).
    #[arg(long, value_name = "N")]
    cpus: Option<usize>,
    /// wrk's threads (-t), and the echo client's (default 1).
    #[arg(long, value_name = "T", default_value_t = 1)]
    wrk_threads: u32,
    /// Connections of the echo and http loads (default 64).
    #[arg(long, value_name = "C", default_value_t = spindle_cli::netbench::CONNECTIONS)]
    conns: u32,
    /// Draw into this SVG file: the peer comparison as bars (each runtime's time per
    /// operation over spindle's), or with --scaling the speedups against cores.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<std::path::PathBuf>,
    /// Run the blocking suite instead: the worst stall a blocking call in one thread
    /// causes its core's other threads (with and without handoff), and blocking_mix
    /// (compute beside threads that sleep in std) against tokio and Go.
    #[arg(long)]
    blocking: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Tour) {
        Command::Tour => {
            spindle_tour::run();
            ExitCode::SUCCESS
        }
        Command::Top { pid, once } => match spindle_cli::top::run(pid, once) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("spindle top: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Trace {
            what: TraceCommand::Summary { file },
        } => match spindle_cli::trace::summary(&file) {
            Ok(t) => {
                use std::io::Write;
                // A closed pipe (`| head`) ends the output, not the program.
                let _ = std::io::stdout().lock().write_all(t.as_bytes());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("spindle trace summary: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Names => match named::print_names(&mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("spindle names: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Bench(args) => {
            workloads::init_peers();
            match run_bench(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("spindle bench: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        // A child configures the peers itself (may's worker count differs).
        Command::Child { what } => {
            let line = match what {
                ChildCommand::Timed { name, n } => child::serve_timed(&name, n),
                ChildCommand::Skynet { runtime, depth } => skynet::serve_child(&runtime, depth),
                ChildCommand::Scale {
                    work,
                    runtime,
                    cores,
                    quick,
                } => spindle_cli::scaling::serve_child(&work, &runtime, cores, quick == 1),
                ChildCommand::Blocking { case, runtime } => {
                    spindle_cli::blocking::serve_child(&case, &runtime)
                }
                ChildCommand::Serve { kind, peer } => {
                    let (Some(k), Some(p)) =
                        (servers::Kind::parse(&kind), servers::Peer::parse(&peer))
                    else {
                        eprintln!(
                            "spindle {}: serve KIND PEER: KIND is echo or http, PEER spindle, tokio or may",
                            child::SUBCOMMAND
                        );
                        return ExitCode::FAILURE;
                    };
                    servers::serve(k, p, "127.0.0.1:0").map(|()| String::new())
                }
            };
            match line {
                Ok(line) => {
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("spindle {}: {e}", child::SUBCOMMAND);
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn progress_bar(total: u64, hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template("{elapsed:>4} [{bar:32}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb
}

fn run_bench(args: BenchArgs) -> Result<(), String> {
    let mut opts = if args.quick {
        Options::quick()
    } else {
        Options::full()
    };
    if let Some(reps) = args.reps {
        opts.reps = reps.max(1);
    }
    opts.filter = args.filter.clone();
    let sel = Selection {
        opts,
        million: (args.million || args.threads.is_some())
            .then(|| args.threads.unwrap_or(million::DEFAULT_THREADS)),
        skynet: (args.skynet || args.skynet_depth.is_some())
            .then(|| args.skynet_depth.unwrap_or(skynet::DEFAULT_DEPTH)),
        scaling: (args.scaling || args.cores.is_some()).then(|| {
            args.cores
                .clone()
                .filter(|c| !c.is_empty())
                .unwrap_or_else(spindle_cli::scaling::default_cores)
        }),
        plot: args.plot.clone(),
        quick: args.quick,
        blocking: args.blocking,
        load: spindle_cli::netbench::Load {
            threads: args.wrk_threads.max(1),
            conns: args.conns.max(1),
            split: args
                .cpus
                .map(|n| {
                    spindle_cli::netbench::Load::split(n, &spindle_cli::affinity::allowed_cpus())
                })
                .transpose()?,
        },
    };
    if sel.scaling.as_ref().is_some_and(|c| c.contains(&0)) {
        return Err("--cores: a core count is at least 1".into());
    }
    let all = family::families();
    let words = family::filter_words(&all);
    let mut picked: Vec<Box<dyn Family>> = all.into_iter().filter(|f| f.selected(&sel)).collect();
    if picked.is_empty() {
        return Err(format!(
            "--filter {:?} matches no workload (try {}, or a runtime name)",
            args.filter.unwrap_or_default(),
            words.join(", ")
        ));
    }
    let hidden = args.json || !std::io::stderr().is_terminal();
    let pb = progress_bar(picked.iter().map(|f| f.steps(&sel)).sum(), hidden);
    let wall = Instant::now();
    let mut done = 0;
    for f in &mut picked {
        f.run(&sel, &mut |next| {
            pb.set_message(next.to_owned());
            pb.set_position(done);
            done += 1;
        })?;
    }
    pb.finish_and_clear();
    if let (Some(path), None) = (&sel.plot, &sel.scaling) {
        let records: Vec<_> = picked.iter().flat_map(|f| f.records()).collect();
        spindle_cli::bars::draw(&records, path)?;
        if !args.json {
            println!("\nplot: {}", path.display());
        }
    }
    if args.json {
        let results = picked.iter().flat_map(|f| f.records()).collect();
        let json = serde_json::to_string_pretty(&Report { results })
            .map_err(|e| format!("cannot encode the report: {e}"))?;
        println!("{json}");
    } else {
        for f in &picked {
            f.print(&sel);
        }
        println!("\nbench done in {:.1} s", wall.elapsed().as_secs_f64());
    }
    Ok(())
}
