//! An HTTP/1.1 plaintext server ("Hello, World!"):
//! `cargo run --release -p spindle-cli --example http -- [spindle|tokio|may] [ADDR]`
//! (default `spindle 127.0.0.1:8080`). The same server on spindle::net, tokio and may;
//! see `spindle_cli::servers`. `spindle bench --filter http` loads all three with wrk.

fn main() -> std::process::ExitCode {
    spindle_cli::servers::example_main(spindle_cli::servers::Kind::Http)
}
