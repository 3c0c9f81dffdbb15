//! A TCP chat room served by spindle threads, in plain blocking style, with the parts
//! that Go and tokio users reach for:
//!
//! - each client is a thread of a `JoinSet`, its reader a scoped thread that borrows
//!   the client's stream (`spindle::scope`);
//! - lines go to every client through a `sync::broadcast` ring; a client that falls
//!   behind is told how many lines it missed;
//! - a client's writer waits on the room, its reader's `oneshot` and the server's
//!   `CancelToken` at once (`select!`);
//! - the accepting thread is stopped by `JoinHandle::cancel` while it waits in
//!   `accept`, and its handle is awaited as a future (`block_on`);
//! - an admin socket (`net::UnixListener`) takes `stats` and `shutdown`.
//!
//! ```text
//! cargo run --release -p spindle --example chat            # serve 127.0.0.1:7878
//! cargo run --release -p spindle --example chat -- --demo  # serve, run 4 clients, shut down
//! ```
//!
//! Talk to it with `nc 127.0.0.1 7878`; `echo stats | nc -U <admin path>` (printed at
//! start) reports, `echo shutdown | nc -U <admin path>` stops it.

use std::io::{BufRead, BufReader, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::time::{Duration, Instant};

use spindle::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use spindle::sync::{Barrier, broadcast, mpsc, oneshot};
use spindle::{CancelToken, JoinSet};

/// Lines the room keeps for clients that read slowly.
const ROOM: usize = 256;

/// What the admin socket asks the main loop, with where the answer goes.
type AdminCmd = (String, oneshot::Sender<String>);

#[spindle::main]
fn main() {
    let demo = std::env::args().any(|a| a == "--demo");
    let listener = TcpListener::bind(if demo {
        "127.0.0.1:0"
    } else {
        "127.0.0.1:7878"
    })
    .expect("bind the chat port");
    let addr = listener.local_addr().unwrap();
    let admin_path = std::env::temp_dir().join(format!("spindle-chat-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&admin_path);
    let admin = UnixListener::bind(&admin_path).expect("bind the admin socket");
    println!("chat on {addr}, admin on {}", admin_path.display());

    let (room, _) = broadcast::channel::<Arc<str>>(ROOM);
    let stop = CancelToken::new();
    let (conn_tx, conns) = mpsc::channel::<TcpStream>();
    let acceptor = spindle::spawn(move || {
        loop {
            let (s, _) = listener.accept().expect("accept");
            conn_tx.send(s).expect("the main loop takes connections");
        }
    });
    let (cmd_tx, cmds) = mpsc::channel::<AdminCmd>();
    let admin_thread = spindle::spawn(move || serve_admin(admin, cmd_tx));
    let driver = demo.then(|| {
        let path = admin_path.clone();
        spindle::spawn(move || run_demo(addr, &path))
    });

    let started = Instant::now();
    let mut clients: JoinSet<String> = JoinSet::new();
    let mut served = 0usize;
    loop {
        spindle::select! {
            recv(conns) -> c => {
                let (stream, room, stop) = (c.unwrap(), room.clone(), stop.clone());
                served += 1;
                clients.spawn(move || session(stream, room, stop));
            }
            recv(cmds) -> cmd => {
                let (cmd, reply) = cmd.unwrap();
                let answer = match cmd.trim() {
                    "stats" => format!(
                        "{} clients now, {served} served, up {:?}",
                        clients.len(),
                        started.elapsed()
                    ),
                    "shutdown" => {
                        stop.cancel();
                        "shutting down".to_string()
                    }
                    other => format!("unknown command {other:?}: try stats or shutdown"),
                };
                let _ = reply.send(answer);
            }
            recv(stop) -> () => break,
            default(Duration::from_secs(1)) => {
                // Finished sessions leave the set as they end.
                while let Some(r) = clients.try_join_next() {
                    println!("left: {}", r.unwrap_or_else(|_| "a client that panicked".into()));
                }
            }
        }
    }

    // The acceptor waits in `accept`: cancel it there, and await its handle.
    acceptor.cancel();
    let stopped = spindle::block_on(acceptor);
    let cancelled = stopped.is_err_and(|p| p.is::<spindle::Cancelled>());
    admin_thread.cancel();
    let _ = admin_thread.join();
    // Sessions saw the token; wait for each, in the order they end.
    for r in clients.join_all() {
        println!(
            "left: {}",
            r.unwrap_or_else(|_| "a client that panicked".into())
        );
    }
    let _ = std::fs::remove_file(&admin_path);
    if let Some(d) = driver {
        println!("{}", d.join().unwrap());
    }
    println!("acceptor cancelled in accept: {cancelled}; {served} clients served");
}

/// One client: a scoped reader thread posts its lines to the room; this thread writes
/// the room's lines to the client until the client leaves or the server stops.
fn session(stream: TcpStream, room: broadcast::Sender<Arc<str>>, stop: CancelToken) -> String {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let inbox = room.subscribe();
    let (left_tx, left) = oneshot::channel::<()>();
    let mut writer = stream.try_clone().expect("dup the stream");
    let _ = writeln!(writer, "welcome {peer}");
    let (mut sent, mut missed) = (0u64, 0u64);
    spindle::scope(|s| {
        let (stream, room, peer) = (&stream, &room, &peer);
        s.spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let _ = room.send(format!("{peer}: {line}").into());
            }
            let _ = left_tx.send(());
        });
        loop {
            spindle::select! {
                recv(inbox) -> m => match m {
                    Ok(line) => {
                        if writeln!(writer, "{line}").is_err() {
                            break;
                        }
                        sent += 1;
                    }
                    Err(broadcast::RecvError::Lagged(n)) => {
                        missed += n;
                        let _ = writeln!(writer, "(you missed {n} lines)");
                    }
                    Err(broadcast::RecvError::Closed) => break,
                },
                recv(left) -> _ => break,
                recv(stop) -> () => {
                    let _ = writeln!(writer, "server stopping");
                    break;
                }
            }
        }
        // Ends the reader's wait in `read` (the scope joins it before returning).
        let _ = stream.shutdown(Shutdown::Both);
    });
    format!("{peer} ({sent} lines sent to it, {missed} missed)")
}

