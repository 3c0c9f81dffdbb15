//! spindle::net and spindle::fs: in a runtime (offloaded, waits on the poller), in a
//! runtime without a hypercore, and on a plain OS thread.

mod common;

use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::watchdog;
use spindle::Runtime;
use spindle::net::{TcpListener, TcpStream, UdpSocket};

/// An echo server with `clients` clients, each sending `rounds` messages.
fn echo(clients: usize, rounds: usize) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = spindle::spawn(move || {
        let conns: Vec<_> = (0..clients)
            .map(|_| {
                let (mut s, peer) = listener.accept().unwrap();
                assert!(peer.ip().is_loopback());
                spindle::spawn(move || {
                    let mut buf = [0u8; 64];
                    loop {
                        let n = s.read(&mut buf).unwrap();
                        if n == 0 {
                            return;
                        }
                        s.write_all(&buf[..n]).unwrap();
                    }
                })
            })
            .collect();
        for c in conns {
            c.join().unwrap();
        }
    });
    let cs: Vec<_> = (0..clients)
        .map(|i| {
            spindle::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_nodelay(true).unwrap();
                assert!(s.nodelay().unwrap());
                assert_eq!(s.peer_addr().unwrap(), addr);
                for r in 0..rounds {
                    let msg = format!("client {i} round {r:04}");
                    s.write_all(msg.as_bytes()).unwrap();
                    let mut back = vec![0u8; msg.len()];
                    s.read_exact(&mut back).unwrap();
                    assert_eq!(back, msg.as_bytes());
                }
            })
        })
        .collect();
    for c in cs {
        c.join().unwrap();
    }
    server.join().unwrap();
}

#[test]
fn tcp_echo_on_a_runtime() {
    let done = watchdog("tcp echo", 120);
    let rt = Runtime::builder().cores(2).build().unwrap();
    rt.block_on(|| echo(16, 100));
    let s = spindle::sys::service_stats(&rt).unwrap();
    assert!(s.served > 0, "socket calls were offloaded: {s:?}");
    done.store(true, Ordering::Relaxed);
}

#[test]
fn tcp_echo_without_hypercore() {
    let done = watchdog("tcp echo, no hypercore", 120);
    let rt = Runtime::builder()
        .cores(2)
        .hypercore(false)
        .build()
        .unwrap();
    rt.block_on(|| echo(8, 50));
    done.store(true, Ordering::Relaxed);
}

#[test]
fn tcp_on_os_threads() {
    let done = watchdog("tcp on OS threads", 60);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf).unwrap();
    });
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(b"ping").unwrap();
    let mut b = [0u8; 4];
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"ping");
    t.join().unwrap();
    done.store(true, Ordering::Relaxed);
}

#[test]
fn timeouts_and_refusals() {
    let done = watchdog("timeouts", 60);
    let check = || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let c = TcpStream::connect(addr).unwrap();
        let (s, _) = listener.accept().unwrap();
        // Nothing is sent: the read times out.
        c.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        assert_eq!(c.read_timeout(), Some(Duration::from_millis(20)));
        let mut buf = [0u8; 8];
        assert_eq!((&c).read(&mut buf).unwrap_err().kind(), ErrorKind::TimedOut);
        // A zero timeout is refused, as in std.
        let e = c.set_read_timeout(Some(Duration::ZERO)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        // The peer closes: end of stream.
        drop(s);
        c.set_read_timeout(None).unwrap();
        assert_eq!((&c).read(&mut buf).unwrap(), 0);
        // Accept with a timeout and nobody connecting.
        listener
            .set_accept_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        assert_eq!(listener.accept().unwrap_err().kind(), ErrorKind::TimedOut);
        // A closed port refuses.
        drop(listener);
        let e = TcpStream::connect(addr).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
    };
    check();
    let rt = Runtime::builder().cores(1).build().unwrap();
    rt.block_on(check);
    done.store(true, Ordering::Relaxed);
}

#[test]
fn udp_round_trip() {
    let done = watchdog("udp", 60);
    let check = || {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (aa, ba) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let echo = spindle::spawn(move || {
            let mut buf = [0u8; 32];
            let (n, from) = b.recv_from(&mut buf).unwrap();
            assert_eq!(from, aa);
            b.send_to(&buf[..n], from).unwrap();
        });
        a.send_to(b"datagram", ba).unwrap();
        let mut buf = [0u8; 32];
        let (n, from) = a.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"datagram"[..], ba));
        echo.join().unwrap();
        a.connect(ba).unwrap();
        assert_eq!(a.peer_addr().unwrap(), ba);
        a.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        assert_eq!(a.recv(&mut buf).unwrap_err().kind(), ErrorKind::TimedOut);
    };
    let rt = Runtime::builder().cores(2).build().unwrap();
    rt.block_on(check);
    done.store(true, Ordering::Relaxed);
}

fn file_ops(tag: &str) {
    let path = std::env::temp_dir().join(format!("spindle-fs-{tag}-{}", std::process::id()));
    let mut f = spindle::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    f.write_all(b"hello, offloaded world").unwrap();
    assert_eq!(f.seek(SeekFrom::Start(7)).unwrap(), 7);
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "offloaded world");
    let mut four = [0u8; 4];
    assert_eq!(f.read_at(&mut four, 0).unwrap(), 4);
    assert_eq!(&four, b"hell");
    f.write_at(b"J", 0).unwrap();
    let m = f.metadata().unwrap();
    assert_eq!(m.len(), 22);
    assert!(m.is_file() && !m.is_dir());
    f.set_len(5).unwrap();
    f.sync_all().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"Jello");
    let e = spindle::fs::File::options().open(&path).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("read(true)"), "{e}");
    let e = spindle::fs::File::open(path.with_extension("missing")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn files_on_a_runtime_and_off() {
    let done = watchdog("fs", 60);
    file_ops("os");
    let rt = Runtime::builder().cores(1).build().unwrap();
    rt.block_on(|| file_ops("rt"));
    let rt = Runtime::builder()
        .cores(1)
        .hypercore(false)
        .build()
        .unwrap();
    rt.block_on(|| file_ops("nohyper"));
    done.store(true, Ordering::Relaxed);
}
