//! The non-blocking socket every type of `net` is built on: a `socket2::Socket` (its
//! setup and options), a readiness source, timeouts, and the calls that may wait —
//! receive, send, accept, connect — offloaded to the service core, through its ring
//! when it has one, else retried on readiness.
//!
//! Setup calls (`socket`, `bind`, `listen`, option getters and setters) never wait:
//! `socket2` makes them on the calling thread. Addresses cross the offloaded calls as
//! `socket2::SockAddr` storage, which lives in the caller's frame until the call
//! returns (an offloaded call returns only once the kernel is done with it, even when
//! its caller unwinds).

use std::error::Error;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, SockAddrStorage, Socket, Type};

use crate::io::Dir;
use crate::sys::source::Source;
use crate::sys::{call, ring_call};

/// Backlog of a listening socket.
pub(super) const BACKLOG: i32 = 1024;

/// A socket: its readiness source (dropped first: deregisters), the socket, and its
/// timeouts in nanoseconds (0: none).
pub(super) struct Sock {
    src: Source,
    pub(super) socket: Socket,
    pub(super) read_timeout: AtomicU64,
    pub(super) write_timeout: AtomicU64,
}

/// A socket converted from `std` was not in the state its new type needs: a listening
/// socket used as a stream, or a stream used as a listener. The `io::Error` that
/// carries it (its [`get_ref`](io::Error::get_ref) downcasts to this) has the kind
/// `NotConnected` or `InvalidInput`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketStateError {
    /// What the operation needed: "a connected stream" or "a listening socket".
    pub needed: &'static str,
}

impl fmt::Display for SocketStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spindle::net: this operation needs {}, and the socket is not one (was a std socket of the other kind converted?): convert a std::net listener into a spindle listener and a std::net stream into a spindle stream",
            self.needed
        )
    }
}

impl Error for SocketStateError {}

/// Turns the kernel's "wrong state" errors into [`SocketStateError`]s.
fn state_error(e: io::Error, listening: bool) -> io::Error {
    match (e.raw_os_error(), listening) {
        (Some(libc::ENOTCONN), false) => io::Error::new(
            io::ErrorKind::NotConnected,
            SocketStateError {
                needed: "a connected stream",
            },
        ),
        (Some(libc::EINVAL), true) => io::Error::new(
            io::ErrorKind::InvalidInput,
            SocketStateError {
                needed: "a listening socket",
            },
        ),
        _ => e,
    }
}

impl Sock {
    /// A new non-blocking socket.
    pub(super) fn new(domain: Domain, ty: Type) -> io::Result<Sock> {
        let socket = Socket::new(domain, ty.nonblocking().cloexec(), None)?;
        Ok(Sock::wrap(socket))
    }

    /// Takes a socket made elsewhere (a `std` one, or a raw descriptor), made
    /// non-blocking (already being so is fine).
    pub(super) fn adopt(socket: Socket) -> Sock {
        // `fcntl(F_SETFL)` fails only on an invalid descriptor, on which every later
        // call fails too, with the same error.
        let _ = socket.set_nonblocking(true);
        Sock::wrap(socket)
    }

    fn wrap(socket: Socket) -> Sock {
        Sock {
            src: Source::default(),
            socket,
            read_timeout: AtomicU64::new(0),
            write_timeout: AtomicU64::new(0),
        }
    }