/// The admin socket: one command per connection, answered by the main loop.
fn serve_admin(admin: UnixListener, cmds: mpsc::Sender<AdminCmd>) {
    loop {
        let Ok((mut conn, _)) = admin.accept() else {
            return;
        };
        let mut line = String::new();
        if BufReader::new(&conn).read_line(&mut line).is_err() {
            continue;
        }
        let (tx, rx) = oneshot::channel();
        if cmds.send((line, tx)).is_err() {
            return;
        }
        if let Ok(answer) = rx.recv() {
            let _ = writeln!(conn, "{answer}");
        }
    }
}

/// Asks the admin socket `cmd`; its answer.
fn admin(path: &std::path::Path, cmd: &str) -> String {
    let mut c = UnixStream::connect(path).expect("connect to the admin socket");
    writeln!(c, "{cmd}").unwrap();
    let mut answer = String::new();
    BufReader::new(&c).read_line(&mut answer).unwrap();
    answer.trim().to_string()
}

/// Four clients each say three lines and read all twelve; then the admin socket asks
/// for stats and a shutdown. Returns what happened, for the transcript.
fn run_demo(addr: std::net::SocketAddr, admin_path: &std::path::Path) -> String {
    const CLIENTS: usize = 4;
    const LINES: usize = 3;
    let t = Instant::now();
    let all_in = Arc::new(Barrier::new(CLIENTS));
    let mut set = JoinSet::new();
    for i in 0..CLIENTS {
        let all_in = all_in.clone();
        set.spawn(move || {
            let s = TcpStream::connect(addr).expect("connect");
            let mut lines = BufReader::new(&s).lines();
            let welcome = lines.next().unwrap().unwrap();
            assert!(welcome.starts_with("welcome"), "{welcome}");
            // Everyone subscribed before anyone speaks.
            all_in.wait();
            for n in 0..LINES {
                writeln!(&s, "client {i} says {n}").unwrap();
            }
            (0..CLIENTS * LINES)
                .map(|_| lines.next().unwrap().unwrap())
                .filter(|l| l.contains(" says "))
                .count()
        });
    }
    let heard: Vec<usize> = set.join_all().into_iter().map(Result::unwrap).collect();
    assert!(
        heard.iter().all(|&h| h == CLIENTS * LINES),
        "a client missed lines: {heard:?}"
    );
    let stats = admin(admin_path, "stats");
    let bye = admin(admin_path, "shutdown");
    format!(
        "demo: {CLIENTS} clients each heard {heard:?} of {} lines in {:?}; stats: {stats}; shutdown: {bye}",
        CLIENTS * LINES,
        t.elapsed()
    )
}
