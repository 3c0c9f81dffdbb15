//! [`TcpListener`] and [`TcpStream`].

use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Type};

use super::resolve::each_addr;
use super::sock::{BACKLOG, Sock, ip};

/// A TCP socket listening for connections.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use spindle::net::{TcpListener, TcpStream};
///
/// spindle::run(|| {
///     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
///     let addr = listener.local_addr().unwrap();
///     let server = spindle::spawn(move || {
///         let (mut s, peer) = listener.accept().unwrap();
///         assert_eq!(s.peer_addr().unwrap(), peer);
///         let mut buf = [0; 5];
///         s.read_exact(&mut buf).unwrap();
///         s.write_all(&buf).unwrap();
///     });
///     let mut c = TcpStream::connect(addr).unwrap();
///     c.write_all(b"hello").unwrap();
///     let mut back = [0; 5];
///     c.read_exact(&mut back).unwrap();
///     assert_eq!(&back, b"hello");
///     server.join().unwrap();
/// });
/// ```
pub struct TcpListener {
    pub(super) sock: Sock,
}

impl TcpListener {
    /// Binds to `addr` (with `SO_REUSEADDR`) and listens. Port 0 picks a free port
    /// ([`TcpListener::local_addr`] tells which). A host name is resolved on the
    /// blocking pool, never on the core.
    pub fn bind(addr: impl ToSocketAddrs + Send) -> io::Result<TcpListener> {
        each_addr(addr, |a| {
            let sock = Sock::new(Domain::for_address(*a), Type::STREAM)?;
            sock.socket.set_reuse_address(true)?;
            sock.socket.bind(&SockAddr::from(*a))?;
            sock.socket.listen(BACKLOG)?;
            Ok(TcpListener { sock })
        })
    }

    /// Waits for a connection and returns it with the peer's address.
    ///
    /// # Errors
    ///
    /// A socket that is not listening (a connected std stream converted into a
    /// listener) fails with [`SocketStateError`](super::SocketStateError).
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (sock, addr) = self.sock.accept()?;
        Ok((TcpStream { sock }, ip(Ok(addr))?))
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        ip(self.sock.socket.local_addr())
    }

    /// Bounds how long [`TcpListener::accept`] waits (`ErrorKind::TimedOut` after).
    /// `None`: forever. A zero duration is an `InvalidInput` error.
    pub fn set_accept_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        Sock::set_timeout(&self.sock.read_timeout, d)
    }

    /// Sets the IP time-to-live of the connections it accepts.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.sock.socket.set_ttl_v4(ttl)
    }

    /// The IP time-to-live.
    pub fn ttl(&self) -> io::Result<u32> {
        self.sock.socket.ttl_v4()
    }
}

/// A TCP connection.
pub struct TcpStream {
    pub(super) sock: Sock,
}

impl TcpStream {
    /// Connects to `addr` (each address it resolves to, in turn). A host name is
    /// resolved on the blocking pool, never on the core.
    pub fn connect(addr: impl ToSocketAddrs + Send) -> io::Result<TcpStream> {
        each_addr(addr, |a| TcpStream::connect_until(a, None))
    }

    /// Connects to `addr`, giving up after `timeout` (`ErrorKind::TimedOut`). A zero
    /// timeout is an `InvalidInput` error.
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        if timeout.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "spindle::net: a zero connect timeout is not allowed: use TcpStream::connect for no timeout",
            ));
        }
        TcpStream::connect_until(addr, Instant::now().checked_add(timeout))
    }

    fn connect_until(addr: &SocketAddr, deadline: Option<Instant>) -> io::Result<TcpStream> {
        let sock = Sock::new(Domain::for_address(*addr), Type::STREAM)?;
        sock.connect(&SockAddr::from(*addr), deadline)?;
        Ok(TcpStream { sock })
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        ip(self.sock.socket.peer_addr())
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        ip(self.sock.socket.local_addr())
    }

    /// Sets `TCP_NODELAY` (no Nagle delay for small writes).
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.sock.socket.set_tcp_nodelay(on)
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.sock.socket.tcp_nodelay()
    }

    /// Sets the IP time-to-live.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.sock.socket.set_ttl_v4(ttl)
    }

    /// The IP time-to-live.
    pub fn ttl(&self) -> io::Result<u32> {
        self.sock.socket.ttl_v4()
    }

    /// Sets `SO_LINGER`: how long a close waits for unsent data (`None`: the default,
    /// in the background).
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        self.sock.socket.set_linger(linger)
    }

    /// The `SO_LINGER` setting.
    pub fn linger(&self) -> io::Result<Option<Duration>> {
        self.sock.socket.linger()
    }
}

super::stream_io!(TcpStream);
super::socket_methods!(TcpListener);
super::socket_methods!(TcpStream, timeouts, shutdown);
super::socket_traits!(TcpListener: std::net::TcpListener, TcpStream: std::net::TcpStream);
