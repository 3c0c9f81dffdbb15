//! Unix-domain sockets, sockets converted from `std` (blocking or not, in the right
//! state or not), the descriptor traits, the std setters, and host names resolved
//! off the core.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::with_watchdog;
use spindle::net::{
    SocketStateError, TcpListener, TcpStream, UdpSocket, UnixDatagram, UnixListener, UnixStream,
};

fn sock_path(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("spindle-test-{}-{name}.sock", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

#[spindle::test(cores = 2)]
fn unix_streams_echo_through_a_listener() {
    with_watchdog("unix echo", 30, || {
        let path = sock_path("echo");
        let listener = UnixListener::bind(&path).unwrap();
        assert_eq!(
            listener.local_addr().unwrap().as_pathname(),
            Some(path.as_path())
        );
        let server = spindle::spawn(move || {
            for _ in 0..3 {
                let (mut s, peer) = listener.accept().unwrap();
                assert!(peer.is_unnamed());
                let mut buf = [0u8; 16];
                let n = s.read(&mut buf).unwrap();
                s.write_all(&buf[..n]).unwrap();
            }
        });
        for i in 0..3u8 {
            let mut c = UnixStream::connect(&path).unwrap();
            assert_eq!(c.peer_addr().unwrap().as_pathname(), Some(path.as_path()));
            c.write_all(&[i; 5]).unwrap();
            let mut back = [0u8; 5];
            c.read_exact(&mut back).unwrap();
            assert_eq!(back, [i; 5]);
        }
        server.join().unwrap();
        std::fs::remove_file(&path).unwrap();
    });
}

#[spindle::test(cores = 1)]
fn a_cloned_unix_stream_reads_while_another_thread_writes() {
    with_watchdog("unix pair", 30, || {
        let (a, b) = UnixStream::pair().unwrap();
        let a2 = a.try_clone().unwrap();
        let reader = spindle::spawn(move || {
            let mut got = Vec::new();
            (&a2).read_to_end(&mut got).unwrap();
            got
        });
        (&b).write_all(b"through the pair").unwrap();
        b.shutdown(Shutdown::Write).unwrap();
        assert_eq!(reader.join().unwrap(), b"through the pair");
        drop(a);
    });
}

#[spindle::test(cores = 1)]
fn unix_datagrams_carry_their_sender() {
    let (pa, pb) = (sock_path("dg-a"), sock_path("dg-b"));
    let a = UnixDatagram::bind(&pa).unwrap();
    let b = UnixDatagram::bind(&pb).unwrap();
    let receiver = spindle::spawn(move || {
        let mut buf = [0u8; 16];
        let (n, from) = b.recv_from(&mut buf).unwrap();
        (buf[..n].to_vec(), from.as_pathname().map(PathBuf::from))
    });
    spindle::sleep(Duration::from_millis(2));
    a.send_to(b"datagram", &pb).unwrap();
    let (data, from) = receiver.join().unwrap();
    assert_eq!(data, b"datagram");
    assert_eq!(from.as_deref(), Some(pa.as_path()));
    let (x, y) = UnixDatagram::pair().unwrap();
    x.send(b"paired").unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(y.recv(&mut buf).unwrap(), 6);
    let u = UnixDatagram::unbound().unwrap();
    u.connect(&pa).unwrap();
    u.send(b"connected").unwrap();
    std::fs::remove_file(&pa).unwrap();
    std::fs::remove_file(&pb).unwrap();
}

/// A blocking std stream converted on a one-core runtime: its read parks the reader,
/// so the core goes on running the writer (a blocking read would hang the core).
#[spindle::test(cores = 1)]
fn a_blocking_std_socket_becomes_non_blocking() {
    with_watchdog("converted std stream", 30, || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let client = std::net::TcpStream::connect(addr).unwrap();
        let (server_side, _) = l.accept().unwrap();
        let ours = TcpStream::from(server_side);
        let reader = spindle::spawn(move || {
            let mut buf = [0u8; 4];
            (&ours).read_exact(&mut buf).unwrap();
            buf
        });
        let wrote = Arc::new(AtomicBool::new(false));
        let w = wrote.clone();
        let writer = spindle::spawn(move || {
            let mut c = TcpStream::from(client);
            c.write_all(b"abcd").unwrap();
            w.store(true, Ordering::SeqCst);
        });
        writer.join().unwrap();
        assert!(wrote.load(Ordering::SeqCst));
        assert_eq!(&reader.join().unwrap(), b"abcd");
        // Already non-blocking converts too.
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        u.set_nonblocking(true).unwrap();
        let u = UdpSocket::from(u);
        u.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        let e = u.recv(&mut [0u8; 4]).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    });
}

#[spindle::test(cores = 1)]
fn a_std_socket_in_the_wrong_state_fails_with_a_typed_error() {
    // A listening socket used as a stream.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // SAFETY: the descriptor comes from a socket we own and give up here.
    let not_a_stream = unsafe { TcpStream::from_raw_fd(l.into_raw_fd()) };
    let e = (&not_a_stream).read(&mut [0u8; 4]).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotConnected);
    let inner = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<SocketStateError>());
    assert_eq!(inner.map(|s| s.needed), Some("a connected stream"), "{e}");
    assert!(e.to_string().contains("convert"), "{e}");
    // A connected stream used as a listener.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let s = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    // SAFETY: as above.
    let not_a_listener = unsafe { TcpListener::from_raw_fd(s.into_raw_fd()) };
    let e = not_a_listener.accept().unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(
        e.get_ref().is_some_and(|i| i.is::<SocketStateError>()),
        "{e}"
    );
    // A Unix listener from a connected Unix stream.
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    let e = UnixListener::from(std::os::unix::net::UnixListener::from(OwnedFd::from(a)))
        .accept()
        .unwrap_err();
    assert!(
        e.get_ref().is_some_and(|i| i.is::<SocketStateError>()),
        "{e}"
    );
}

