//! The `echo` and `http` benches: each server of [`crate::servers`] runs in a fresh
//! `spindle bench-child serve KIND PEER` process and is loaded over loopback for
//! [`DURATION`] with [`CONNECTIONS`] connections from one client thread. The bench
//! starts and stops everything itself.
//!
//! - **http** is loaded by [`wrk`](https://github.com/wg/wrk) (Debian package `wrk`,
//!   `-t1 --latency`); without `wrk` its records say how to install it.
//! - **echo** is loaded by a built-in client ([`echo_load`]): wrk speaks HTTP only and
//!   checks that its request is an HTTP request, so an echo of it can never parse as
//!   the response wrk waits for. The client is one OS thread running a tokio
//!   `current_thread` runtime with one task per connection, each sending a 64-byte
//!   message and waiting for its echo, timing every round trip (as wrk -t1 does).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Map, json};

use crate::bench::Record;
use crate::child;
use crate::servers::{Kind, Peer};

/// How long wrk loads each server.
pub const DURATION: Duration = Duration::from_secs(3);
/// Connections the load generator keeps open (default).
pub const CONNECTIONS: u32 = 64;

/// How the servers are loaded: by how many client threads and connections, and on
/// which CPUs the server and the client run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Load {
    /// wrk's threads (`-t`), and the echo client's.
    pub threads: u32,
    /// Connections (`-c`).
    pub conns: u32,
    /// The server's CPUs and the client's (`None`: both anywhere).
    pub split: Option<(Vec<usize>, Vec<usize>)>,
}

impl Default for Load {
    /// One client thread, [`CONNECTIONS`] connections, no split (`wrk -t1 -c64`).
    fn default() -> Load {
        Load {
            threads: 1,
            conns: CONNECTIONS,
            split: None,
        }
    }
}

impl Load {
    /// The server on the first `server` CPUs of `allowed`, the client on the rest.
    ///
    /// # Errors
    ///
    /// A message saying what `--cpus` may be when `server` leaves no CPU to either.
    pub fn split(server: usize, allowed: &[usize]) -> Result<(Vec<usize>, Vec<usize>), String> {
        if server == 0 || server >= allowed.len() {
            return Err(format!(
                "--cpus {server}: the server gets the first N CPUs and the load generator the \
                 rest, and this process may use {}, so N is 1 to {}",
                allowed.len(),
                allowed.len().saturating_sub(1)
            ));
        }
        Ok((allowed[..server].to_vec(), allowed[server..].to_vec()))
    }

    /// How the run is described in the table and the records.
    pub fn describe(&self, kind: Kind) -> String {
        let client = match kind {
            Kind::Http => format!("wrk -t{} -c{}", self.threads, self.conns),
            Kind::Echo => format!(
                "built-in client, {} thread{}, {} connections",
                self.threads,
                if self.threads == 1 { "" } else { "s" },
                self.conns
            ),
        };
        match &self.split {
            None => client,
            Some((s, c)) => format!("{client}; server on CPUs {s:?}, client on {c:?}"),
        }
    }
}

/// Bytes of each echo message.
pub const ECHO_BYTES: usize = 64;

/// One server's figures.
#[derive(Debug, Clone)]
pub struct Figures {
    /// Requests per second.
    pub rps: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// Requests completed.
    pub requests: u64,
    /// Socket errors and non-2xx answers wrk counted.
    pub errors: u64,
    /// A spindle server's system-call figures over the run: calls served by the
    /// service core, calls run directly, calls through the io_uring, and its backend.
    pub service: Option<Service>,
}

/// A spindle server's system-call figures (see [`crate::servers::STATS_ENV`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Calls served by the service core.
    pub served: u64,
    /// Calls run directly on a worker.
    pub direct: u64,
    /// Of `served`, calls that went through the io_uring.
    pub batched: u64,
    /// `io_uring_enter` calls that submitted them.
    pub enters: u64,
    /// `io_uring` or `epoll`.
    pub backend: String,
    /// Times a caller found its core's request slots all taken and waited.
    pub slot_waits: u64,
}

