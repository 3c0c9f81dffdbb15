//! TCP and UDP sockets whose calls are offloaded to the hypercore and whose waits park
//! the spindle thread, never its core.
//!
//! Every socket is non-blocking. A call that would block (`EAGAIN`) parks the thread
//! on the runtime's readiness poller (epoll, a maintenance thread on the hypercore) and
//! is retried when the socket is ready; read and write timeouts bound the wait
//! (`ErrorKind::TimedOut`). The calls themselves go through [`crate::sys`], so on a
//! plain OS thread, or without a hypercore, they run directly (an OS thread waits in
//! `poll(2)`).
//!
//! ```
//! use std::io::{Read, Write};
//! use spindle::net::{TcpListener, TcpStream};
//!
//! spindle::run(|| {
//!     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
//!     let addr = listener.local_addr().unwrap();
//!     let server = spindle::spawn(move || {
//!         let (mut s, _) = listener.accept().unwrap();
//!         let mut buf = [0; 5];
//!         s.read_exact(&mut buf).unwrap();
//!         s.write_all(&buf).unwrap();
//!     });
//!     let mut c = TcpStream::connect(addr).unwrap();
//!     c.write_all(b"hello").unwrap();
//!     let mut back = [0; 5];
//!     c.read_exact(&mut back).unwrap();
//!     assert_eq!(&back, b"hello");
//!     server.join().unwrap();
//! });
//! ```

use std::io::{self, Read, Write};
use std::net::{
    Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV4, SocketAddrV6, ToSocketAddrs,
};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::io::Dir;
use crate::sys::source::Source;
use crate::sys::{call, ring_call};

/// Backlog of a listening socket.
const BACKLOG: u64 = 1024;

/// A socket: its readiness source (dropped first: deregisters), its descriptor, and
/// its timeouts in nanoseconds (0: none).
struct Sock {
    src: Source,
    fd: OwnedFd,
    read_timeout: AtomicU64,
    write_timeout: AtomicU64,
}