#[spindle::test(cores = 2)]
fn tcp_streams_have_the_std_setters_and_descriptor_traits() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let accepting = spindle::spawn(move || l.accept().unwrap());
    let c = TcpStream::connect(addr).unwrap();
    let (s, peer) = accepting.join().unwrap();
    assert_eq!(c.peer_addr().unwrap(), addr);
    assert_eq!(peer, c.local_addr().unwrap());
    c.set_ttl(42).unwrap();
    assert_eq!(c.ttl().unwrap(), 42);
    c.set_nodelay(true).unwrap();
    assert!(c.nodelay().unwrap());
    c.set_linger(Some(Duration::from_secs(1))).unwrap();
    assert_eq!(c.linger().unwrap(), Some(Duration::from_secs(1)));
    assert!(c.take_error().unwrap().is_none());
    // A clone writes; the original reads on the other side.
    let c2 = c.try_clone().unwrap();
    (&c2).write_all(b"xy").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    (&s).read_to_end(&mut got).unwrap();
    assert_eq!(got, b"xy");
    // Descriptor traits round-trip.
    assert_eq!(s.as_fd().as_raw_fd(), s.as_raw_fd());
    let fd = s.into_raw_fd();
    // SAFETY: `fd` was just given up by the stream.
    let s = unsafe { TcpStream::from_raw_fd(fd) };
    assert_eq!(s.peer_addr().unwrap(), c.local_addr().unwrap());
    let owned: OwnedFd = s.into();
    assert_eq!(owned.as_raw_fd(), fd);
    let f = spindle::fs::File::from(std::fs::File::open("/proc/self/stat").unwrap());
    let raw = f.into_raw_fd();
    // SAFETY: as above.
    let mut f = unsafe { spindle::fs::File::from_raw_fd(raw) };
    let mut text = String::new();
    f.read_to_string(&mut text).unwrap();
    assert!(!text.is_empty());
}

/// The OS threads of this process named like the blocking pool's.
fn pool_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        // `comm` keeps 15 bytes of the name "spindle-blocking".
        .filter(|c| c.trim() == "spindle-blockin")
        .count()
}

/// In a child process (no other test's pool): the blocking pool has no thread until
/// a name is resolved, and one after.
#[test]
fn host_names_resolve_on_the_blocking_pool() {
    if common::child_case().as_deref() == Some("resolve") {
        spindle::Runtime::builder()
            .cores(1)
            .build()
            .unwrap()
            .block_on(|| {
                assert_eq!(pool_threads(), 0, "the pool ran before any resolution");
                let l = TcpListener::bind("localhost:0").unwrap();
                assert!(pool_threads() >= 1, "the name was resolved on the core");
                drop(l);
                println!("child done");
            });
        return;
    }
    if common::child_case().is_some() {
        return;
    }
    let out = common::run_child("host_names_resolve_on_the_blocking_pool", "resolve", |_| {});
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("child done"), "{out:?}");
}

#[spindle::test(cores = 1)]
fn host_names_resolve() {
    let l = TcpListener::bind("localhost:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let accepting = spindle::spawn(move || l.accept().map(|_| ()));
    let c = TcpStream::connect(("localhost", port)).unwrap();
    accepting.join().unwrap().unwrap();
    drop(c);
    let e = TcpStream::connect("no-such-host.invalid:80").unwrap_err();
    assert!(!e.to_string().is_empty());
}

/// More connects than the listener's backlog holds: the ones that find it full
/// (`EAGAIN` on a Unix socket: nothing in progress) wait and try again, and connect
/// once the listener accepts.
#[spindle::test(cores = 2)]
fn unix_connects_beyond_the_backlog_wait_for_room() {
    with_watchdog("unix backlog", 60, || {
        const N: usize = 1100;
        let path = sock_path("backlog");
        let listener = UnixListener::bind(&path).unwrap();
        let p = path.clone();
        let connector = spindle::spawn(move || {
            (0..N)
                .map(|i| UnixStream::connect(&p).unwrap_or_else(|e| panic!("connect {i}: {e}")))
                .collect::<Vec<_>>()
        });
        // Accept only once the connector has filled the backlog (1,024) and waits.
        spindle::sleep(Duration::from_millis(300));
        let accepted: Vec<_> = (0..N).map(|_| listener.accept().unwrap().0).collect();
        let streams = connector.join().unwrap();
        assert_eq!((accepted.len(), streams.len()), (N, N));
        std::fs::remove_file(&path).unwrap();
    });
}