impl Service {
    /// Reads the server's line `service served=N direct=N batched=N enters=N
    /// backend=NAME slot_waits=N`.
    pub fn parse(line: &str) -> Option<Service> {
        let rest = line.trim().strip_prefix("service ")?;
        let mut s = Service {
            served: 0,
            direct: 0,
            batched: 0,
            enters: 0,
            backend: String::new(),
            slot_waits: 0,
        };
        for kv in rest.split_whitespace() {
            let (k, v) = kv.split_once('=')?;
            match k {
                "served" => s.served = v.parse().ok()?,
                "direct" => s.direct = v.parse().ok()?,
                "batched" => s.batched = v.parse().ok()?,
                "enters" => s.enters = v.parse().ok()?,
                "backend" => s.backend = v.to_owned(),
                "slot_waits" => s.slot_waits = v.parse().ok()?,
                _ => {}
            }
        }
        Some(s)
    }
}

/// One server's run.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Which server.
    pub kind: Kind,
    /// On which runtime.
    pub peer: Peer,
    /// Under which load.
    pub load: Load,
    /// Its figures, or why there are none.
    pub result: Result<Figures, String>,
}

/// Whether `wrk` can be run; the message says how to install it if not.
pub fn wrk_available() -> Result<(), String> {
    match Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => Ok(()),
        Err(_) => Err(
            "wrk is not installed: install it to run the echo and http benches \
                       (Debian/Ubuntu: apt-get install wrk)"
                .into(),
        ),
    }
}

/// Runs every selected (kind, peer) pair one after the other, under `load`.
pub fn run(
    selects: impl Fn(Kind, Peer) -> bool,
    load: &Load,
    mut progress: impl FnMut(&str),
) -> Vec<Outcome> {
    let wrk = wrk_available();
    let mut out = Vec::new();
    for kind in [Kind::Echo, Kind::Http] {
        for peer in Peer::ALL {
            if !selects(kind, peer) {
                continue;
            }
            progress(&format!("{}/{}", kind.name(), peer.name()));
            let result = match (&wrk, kind) {
                (Err(e), Kind::Http) => Err(e.clone()),
                _ => measure(kind, peer, load),
            };
            out.push(Outcome {
                kind,
                peer,
                load: load.clone(),
                result,
            });
        }
    }
    out
}

/// Kills the server child when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn measure(kind: Kind, peer: Peer, load: &Load) -> Result<Figures, String> {
    let exe = child::spindle_exe()
        .ok_or("cannot find the spindle binary (build it, or set SPINDLE_EXE to its path)")?;
    let mut cmd = Command::new(exe);
    cmd.args([child::SUBCOMMAND, "serve", kind.name(), peer.name()])
        .env(crate::servers::STATS_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some((server_cpus, _)) = &load.split {
        // Each runtime sizes itself from the CPUs it may use.
        crate::affinity::confine_command(&mut cmd, server_cpus.clone());
    }
    let mut server = Server(
        cmd.spawn()
            .map_err(|e| format!("cannot start the {} server: {e}", peer.name()))?,
    );
    let stdout = server.0.stdout.take().ok_or("no stdout from the server")?;
    let mut stdout = BufReader::new(stdout);
    let mut line = String::new();
    stdout
        .read_line(&mut line)
        .map_err(|e| format!("server: {e}"))?;
    // Closing its stdin makes a spindle server print its service figures and exit.
    let service = move || {
        if peer != Peer::Spindle {
            return None;
        }
        drop(server.0.stdin.take());
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        drop(server);
        Service::parse(&line)
    };
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| format!("the {} server did not start (said {line:?})", peer.name()))?
        .to_owned();
    if kind == Kind::Echo {
        let addr = addr
            .parse()
            .map_err(|e| format!("server address {addr}: {e}"))?;
        let r = echo_load(addr, load, DURATION);
        let svc = service();
        return r.map(|f| Figures { service: svc, ..f });
    }
    let mut cmd = Command::new("wrk");
    if let Some((_, client_cpus)) = &load.split {
        crate::affinity::confine_command(&mut cmd, client_cpus.clone());
    }
    cmd.args([
        format!("-t{}", load.threads),
        format!("-c{}", load.conns),
        format!("-d{}s", DURATION.as_secs()),
        "--latency".to_owned(),
        format!("http://{addr}/"),
    ]);
    let out = cmd.output().map_err(|e| format!("cannot run wrk: {e}"))?;
    let svc = service();
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "wrk failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    parse_wrk(&text)
        .map(|f| Figures { service: svc, ..f })
        .ok_or_else(|| format!("cannot read wrk's output: {text}"))
}

