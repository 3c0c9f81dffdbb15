//! Sockets whose calls are offloaded to the service core and whose waits park the
//! spindle thread, never its core: TCP ([`TcpListener`], [`TcpStream`]), UDP
//! ([`UdpSocket`]) and Unix-domain ([`UnixListener`], [`UnixStream`],
//! [`UnixDatagram`]).
//!
//! Every socket is non-blocking. A call that would block (`EAGAIN`) parks the thread
//! on the runtime's readiness poller (epoll, a maintenance thread on the hypercore) and
//! is retried when the socket is ready; read and write timeouts bound the wait
//! (`ErrorKind::TimedOut`). The calls themselves go through [`crate::sys`], so on a
//! plain OS thread, or without a hypercore, they run directly (an OS thread waits in
//! `poll(2)`). Sockets are set up with `socket2`; host names resolve on the blocking
//! pool ([`crate::blocking`]), never on a core.
//!
//! Every type converts from its `std` counterpart (`From<std::net::TcpStream>` and
//! so on), which is made non-blocking; one in the wrong state (a listening socket
//! converted into a stream, or the reverse) fails its first call with a
//! [`SocketStateError`]. Every type is `AsFd`, `AsRawFd`, `FromRawFd` and
//! `IntoRawFd`, and converts into an `OwnedFd`.
//!
//! ```
//! use std::io::{Read, Write};
//! use spindle::net::TcpStream;
//!
//! spindle::run(|| {
//!     // A std listener, as another library might hand it over.
//!     let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
//!     let addr = std_listener.local_addr().unwrap();
//!     let listener = spindle::net::TcpListener::from(std_listener);
//!     let server = spindle::spawn(move || {
//!         let (mut s, _) = listener.accept().unwrap();
//!         s.write_all(b"hi").unwrap();
//!     });
//!     let mut c = TcpStream::connect(addr).unwrap();
//!     let mut buf = [0; 2];
//!     c.read_exact(&mut buf).unwrap();
//!     assert_eq!(&buf, b"hi");
//!     server.join().unwrap();
//! });
//! ```

mod resolve;
mod sock;
mod tcp;
mod udp;
mod unix;

pub use sock::SocketStateError;
pub use tcp::{TcpListener, TcpStream};
pub use udp::UdpSocket;
pub use unix::{UnixDatagram, UnixListener, UnixStream};

/// `Read` and `Write` for a stream type and its shared reference.
macro_rules! stream_io {
    ($t:ident) => {
        impl Read for &$t {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.sock.read(buf)
            }
        }

        impl Write for &$t {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.sock.send(buf, None)
            }

            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }

        impl Read for $t {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.sock.read(buf)
            }
        }

        impl Write for $t {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.sock.send(buf, None)
            }

            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
    };
}
use stream_io;

/// The methods every socket type has (`try_clone`, `take_error`), and those of the
/// types that have them: `timeouts` (read and write timeouts) and `shutdown`.
macro_rules! socket_methods {
    ($t:ident $(, $extra:ident)*) => {
        impl $t {
            /// A second handle on the same socket (`dup`), with the same timeouts:
            /// one thread may receive while another sends.
            pub fn try_clone(&self) -> std::io::Result<$t> {
                Ok($t {
                    sock: self.sock.try_clone()?,
                })
            }

            /// Takes the socket's pending error (`SO_ERROR`).
            pub fn take_error(&self) -> std::io::Result<Option<std::io::Error>> {
                self.sock.socket.take_error()
            }
        }
        $($crate::net::socket_methods!(@$extra $t);)*
    };
    (@timeouts $t:ident) => {
        impl $t {
            /// Bounds how long a receive waits (`ErrorKind::TimedOut` after). `None`:
            /// forever. A zero duration is an `InvalidInput` error, as in `std`.
            pub fn set_read_timeout(&self, d: Option<std::time::Duration>) -> std::io::Result<()> {
                super::sock::Sock::set_timeout(&self.sock.read_timeout, d)
            }

            /// Bounds how long a send waits (`ErrorKind::TimedOut` after). `None`:
            /// forever. A zero duration is an `InvalidInput` error.
            pub fn set_write_timeout(&self, d: Option<std::time::Duration>) -> std::io::Result<()> {
                super::sock::Sock::set_timeout(&self.sock.write_timeout, d)
            }

            /// The read timeout.
            pub fn read_timeout(&self) -> Option<std::time::Duration> {
                super::sock::Sock::timeout(&self.sock.read_timeout)
            }

            /// The write timeout.
            pub fn write_timeout(&self) -> Option<std::time::Duration> {
                super::sock::Sock::timeout(&self.sock.write_timeout)
            }
        }
    };
    (@shutdown $t:ident) => {
        impl $t {
            /// Shuts down receiving, sending, or both.
            pub fn shutdown(&self, how: std::net::Shutdown) -> std::io::Result<()> {
                self.sock.shutdown(how)
            }
        }
    };
}
use socket_methods;

/// The descriptor traits, the conversions from `std` and into `OwnedFd`, and `Debug`,
/// for socket types holding a `Sock` in `sock`.
macro_rules! socket_traits {
    ($($t:ident: $std:ty),* $(,)?) => {$(
        impl std::os::fd::AsFd for $t {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                std::os::fd::AsFd::as_fd(&self.sock.socket)
            }
        }

        impl std::os::fd::AsRawFd for $t {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                self.sock.raw()
            }
        }

        impl std::os::fd::FromRawFd for $t {
            /// Takes the socket `fd` (made non-blocking).
            ///
            /// # Safety
            ///
            /// `fd` is an open socket of this type's kind, owned by nothing else.
            unsafe fn from_raw_fd(fd: std::os::fd::RawFd) -> $t {
                // SAFETY: the caller vouches for `fd` (this function's contract).
                let socket = unsafe { <socket2::Socket as std::os::fd::FromRawFd>::from_raw_fd(fd) };
                $t {
                    sock: super::sock::Sock::adopt(socket),
                }
            }
        }

        impl std::os::fd::IntoRawFd for $t {
            fn into_raw_fd(self) -> std::os::fd::RawFd {
                std::os::fd::IntoRawFd::into_raw_fd(self.sock.into_socket())
            }
        }

        impl From<$t> for std::os::fd::OwnedFd {
            fn from(s: $t) -> std::os::fd::OwnedFd {
                s.sock.into_socket().into()
            }
        }

        impl From<$std> for $t {
            /// Takes a `std` socket, made non-blocking (it may be already).
            fn from(s: $std) -> $t {
                $t {
                    sock: super::sock::Sock::adopt(socket2::Socket::from(s)),
                }
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
use socket_traits;
