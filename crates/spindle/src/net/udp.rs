//! [`UdpSocket`].

use std::io;
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};

use socket2::{Domain, SockAddr, Type};

use super::resolve::each_addr;
use super::sock::{Sock, ip};

/// A UDP socket.
///
/// # Examples
///
/// ```
/// use spindle::net::UdpSocket;
///
/// spindle::run(|| {
///     let a = UdpSocket::bind("127.0.0.1:0").unwrap();
///     let b = UdpSocket::bind("127.0.0.1:0").unwrap();
///     a.send_to(b"ping", b.local_addr().unwrap()).unwrap();
///     let mut buf = [0; 8];
///     let (n, from) = b.recv_from(&mut buf).unwrap();
///     assert_eq!((&buf[..n], from), (&b"ping"[..], a.local_addr().unwrap()));
/// });
/// ```
pub struct UdpSocket {
    pub(super) sock: Sock,
}

impl UdpSocket {
    /// Binds to `addr` (port 0 picks a free port). A host name is resolved on the
    /// blocking pool.
    pub fn bind(addr: impl ToSocketAddrs + Send) -> io::Result<UdpSocket> {
        each_addr(addr, |a| {
            let sock = Sock::new(Domain::for_address(*a), Type::DGRAM)?;
            sock.socket.bind(&SockAddr::from(*a))?;
            Ok(UdpSocket { sock })
        })
    }

    /// Sends `buf` to `addr`; returns the bytes sent.
    pub fn send_to(&self, buf: &[u8], addr: impl ToSocketAddrs + Send) -> io::Result<usize> {
        each_addr(addr, |a| self.sock.send(buf, Some(&SockAddr::from(*a))))
    }

    /// Receives one datagram; returns its length and sender.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (n, from) = self.sock.recv_from(buf)?;
        Ok((n, ip(Ok(from))?))
    }

    /// Sets the default peer of [`UdpSocket::send`] and filters [`UdpSocket::recv`].
    pub fn connect(&self, addr: impl ToSocketAddrs + Send) -> io::Result<()> {
        each_addr(addr, |a| self.sock.connect(&SockAddr::from(*a), None))
    }

    /// Sends `buf` to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.sock.send(buf, None)
    }

    /// Receives one datagram from the connected peer.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.read(buf)
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        ip(self.sock.socket.local_addr())
    }

    /// The connected peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        ip(self.sock.socket.peer_addr())
    }

    /// Sets `SO_BROADCAST`: whether datagrams may go to a broadcast address.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.sock.socket.set_broadcast(on)
    }

    /// Whether `SO_BROADCAST` is set.
    pub fn broadcast(&self) -> io::Result<bool> {
        self.sock.socket.broadcast()
    }

    /// Sets the IP time-to-live.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.sock.socket.set_ttl_v4(ttl)
    }

    /// The IP time-to-live.
    pub fn ttl(&self) -> io::Result<u32> {
        self.sock.socket.ttl_v4()
    }

    /// Joins the IPv4 multicast group `group` on the interface `interface`.
    pub fn join_multicast_v4(&self, group: &Ipv4Addr, interface: &Ipv4Addr) -> io::Result<()> {
        self.sock.socket.join_multicast_v4(group, interface)
    }

    /// Leaves the IPv4 multicast group `group` on the interface `interface`.
    pub fn leave_multicast_v4(&self, group: &Ipv4Addr, interface: &Ipv4Addr) -> io::Result<()> {
        self.sock.socket.leave_multicast_v4(group, interface)
    }

    /// Sets whether multicast datagrams come back to this host.
    pub fn set_multicast_loop_v4(&self, on: bool) -> io::Result<()> {
        self.sock.socket.set_multicast_loop_v4(on)
    }

    /// Sets the time-to-live of multicast datagrams.
    pub fn set_multicast_ttl_v4(&self, ttl: u32) -> io::Result<()> {
        self.sock.socket.set_multicast_ttl_v4(ttl)
    }
}

super::socket_methods!(UdpSocket, timeouts);
super::socket_traits!(UdpSocket: std::net::UdpSocket);