/// Loads the echo server at `addr` with `load`'s connections for `duration` from its
/// client threads (tokio, one task per connection; `current_thread` for one thread),
/// on its client CPUs if split: each task sends [`ECHO_BYTES`] bytes and reads them
/// back, in a loop, timing each round trip.
pub fn echo_load(
    addr: std::net::SocketAddr,
    load: &Load,
    duration: Duration,
) -> Result<Figures, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let conns = load.conns as usize;
    let client_cpus = load.split.as_ref().map(|(_, c)| c.clone());
    let confine = move || {
        if let Some(c) = &client_cpus {
            crate::affinity::set_affinity(c);
        }
    };
    let rt = if load.threads <= 1 {
        confine();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(load.threads as usize)
            .on_thread_start(confine)
            .enable_all()
            .build()
    }
    .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let end = tokio::time::Instant::now() + duration;
        let tasks: Vec<_> = (0..conns)
            .map(|_| {
                tokio::spawn(async move {
                    let mut s = tokio::net::TcpStream::connect(addr).await?;
                    s.set_nodelay(true)?;
                    let msg = [b'x'; ECHO_BYTES];
                    let mut back = [0u8; ECHO_BYTES];
                    let mut lat = Vec::new();
                    while tokio::time::Instant::now() < end {
                        let t0 = std::time::Instant::now();
                        s.write_all(&msg).await?;
                        s.read_exact(&mut back).await?;
                        lat.push(t0.elapsed().as_nanos() as u64);
                    }
                    Ok::<_, std::io::Error>(lat)
                })
            })
            .collect();
        let t0 = std::time::Instant::now();
        let mut all = Vec::new();
        let mut errors = 0u64;
        for t in tasks {
            match t.await {
                Ok(Ok(l)) => all.extend(l),
                _ => errors += 1,
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        if all.is_empty() {
            return Err("no echo round trip completed".to_owned());
        }
        all.sort_unstable();
        let p99 = all[(all.len() * 99 / 100).min(all.len() - 1)] as f64 / 1e3;
        Ok(Figures {
            rps: all.len() as f64 / secs,
            p99_us: p99,
            requests: all.len() as u64,
            errors,
            service: None,
        })
    })
}

/// Reads requests/s, the 99th percentile, the request count and the errors from wrk's
/// `--latency` output.
pub fn parse_wrk(text: &str) -> Option<Figures> {
    let mut rps = None;
    let mut p99 = None;
    let mut requests = None;
    let mut errors = 0u64;
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if let Some(v) = line.strip_prefix("99%") {
            p99 = duration_us(v.trim());
        } else if line.contains(" requests in ") {
            requests = line.split_whitespace().next().and_then(|n| n.parse().ok());
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            errors += v
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += v.trim().parse::<u64>().unwrap_or(0);
        }
    }
    Some(Figures {
        rps: rps?,
        p99_us: p99?,
        requests: requests?,
        errors,
        service: None,
    })
}

/// `1.23ms` → 1230.0 (µs); also `us` and `s`.
fn duration_us(s: &str) -> Option<f64> {
    let (num, scale) = if let Some(v) = s.strip_suffix("us") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1e3)
    } else if let Some(v) = s.strip_suffix('m') {
        (v, 60e6)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1e6)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|n| n * scale)
}

