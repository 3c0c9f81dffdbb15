//! The network servers of the `echo` and `http` benches, each written three times:
//! on `spindle::net` (threads on a spindle runtime, system calls offloaded to the
//! hypercore), on tokio (a two-worker `multi_thread` runtime) and on may (two
//! workers). One connection is one thread / task / coroutine.
//!
//! - **echo** writes back whatever it reads.
//! - **http** answers every complete HTTP/1.1 request (headers ending in a blank line;
//!   pipelined requests are answered in one write) with a fixed 13-byte plaintext body.
//!
//! [`serve`] prints `listening on ADDR` on stdout once the socket is bound, then serves
//! until the process is killed. `examples/echo.rs` and `examples/http.rs` call it; so
//! does `spindle bench-child serve` (see [`crate::netbench`]).

use std::io::Write as _;

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Echo every byte back.
    Echo,
    /// Answer HTTP/1.1 requests with "Hello, World!".
    Http,
}

impl Kind {
    /// `echo` or `http`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Echo => "echo",
            Kind::Http => "http",
        }
    }

    /// The kind named `s`.
    pub fn parse(s: &str) -> Option<Kind> {
        [Kind::Echo, Kind::Http].into_iter().find(|k| k.name() == s)
    }
}

/// Which runtime a server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// `spindle::net` on the default spindle runtime.
    Spindle,
    /// tokio, `multi_thread` with two workers.
    Tokio,
    /// may with two workers.
    May,
}

impl Peer {
    /// Every peer, in report order.
    pub const ALL: [Peer; 3] = [Peer::Spindle, Peer::Tokio, Peer::May];

    /// `spindle`, `tokio` or `may`.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Spindle => "spindle",
            Peer::Tokio => "tokio",
            Peer::May => "may",
        }
    }

    /// The peer named `s`.
    pub fn parse(s: &str) -> Option<Peer> {
        Peer::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// Idle spin of the spindle server's cores.
pub const SERVER_IDLE_SPIN: std::time::Duration = std::time::Duration::from_micros(5);

/// The response of the http server.
pub const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";

/// Counts the complete requests at the start of `buf` (each ends with a blank line)
/// and returns `(count, bytes they take)`.
pub fn complete_requests(buf: &[u8]) -> (usize, usize) {
    let (mut count, mut used) = (0, 0);
    while let Some(end) = buf[used..].windows(4).position(|w| w == b"\r\n\r\n") {
        used += end + 4;
        count += 1;
    }
    (count, used)
}

/// The connection state of the http server: bytes of an incomplete request, and the
/// responses to write.
#[derive(Default)]
struct HttpConn {
    pending: Vec<u8>,
    out: Vec<u8>,
}

impl HttpConn {
    /// Takes `data` just read; returns the responses to write (maybe none).
    fn feed(&mut self, data: &[u8]) -> &[u8] {
        self.pending.extend_from_slice(data);
        let (n, used) = complete_requests(&self.pending);
        self.pending.drain(..used);
        self.out.clear();
        for _ in 0..n {
            self.out.extend_from_slice(RESPONSE);
        }
        &self.out
    }
}

/// With this variable set, a spindle server prints its system-call service's figures
/// (`service served=N direct=N batched=N enters=N backend=NAME`) on stdout when its
/// stdin is closed, then exits: the bench's way to read them.
pub const STATS_ENV: &str = "SPINDLE_BENCH_SERVICE_STATS";

/// Starts an OS thread that waits for stdin's end, prints the service's figures and
/// ends the process.
fn report_at_eof(handle: spindle::Handle) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        if let Some(s) = spindle::sys::service_stats(&handle) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "service served={} direct={} batched={} enters={} backend={} slot_waits={}",
                s.served,
                s.direct_failed,
                s.batched,
                s.enters,
                s.backend.name(),
                s.slot_waits
            );
            let _ = out.flush();
        }
        std::process::exit(0);
    });
}

fn announce(addr: std::net::SocketAddr) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();
}

/// Runs server `kind` on `peer`, bound to `addr` (port 0 picks one), until killed.
///
/// # Errors
///
/// A message if the address cannot be bound or the runtime cannot start.
pub fn serve(kind: Kind, peer: Peer, addr: &str) -> Result<(), String> {
    serve_with(kind, peer, addr, Box::new(announce))
}

/// Called with the bound address once the server listens.
pub type OnBound = Box<dyn FnOnce(std::net::SocketAddr) + Send>;

/// [`serve`], calling `on_bound` instead of printing the address.
///
/// # Errors
///
/// As for [`serve`].
pub fn serve_with(kind: Kind, peer: Peer, addr: &str, on_bound: OnBound) -> Result<(), String> {
    match peer {
        Peer::Spindle => on_spindle(kind, addr, on_bound),
        Peer::Tokio => on_tokio(kind, addr, on_bound),
        Peer::May => on_may(kind, addr, on_bound),
    }
}