impl Sock {
    fn new(domain: i32, ty: i32) -> io::Result<Sock> {
        let ty = (ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) as u64;
        // SAFETY: socket takes no pointers.
        let fd = unsafe { call(libc::SYS_socket, [domain as u64, ty, 0, 0, 0, 0]) }?;
        // SAFETY: the kernel just gave us this descriptor.
        Ok(Sock::from_fd(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }))
    }

    fn from_fd(fd: OwnedFd) -> Sock {
        Sock {
            src: Source::default(),
            fd,
            read_timeout: AtomicU64::new(0),
            write_timeout: AtomicU64::new(0),
        }
    }

    fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn deadline(t: &AtomicU64) -> Option<Instant> {
        match t.load(Ordering::Relaxed) {
            0 => None,
            ns => Instant::now().checked_add(Duration::from_nanos(ns)),
        }
    }

    fn set_timeout(t: &AtomicU64, d: Option<Duration>) -> io::Result<()> {
        let ns = match d {
            None => 0,
            Some(d) if d.is_zero() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "spindle::net: a zero timeout is not allowed: pass None for no timeout",
                ));
            }
            Some(d) => d.as_nanos().clamp(1, u64::MAX as u128) as u64,
        };
        t.store(ns, Ordering::Relaxed);
        Ok(())
    }

    fn timeout(t: &AtomicU64) -> Option<Duration> {
        match t.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let fd = self.raw();
        let deadline = Sock::deadline(&self.read_timeout);
        let args = [
            fd as u64,
            buf.as_mut_ptr() as u64,
            buf.len() as u64,
            0,
            0,
            0,
        ];
        // SAFETY: `buf` is live and writable for its length until the call returns (it does not return before the kernel is done with it).
        if let Some(r) = unsafe { ring_call(libc::SYS_recvfrom, args, deadline) } {
            return r;
        }
        self.src.io(fd, Dir::Read, deadline, || {
            // SAFETY: as above; the descriptor is non-blocking.
            unsafe { call(libc::SYS_recvfrom, args) }
        })
    }

    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        let fd = self.raw();
        let deadline = Sock::deadline(&self.write_timeout);
        let args = sendto_args(fd, buf, None);
        // SAFETY: `buf` is live for its length until the call returns; MSG_NOSIGNAL: a closed peer is an error, not SIGPIPE.
        if let Some(r) = unsafe { ring_call(libc::SYS_sendto, args, deadline) } {
            return r;
        }
        self.src.io(fd, Dir::Write, deadline, || {
            // SAFETY: as above.
            unsafe { call(libc::SYS_sendto, args) }
        })
    }

    fn send_to(&self, buf: &[u8], addr: &SocketAddr) -> io::Result<usize> {
        let fd = self.raw();
        let (sa, len) = to_raw(addr);
        self.src
            .io(fd, Dir::Write, Sock::deadline(&self.write_timeout), || {
                // SAFETY: `buf` and `sa` are live for the call; MSG_NOSIGNAL as in `send`.
                unsafe { call(libc::SYS_sendto, sendto_args(fd, buf, Some((&sa, len)))) }
            })
    }

    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let fd = self.raw();
        self.src
            .io(fd, Dir::Read, Sock::deadline(&self.read_timeout), || {
                // SAFETY: an all-zero sockaddr_storage is valid.
                let mut sa: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
                let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                // SAFETY: `buf`, `sa` and `len` are live and writable for the call.
                let n = unsafe {
                    call(
                        libc::SYS_recvfrom,
                        [
                            fd as u64,
                            buf.as_mut_ptr() as u64,
                            buf.len() as u64,
                            0,
                            &raw mut sa as u64,
                            &raw mut len as u64,
                        ],
                    )
                }?;
                Ok((n, from_raw(&sa, len)?))
            })
    }

    fn bind(&self, addr: &SocketAddr) -> io::Result<()> {
        let (sa, len) = to_raw(addr);
        // SAFETY: `sa` is live for the call.
        unsafe {
            call(
                libc::SYS_bind,
                [
                    self.raw() as u64,
                    &raw const sa as u64,
                    u64::from(len),
                    0,
                    0,
                    0,
                ],
            )
        }
        .map(drop)
    }

    /// Starts a connect; waits for it (bounded by `deadline`).
    fn connect(&self, addr: &SocketAddr, deadline: Option<Instant>) -> io::Result<()> {
        let (sa, len) = to_raw(addr);
        let fd = self.raw();
        // SAFETY: `sa` is live for the call.
        match unsafe {
            call(
                libc::SYS_connect,
                [fd as u64, &raw const sa as u64, u64::from(len), 0, 0, 0],
            )
        } {
            Ok(_) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        self.src
            .io(fd, Dir::Write, deadline, || match self.peer_addr() {
                Ok(_) => Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
                    let err: i32 = self.getsockopt(libc::SOL_SOCKET, libc::SO_ERROR)?;
                    if err != 0 {
                        Err(io::Error::from_raw_os_error(err))
                    } else {
                        Err(io::ErrorKind::WouldBlock.into())
                    }
                }
                Err(e) => Err(e),
            })
    }

    fn name(&self, nr: libc::c_long) -> io::Result<SocketAddr> {
        // SAFETY: an all-zero sockaddr_storage is valid.
        let mut sa: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: `sa` and `len` are live and writable for the call.
        unsafe {
            call(
                nr,
                [
                    self.raw() as u64,
                    &raw mut sa as u64,
                    &raw mut len as u64,
                    0,
                    0,
                    0,
                ],
            )
        }?;
        from_raw(&sa, len)
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.name(libc::SYS_getpeername)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.name(libc::SYS_getsockname)
    }

    fn setsockopt(&self, level: i32, name: i32, val: i32) -> io::Result<()> {
        // SAFETY: `val` is live for the call, with its size.
        unsafe {
            call(
                libc::SYS_setsockopt,
                [
                    self.raw() as u64,
                    level as u64,
                    name as u64,
                    &raw const val as u64,
                    4,
                    0,
                ],
            )
        }
        .map(drop)
    }

    fn getsockopt(&self, level: i32, name: i32) -> io::Result<i32> {
        let mut val: i32 = 0;
        let mut len: libc::socklen_t = 4;
        // SAFETY: `val` and `len` are live and writable for the call.
        unsafe {
            call(
                libc::SYS_getsockopt,
                [
                    self.raw() as u64,
                    level as u64,
                    name as u64,
                    &raw mut val as u64,
                    &raw mut len as u64,
                    0,
                ],
            )
        }?;
        Ok(val)
    }
}

