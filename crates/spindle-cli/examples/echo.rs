//! A TCP echo server: `cargo run --release -p spindle-cli --example echo -- [spindle|tokio|may] [ADDR]`
//! (default `spindle 127.0.0.1:8080`). The same server on spindle::net, tokio and may;
//! see `spindle_cli::servers`. `spindle bench --filter echo` loads all three with wrk.

fn main() -> std::process::ExitCode {
    spindle_cli::servers::example_main(spindle_cli::servers::Kind::Echo)
}
