//! Workloads and measurement helpers behind the `spindle` command and its criterion
//! benchmark.
//!
//! The same workload functions drive `spindle bench` (median of interleaved
//! repetitions, see [`bench`](mod@bench)) and `cargo bench -p spindle-cli` (criterion's
//! `iter_custom`): every workload takes an operation count and returns the time those
//! operations took, setup excluded. See [`workloads`] for what each one measures.
//!
//! Call [`workloads::init_peers`] once at process start, before any workload runs: it
//! configures the process-global `may` scheduler (one worker). Workloads that need
//! another configuration, and whole-process figures (skynet's peak memory), run in a
//! fresh `spindle` process: see [`child`] and [`skynet`].

pub mod affinity;
pub mod bars;
pub mod bench;
pub mod blocking;
pub mod child;
pub mod dot;
pub mod family;
pub mod mem;
pub mod million;
pub mod named;
pub mod netbench;
pub mod preempt;
pub mod scaling;
pub mod servers;
pub mod skynet;
pub mod stats;
pub mod top;
pub mod trace;
pub mod workloads;