/// The JSON records: ns per request (1 / throughput), with requests/s, p99 and the
/// ratios to spindle's figures in `extra`.
pub fn records(outcomes: &[Outcome]) -> Vec<Record> {
    outcomes
        .iter()
        .map(|o| {
            let mut extra = Map::new();
            extra.insert(
                "op".into(),
                json!(format!(
                    "{} over loopback to the {} server on {}",
                    match o.kind {
                        Kind::Http => format!(
                            "one request ({}, {} s)",
                            o.load.describe(o.kind),
                            DURATION.as_secs()
                        ),
                        Kind::Echo => format!(
                            "one {ECHO_BYTES}-byte echo round trip ({}, {} s)",
                            o.load.describe(o.kind),
                            DURATION.as_secs()
                        ),
                    },
                    o.kind.name(),
                    o.peer.name()
                )),
            );
            let spindle = outcomes
                .iter()
                .find(|s| s.kind == o.kind && s.peer == Peer::Spindle)
                .and_then(|s| s.result.as_ref().ok());
            let (ns, ops) = match &o.result {
                Ok(f) => {
                    extra.insert("requests_per_s".into(), json!(f.rps));
                    extra.insert("p99_us".into(), json!(f.p99_us));
                    extra.insert("errors".into(), json!(f.errors));
                    if let Some(s) = &f.service {
                        extra.insert("served".into(), json!(s.served));
                        extra.insert("direct".into(), json!(s.direct));
                        extra.insert("batched".into(), json!(s.batched));
                        extra.insert("enters".into(), json!(s.enters));
                        extra.insert("backend".into(), json!(s.backend));
                        extra.insert("slot_waits".into(), json!(s.slot_waits));
                    }
                    if let Some(s) = spindle {
                        extra.insert("rps_vs_spindle".into(), json!(f.rps / s.rps));
                        extra.insert("p99_vs_spindle".into(), json!(f.p99_us / s.p99_us));
                    }
                    (1e9 / f.rps, f.requests)
                }
                Err(e) => {
                    extra.insert("error".into(), json!(e));
                    (f64::NAN, 0)
                }
            };
            Record {
                bench: o.kind.name().into(),
                runtime: o.peer.name().into(),
                ns_per_op: ns,
                ops,
                extra,
            }
        })
        .collect()
}

/// Prints the table of the runs.
pub fn print_table(outcomes: &[Outcome]) {
    if outcomes.is_empty() {
        return;
    }
    let load = &outcomes[0].load;
    println!(
        "\nnetwork servers over loopback, {} s, one fresh server process each (http: {}; echo: {})",
        DURATION.as_secs(),
        load.describe(Kind::Http),
        load.describe(Kind::Echo)
    );
    for o in outcomes {
        match &o.result {
            Ok(f) => println!(
                "{:<6} {:<8} {:>10.0} req/s   p99 {:>8.0} µs   errors {}{}",
                o.kind.name(),
                o.peer.name(),
                f.rps,
                f.p99_us,
                f.errors,
                f.service.as_ref().map_or(String::new(), |s| format!(
                    "   calls: {} served by the service cores{}, {} direct, {} waits for a slot",
                    s.served,
                    if s.batched > 0 {
                        format!(
                            " ({} through {}, {:.1} per enter)",
                            s.batched,
                            s.backend,
                            s.batched as f64 / s.enters.max(1) as f64
                        )
                    } else {
                        format!(" (plain calls, {})", s.backend)
                    },
                    s.direct,
                    s.slot_waits
                ))
            ),
            Err(e) => println!(
                "{:<6} {:<8} not measured: {e}",
                o.kind.name(),
                o.peer.name()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_gives_the_server_the_first_cpus_and_the_client_the_rest() {
        assert_eq!(Load::split(2, &[0, 1, 4, 5]), Ok((vec![0, 1], vec![4, 5])));
        for bad in [0, 4, 9] {
            let e = Load::split(bad, &[0, 1, 4, 5]).unwrap_err();
            assert!(e.contains("N is 1 to 3"), "{e}");
        }
        let load = Load {
            threads: 8,
            conns: 256,
            split: Some((vec![0], vec![1])),
        };
        assert_eq!(
            load.describe(Kind::Http),
            "wrk -t8 -c256; server on CPUs [0], client on [1]"
        );
        assert_eq!(Load::default().describe(Kind::Http), "wrk -t1 -c64");
    }

    #[test]
    fn reads_wrk_output() {
        let text = "Running 3s test @ http://127.0.0.1:1/\n  1 threads and 64 connections\n  Latency Distribution\n     50%  300.00us\n     75%  400.00us\n     90%  500.00us\n     99%    1.25ms\n  123456 requests in 3.00s, 10.00MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\nRequests/sec:  41152.00\nTransfer/sec:      3.33MB\n";
        let f = parse_wrk(text).unwrap();
        assert_eq!(f.rps, 41152.0);
        assert_eq!(f.p99_us, 1250.0);
        assert_eq!(f.requests, 123456);
        assert_eq!(f.errors, 3);
        assert!(parse_wrk("garbage").is_none());
    }
}
