//! [`UnixListener`], [`UnixStream`] and [`UnixDatagram`]: Unix-domain sockets, with
//! `std::os::unix::net`'s API and spindle's waits.
//!
//! Data moves through the same offloaded calls as TCP and UDP. Addresses are `std`'s
//! own `SocketAddr`: the calls that return one (`local_addr`, `peer_addr`, a
//! datagram's `recv_from`) are made through a `std` view of the descriptor, on the
//! calling thread; they never wait (a `recv_from` with nothing to read waits on the
//! poller, as every receive does).

use std::io::{self, Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};

use super::sock::{BACKLOG, Sock};

/// A `std` socket over our descriptor, for the calls that return `std` addresses;
/// never dropped (the descriptor stays ours).
fn view<T: FromRawFd>(fd: RawFd) -> ManuallyDrop<T> {
    // SAFETY: `fd` is a live socket descriptor owned by the caller's socket, which outlives the view; `ManuallyDrop` keeps the view from closing it.
    ManuallyDrop::new(unsafe { T::from_raw_fd(fd) })
}

/// A Unix-domain socket listening for connections.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use spindle::net::{UnixListener, UnixStream};
///
/// spindle::run(|| {
///     let path = std::env::temp_dir().join(format!("spindle-doc-{}.sock", std::process::id()));
///     let _ = std::fs::remove_file(&path);
///     let listener = UnixListener::bind(&path).unwrap();
///     let server = spindle::spawn(move || {
///         let (mut s, _) = listener.accept().unwrap();
///         let mut buf = [0; 4];
///         s.read_exact(&mut buf).unwrap();
///         s.write_all(&buf).unwrap();
///     });
///     let mut c = UnixStream::connect(&path).unwrap();
///     c.write_all(b"ping").unwrap();
///     let mut back = [0; 4];
///     c.read_exact(&mut back).unwrap();
///     assert_eq!(&back, b"ping");
///     server.join().unwrap();
///     std::fs::remove_file(&path).unwrap();
/// });
/// ```
pub struct UnixListener {
    pub(super) sock: Sock,
}

impl UnixListener {
    /// Binds to the file system path `path` (which must not exist) and listens.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        let sock = Sock::new(Domain::UNIX, Type::STREAM)?;
        sock.socket.bind(&SockAddr::unix(path)?)?;
        sock.socket.listen(BACKLOG)?;
        Ok(UnixListener { sock })
    }

    /// Waits for a connection and returns it with the peer's address.
    ///
    /// # Errors
    ///
    /// A socket that is not listening (a connected std stream converted into a
    /// listener) fails with [`SocketStateError`](super::SocketStateError).
    pub fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (sock, _) = self.sock.accept()?;
        let peer = view::<std::os::unix::net::UnixStream>(sock.raw()).peer_addr()?;
        Ok((UnixStream { sock }, peer))
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        view::<std::os::unix::net::UnixListener>(self.sock.raw()).local_addr()
    }

    /// Bounds how long [`UnixListener::accept`] waits (`ErrorKind::TimedOut`
    /// after). `None`: forever. A zero duration is an `InvalidInput` error.
    pub fn set_accept_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        Sock::set_timeout(&self.sock.read_timeout, d)
    }
}

/// A Unix-domain stream connection.
pub struct UnixStream {
    pub(super) sock: Sock,
}

impl UnixStream {
    /// Connects to the socket at `path`.
    pub fn connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
        let sock = Sock::new(Domain::UNIX, Type::STREAM)?;
        sock.connect(&SockAddr::unix(path)?, None)?;
        Ok(UnixStream { sock })
    }

    /// Two connected streams (`socketpair`).
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = pair(Type::STREAM)?;
        Ok((UnixStream { sock: a }, UnixStream { sock: b }))
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        view::<std::os::unix::net::UnixStream>(self.sock.raw()).peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        view::<std::os::unix::net::UnixStream>(self.sock.raw()).local_addr()
    }
}

/// A Unix-domain datagram socket.
///
/// # Examples
///
/// ```
/// use spindle::net::UnixDatagram;
///
/// spindle::run(|| {
///     let (a, b) = UnixDatagram::pair().unwrap();
///     a.send(b"one datagram").unwrap();
///     let mut buf = [0; 32];
///     let n = b.recv(&mut buf).unwrap();
///     assert_eq!(&buf[..n], b"one datagram");
/// });
/// ```
pub struct UnixDatagram {
    pub(super) sock: Sock,
}

impl UnixDatagram {
    /// A socket bound to the file system path `path` (which must not exist).
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixDatagram> {
        let sock = Sock::new(Domain::UNIX, Type::DGRAM)?;
        sock.socket.bind(&SockAddr::unix(path)?)?;
        Ok(UnixDatagram { sock })
    }

    /// A socket bound to no address (it can send, and receive once connected).
    pub fn unbound() -> io::Result<UnixDatagram> {
        Ok(UnixDatagram {
            sock: Sock::new(Domain::UNIX, Type::DGRAM)?,
        })
    }

    /// Two connected sockets (`socketpair`).
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = pair(Type::DGRAM)?;
        Ok((UnixDatagram { sock: a }, UnixDatagram { sock: b }))
    }

    /// Sets the default peer of [`send`](Self::send) and filters
    /// [`recv`](Self::recv).
    pub fn connect(&self, path: impl AsRef<Path>) -> io::Result<()> {
        self.sock.connect(&SockAddr::unix(path)?, None)
    }

    /// Sends `buf` to the socket at `path`; returns the bytes sent.
    pub fn send_to(&self, buf: &[u8], path: impl AsRef<Path>) -> io::Result<usize> {
        self.sock.send(buf, Some(&SockAddr::unix(path)?))
    }

    /// Sends `buf` to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.sock.send(buf, None)
    }

    /// Receives one datagram from the connected peer.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.read(buf)
    }

    /// Receives one datagram; returns its length and sender.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let v = view::<std::os::unix::net::UnixDatagram>(self.sock.raw());
        self.sock.wait_readable(|| v.recv_from(buf))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        view::<std::os::unix::net::UnixDatagram>(self.sock.raw()).local_addr()
    }

    /// The connected peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        view::<std::os::unix::net::UnixDatagram>(self.sock.raw()).peer_addr()
    }
}

/// A connected pair of non-blocking Unix sockets of type `ty`.
fn pair(ty: Type) -> io::Result<(Sock, Sock)> {
    let (a, b) = Socket::pair(Domain::UNIX, ty.nonblocking().cloexec(), None)?;
    Ok((Sock::adopt(a), Sock::adopt(b)))
}

super::stream_io!(UnixStream);
super::socket_methods!(UnixListener);
super::socket_methods!(UnixStream, timeouts, shutdown);
super::socket_methods!(UnixDatagram, timeouts, shutdown);
super::socket_traits!(
    UnixListener: std::os::unix::net::UnixListener,
    UnixStream: std::os::unix::net::UnixStream,
    UnixDatagram: std::os::unix::net::UnixDatagram
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_do_not_close_the_descriptor() {
        let (a, _b) = UnixStream::pair().unwrap();
        {
            let v = view::<std::os::unix::net::UnixStream>(a.sock.raw());
            assert!(v.peer_addr().is_ok());
        }
        // The view went out of scope; the descriptor is still open.
        assert!(a.sock.socket.take_error().is_ok());
    }
}