fn on_spindle(kind: Kind, addr: &str, on_bound: OnBound) -> Result<(), String> {
    use std::io::{Read, Write};
    let addr = addr.to_owned();
    // The default runtime (CPUs - 1 workers, the hypercore on the last CPU) with a
    // short idle spin: on a small machine the load generator needs the CPU time a
    // 50 µs spin would take (measured: ~15% more requests/s with 5 µs on 2 vCPUs).
    let rt = spindle::Runtime::builder()
        .idle_spin(SERVER_IDLE_SPIN)
        .build()
        .map_err(|e| e.to_string())?;
    if std::env::var_os(STATS_ENV).is_some() {
        report_at_eof(rt.handle().clone());
    }
    rt.block_on(move || {
        let l = spindle::net::TcpListener::bind(&addr).map_err(|e| format!("bind {addr}: {e}"))?;
        on_bound(l.local_addr().map_err(|e| e.to_string())?);
        loop {
            let Ok((mut s, _)) = l.accept() else { continue };
            let _ = s.set_nodelay(true);
            spindle::spawn(move || {
                let mut buf = vec![0u8; 4096];
                let mut http = HttpConn::default();
                loop {
                    let n = match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let out = match kind {
                        Kind::Echo => &buf[..n],
                        Kind::Http => http.feed(&buf[..n]),
                    };
                    if !out.is_empty() && s.write_all(out).is_err() {
                        return;
                    }
                }
            });
        }
    })
}

fn on_tokio(kind: Kind, addr: &str, on_bound: OnBound) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Tokio's default: one worker per CPU the process may use.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_io()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("bind {addr}: {e}"))?;
        on_bound(l.local_addr().map_err(|e| e.to_string())?);
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut http = HttpConn::default();
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let out = match kind {
                        Kind::Echo => &buf[..n],
                        Kind::Http => http.feed(&buf[..n]),
                    };
                    if !out.is_empty() && s.write_all(out).await.is_err() {
                        return;
                    }
                }
            });
        }
    })
}

fn on_may(kind: Kind, addr: &str, on_bound: OnBound) -> Result<(), String> {
    use std::io::{Read, Write};
    // One worker per CPU the process may use, as tokio's default.
    crate::workloads::on_may::init_with(
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
    );
    let l = may::net::TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    on_bound(l.local_addr().map_err(|e| e.to_string())?);
    for s in l.incoming() {
        let Ok(mut s) = s else { continue };
        let _ = s.set_nodelay(true);
        let conn = move || {
            let mut buf = vec![0u8; 4096];
            let mut http = HttpConn::default();
            loop {
                let n = match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let out = match kind {
                    Kind::Echo => &buf[..n],
                    Kind::Http => http.feed(&buf[..n]),
                };
                if !out.is_empty() && s.write_all(out).is_err() {
                    return;
                }
            }
        };
        // may marks spawning unsafe: a coroutine may move between worker threads (no
        // thread-local may be held across a yield) and a stack overflow is not caught.
        // SAFETY: the connection loop holds no thread-local and needs little stack.
        drop(unsafe { may::coroutine::spawn(conn) });
    }
    Ok(())
}

/// The body of `examples/echo.rs` and `examples/http.rs`: `[spindle|tokio|may]
/// [ADDR]` from the command line (default `spindle 127.0.0.1:8080`).
pub fn example_main(kind: Kind) -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let peer = args.first().map_or("spindle", String::as_str);
    let addr = args.get(1).map_or("127.0.0.1:8080", String::as_str);
    let Some(peer) = Peer::parse(peer) else {
        eprintln!("usage: {} [spindle|tokio|may] [ADDR]", kind.name());
        return std::process::ExitCode::FAILURE;
    };
    match serve(kind, peer, addr) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: {e}", kind.name());
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_across_reads() {
        assert_eq!(
            complete_requests(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            (1, 27)
        );
        assert_eq!(
            complete_requests(b"GET / HTTP/1.1\r\n\r\nGET / HT"),
            (1, 18)
        );
        let mut c = HttpConn::default();
        assert!(c.feed(b"GET / HTTP/1.1\r\nHo").is_empty());
        assert_eq!(
            c.feed(b"st: x\r\n\r\nGET / HTTP/1.1\r\n\r\n").len(),
            2 * RESPONSE.len()
        );
        assert!(c.pending.is_empty());
    }

    /// The spindle http server answers pipelined requests over loopback.
    #[test]
    fn spindle_http_server_answers() {
        use std::io::{Read, Write};
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let on_bound: OnBound = Box::new(move |a| tx.send(a).unwrap());
            let _ = serve_with(Kind::Http, Peer::Spindle, "127.0.0.1:0", on_bound);
        });
        let addr = rx.recv().unwrap();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n\r\n")
            .unwrap();
        let mut got = vec![0u8; 2 * RESPONSE.len()];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got[..RESPONSE.len()], RESPONSE);
        assert_eq!(&got[RESPONSE.len()..], RESPONSE);
    }
}