    /// A second handle on the same socket (`dup`), with the same timeouts.
    pub(super) fn try_clone(&self) -> io::Result<Sock> {
        let s = Sock::wrap(self.socket.try_clone()?);
        s.read_timeout
            .store(self.read_timeout.load(Ordering::Relaxed), Ordering::Relaxed);
        s.write_timeout.store(
            self.write_timeout.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        Ok(s)
    }

    /// The socket, its readiness registration dropped (deregistered) first.
    pub(super) fn into_socket(self) -> Socket {
        let Sock { src, socket, .. } = self;
        drop(src);
        socket
    }

    /// Runs `op` (a receive made on the calling thread) until it does not fail with
    /// `EAGAIN`, waiting for readability in between, within the read timeout.
    pub(super) fn wait_readable<T>(&self, op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        self.src.io(
            self.raw(),
            Dir::Read,
            Sock::deadline(&self.read_timeout),
            op,
        )
    }

    pub(super) fn raw(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    fn deadline(t: &AtomicU64) -> Option<Instant> {
        match t.load(Ordering::Relaxed) {
            0 => None,
            ns => Instant::now().checked_add(Duration::from_nanos(ns)),
        }
    }

    pub(super) fn set_timeout(t: &AtomicU64, d: Option<Duration>) -> io::Result<()> {
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

    pub(super) fn timeout(t: &AtomicU64) -> Option<Duration> {
        match t.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    /// Receives into `buf` (a stream's read, a connected datagram's receive).
    pub(super) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
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
            return r.map_err(|e| state_error(e, false));
        }
        self.src
            .io(fd, Dir::Read, deadline, || {
                // SAFETY: as above; the descriptor is non-blocking.
                unsafe { call(libc::SYS_recvfrom, args) }
            })
            .map_err(|e| state_error(e, false))
    }

    /// Sends `buf` (to `to`, if given).
    pub(super) fn send(&self, buf: &[u8], to: Option<&SockAddr>) -> io::Result<usize> {
        let fd = self.raw();
        let deadline = Sock::deadline(&self.write_timeout);
        let (addr, len) = to.map_or((0, 0), |a| (a.as_ptr() as u64, u64::from(a.len())));
        // MSG_NOSIGNAL: a closed peer is an error, not SIGPIPE.
        let args = [
            fd as u64,
            buf.as_ptr() as u64,
            buf.len() as u64,
            libc::MSG_NOSIGNAL as u64,
            addr,
            len,
        ];
        if to.is_none() {
            // SAFETY: `buf` is live for its length until the call returns.
            if let Some(r) = unsafe { ring_call(libc::SYS_sendto, args, deadline) } {
                return r.map_err(|e| state_error(e, false));
            }
        }
        self.src
            .io(fd, Dir::Write, deadline, || {
                // SAFETY: `buf` and the address are live for the call.
                unsafe { call(libc::SYS_sendto, args) }
            })
            .map_err(|e| state_error(e, false))
    }

    /// Receives one datagram; returns its length and sender.
    pub(super) fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SockAddr)> {
        let fd = self.raw();
        let deadline = Sock::deadline(&self.read_timeout);
        let init = |sa: *mut SockAddrStorage, len: *mut libc::socklen_t| {
            self.src.io(fd, Dir::Read, deadline, || {
                // SAFETY: `buf`, `sa` and `len` are live and writable for the call.
                unsafe {
                    call(
                        libc::SYS_recvfrom,
                        [
                            fd as u64,
                            buf.as_mut_ptr() as u64,
                            buf.len() as u64,
                            0,
                            sa as u64,
                            len as u64,
                        ],
                    )
                }
            })
        };
        // SAFETY: `init`'s recvfrom writes at most `len` bytes of address into the storage (the kernel's contract), and its length into `len`.
        unsafe { SockAddr::try_init(init) }
    }

    /// Waits for a connection; the new socket (non-blocking) and the peer's address.
    pub(super) fn accept(&self) -> io::Result<(Sock, SockAddr)> {
        let fd = self.raw();
        let deadline = Sock::deadline(&self.read_timeout);
        let flags = (libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) as u64;
        let init = |sa: *mut SockAddrStorage, len: *mut libc::socklen_t| {
            let args = [fd as u64, sa as u64, len as u64, flags, 0, 0];
            // SAFETY: `sa` and `len` are live and writable until the call returns (it does not return before the kernel is done with them).
            match unsafe { ring_call(libc::SYS_accept4, args, deadline) } {
                Some(r) => r,
                None => self.src.io(fd, Dir::Read, deadline, || {
                    // SAFETY: as above; the descriptor is non-blocking.
                    unsafe { call(libc::SYS_accept4, args) }
                }),
            }
        };
        // SAFETY: `init`'s accept4 writes at most `len` bytes of address into the storage and its length into `len`.
        let (new, addr) = unsafe { SockAddr::try_init(init) }.map_err(|e| state_error(e, true))?;
        // SAFETY: the kernel just gave us this descriptor; nothing else owns it.
        let socket = unsafe { <Socket as std::os::fd::FromRawFd>::from_raw_fd(new as RawFd) };
        Ok((Sock::wrap(socket), addr))
    }

    /// Starts a connect to `addr`; waits for it (bounded by `deadline`).
    pub(super) fn connect(&self, addr: &SockAddr, deadline: Option<Instant>) -> io::Result<()> {
        let fd = self.raw();
        let args = [
            fd as u64,
            addr.as_ptr() as u64,
            u64::from(addr.len()),
            0,
            0,
            0,
        ];
        loop {
            // SAFETY: the address is live for the call.
            match unsafe { call(libc::SYS_connect, args) } {
                Ok(_) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => break,
                // A Unix listener whose backlog is full: nothing is in progress, so
                // try again a little later (a blocking connect would wait for room).
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                    crate::sched::wait::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(e),
            }
        }
        self.src
            .io(fd, Dir::Write, deadline, || match self.socket.peer_addr() {
                Ok(_) => Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
                    match self.socket.take_error()? {
                        Some(err) => Err(err),
                        None => Err(io::ErrorKind::WouldBlock.into()),
                    }
                }
                Err(e) => Err(e),
            })
    }

    /// Shuts down reading, writing, or both (offloaded: it may flush).
    pub(super) fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        let how = match how {
            std::net::Shutdown::Read => libc::SHUT_RD,
            std::net::Shutdown::Write => libc::SHUT_WR,
            std::net::Shutdown::Both => libc::SHUT_RDWR,
        };
        // SAFETY: shutdown takes no pointers.
        unsafe {
            call(
                libc::SYS_shutdown,
                [self.raw() as u64, how as u64, 0, 0, 0, 0],
            )
        }
        .map(drop)
        .map_err(|e| state_error(e, false))
    }
}

/// The IP address of a socket address of an IP socket.
pub(super) fn ip(addr: io::Result<SockAddr>) -> io::Result<std::net::SocketAddr> {
    addr?.as_socket().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "spindle::net: the kernel returned an address that is neither IPv4 nor IPv6",
        )
    })
}