fn domain(addr: &SocketAddr) -> i32 {
    match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    }
}

fn to_raw(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&raw mut st).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&raw mut st).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (st, len as libc::socklen_t)
}

/// The arguments of a `sendto` of `buf` on `fd` (to `to`, a raw address and its
/// length, if given), with `MSG_NOSIGNAL`: a closed peer is an error, not SIGPIPE.
fn sendto_args(fd: RawFd, buf: &[u8], to: Option<(&libc::sockaddr_storage, u32)>) -> [u64; 6] {
    let (addr, len) = to.map_or((0, 0), |(sa, len)| {
        (std::ptr::from_ref(sa) as u64, u64::from(len))
    });
    [
        fd as u64,
        buf.as_ptr() as u64,
        buf.len() as u64,
        libc::MSG_NOSIGNAL as u64,
        addr,
        len,
    ]
}

fn from_raw(st: &libc::sockaddr_storage, len: libc::socklen_t) -> io::Result<SocketAddr> {
    match st.ss_family as i32 {
        libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
            let p = (st as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>();
            // SAFETY: the family and length say it holds a sockaddr_in; storage is aligned for it.
            let sin = unsafe { p.read() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Ok(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
            let p = (st as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
            // SAFETY: the family and length say it holds a sockaddr_in6; storage is aligned for it.
            let sin6 = unsafe { p.read() };
            Ok(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "spindle::net: the kernel returned an address that is neither IPv4 nor IPv6",
        )),
    }
}

/// Tries `f` on each address `addr` resolves to; the last error if none worked.
fn each_addr<T>(
    addr: impl ToSocketAddrs,
    mut f: impl FnMut(&SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        match f(&a) {
            Ok(t) => return Ok(t),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "spindle::net: the address resolved to nothing: pass an IP address and port",
        )
    }))
}

/// A TCP socket listening for connections.
pub struct TcpListener {
    sock: Sock,
}

impl TcpListener {
    /// Binds to `addr` (with `SO_REUSEADDR`) and listens. Port 0 picks a free port
    /// ([`TcpListener::local_addr`] tells which). Name resolution, if `addr` is a
    /// host name, runs on the calling thread (use [`crate::blocking`] for slow DNS).
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        each_addr(addr, |a| {
            let sock = Sock::new(domain(a), libc::SOCK_STREAM)?;
            sock.setsockopt(libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
            sock.bind(a)?;
            // SAFETY: listen takes no pointers.
            unsafe { call(libc::SYS_listen, [sock.raw() as u64, BACKLOG, 0, 0, 0, 0]) }?;
            Ok(TcpListener { sock })
        })
    }

    /// Waits for a connection and returns it with the peer's address.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let fd = self.sock.raw();
        let deadline = Sock::deadline(&self.sock.read_timeout);
        // SAFETY: an all-zero sockaddr_storage is valid.
        let mut sa: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let flags = (libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) as u64;
        let args = [
            fd as u64,
            &raw mut sa as u64,
            &raw mut len as u64,
            flags,
            0,
            0,
        ];
        // SAFETY: `sa` and `len` are live and writable until the call returns (it does not return before the kernel is done with them).
        let new = match unsafe { ring_call(libc::SYS_accept4, args, deadline) } {
            Some(r) => r,
            None => self.sock.src.io(fd, Dir::Read, deadline, || {
                // SAFETY: as above; the descriptor is non-blocking.
                unsafe { call(libc::SYS_accept4, args) }
            }),
        }?;
        // SAFETY: the kernel just gave us this descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(new as RawFd) };
        let stream = TcpStream {
            sock: Sock::from_fd(fd),
        };
        Ok((stream, from_raw(&sa, len)?))
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// Bounds how long [`TcpListener::accept`] waits (`ErrorKind::TimedOut` after).
    /// `None`: forever. A zero duration is an `InvalidInput` error.
    pub fn set_accept_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        Sock::set_timeout(&self.sock.read_timeout, d)
    }
}

