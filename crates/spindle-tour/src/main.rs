//! `spindle-tour`: the showcase (`cargo run --release -p spindle-tour`). It builds
//! only the runtime, so it is ready in seconds from a cold cache; the peer benchmarks
//! live in `spindle-cli` (`spindle bench`).

fn main() {
    spindle_tour::run();
}