/// A TCP connection.
pub struct TcpStream {
    sock: Sock,
}

impl TcpStream {
    /// Connects to `addr` (each address it resolves to, in turn).
    pub fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
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
        let sock = Sock::new(domain(addr), libc::SOCK_STREAM)?;
        sock.connect(addr, deadline)?;
        Ok(TcpStream { sock })
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.sock.peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// Shuts down reading, writing, or both.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let how = match how {
            Shutdown::Read => libc::SHUT_RD,
            Shutdown::Write => libc::SHUT_WR,
            Shutdown::Both => libc::SHUT_RDWR,
        };
        // SAFETY: shutdown takes no pointers.
        unsafe {
            call(
                libc::SYS_shutdown,
                [self.sock.raw() as u64, how as u64, 0, 0, 0, 0],
            )
        }
        .map(drop)
    }

    /// Sets `TCP_NODELAY` (no Nagle delay for small writes).
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.sock
            .setsockopt(libc::IPPROTO_TCP, libc::TCP_NODELAY, i32::from(on))
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> io::Result<bool> {
        Ok(self.sock.getsockopt(libc::IPPROTO_TCP, libc::TCP_NODELAY)? != 0)
    }

    /// Bounds how long a read waits (`ErrorKind::TimedOut` after). `None`: forever.
    /// A zero duration is an `InvalidInput` error, as in `std`.
    pub fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        Sock::set_timeout(&self.sock.read_timeout, d)
    }

    /// Bounds how long a write waits (`ErrorKind::TimedOut` after). `None`: forever.
    pub fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        Sock::set_timeout(&self.sock.write_timeout, d)
    }

    /// The read timeout.
    pub fn read_timeout(&self) -> Option<Duration> {
        Sock::timeout(&self.sock.read_timeout)
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> Option<Duration> {
        Sock::timeout(&self.sock.write_timeout)
    }
}

impl Read for &TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.read(buf)
    }
}

impl Write for &TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock.send(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.read(buf)
    }
}

impl Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock.send(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A UDP socket.
pub struct UdpSocket {
    sock: Sock,
}

impl UdpSocket {
    /// Binds to `addr` (port 0 picks a free port).
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        each_addr(addr, |a| {
            let sock = Sock::new(domain(a), libc::SOCK_DGRAM)?;
            sock.bind(a)?;
            Ok(UdpSocket { sock })
        })
    }

    /// Sends `buf` to `addr`; returns the bytes sent.
    pub fn send_to(&self, buf: &[u8], addr: impl ToSocketAddrs) -> io::Result<usize> {
        each_addr(addr, |a| self.sock.send_to(buf, a))
    }

    /// Receives one datagram; returns its length and sender.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.sock.recv_from(buf)
    }

    /// Sets the default peer of [`UdpSocket::send`] and filters [`UdpSocket::recv`].
    pub fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<()> {
        each_addr(addr, |a| self.sock.connect(a, None))
    }

    /// Sends `buf` to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.sock.send(buf)
    }

    /// Receives one datagram from the connected peer.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.read(buf)
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// The connected peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.sock.peer_addr()
    }

    /// Bounds how long a receive waits (`ErrorKind::TimedOut` after). `None`: forever.
    /// A zero duration is an `InvalidInput` error.
    pub fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        Sock::set_timeout(&self.sock.read_timeout, d)
    }

    /// Bounds how long a send waits (`ErrorKind::TimedOut` after). `None`: forever.
    pub fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        Sock::set_timeout(&self.sock.write_timeout, d)
    }
}

macro_rules! fd_traits {
    ($($t:ty),*) => {$(
        impl AsFd for $t {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.sock.fd.as_fd()
            }
        }
        impl AsRawFd for $t {
            fn as_raw_fd(&self) -> RawFd {
                self.sock.raw()
            }
        }
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($t))
                    .field("fd", &self.sock.raw())
                    .finish()
            }
        }
    )*};
}
fd_traits!(TcpListener, TcpStream, UdpSocket);
