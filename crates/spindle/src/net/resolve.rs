//! Name resolution for `net`: `ToSocketAddrs` runs on the blocking pool (a DNS
//! lookup may wait on the network for seconds), never on a core. Addresses of the
//! types that never look a name up (`SocketAddr`, an IP address with a port, a slice
//! of `SocketAddr`) are taken on the spot; the type is told by its name, and one not
//! recognised only costs the trip to the pool.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

/// The names of the `ToSocketAddrs` types whose conversion does no lookup.
const NUMERIC: &[&str] = &[
    "core::net::socket_addr::SocketAddr",
    "core::net::socket_addr::SocketAddrV4",
    "core::net::socket_addr::SocketAddrV6",
    "(core::net::ip_addr::IpAddr, u16)",
    "(core::net::ip_addr::Ipv4Addr, u16)",
    "(core::net::ip_addr::Ipv6Addr, u16)",
    "[core::net::socket_addr::SocketAddr]",
];

/// Whether converting an `A` never looks a name up.
fn numeric<A: ?Sized>() -> bool {
    let name = std::any::type_name::<A>().trim_start_matches('&');
    NUMERIC.contains(&name)
}

/// The addresses `addr` resolves to: at once for a numeric address, else on the
/// runtime's blocking pool (on the calling thread outside a runtime).
pub(super) fn resolve<A: ToSocketAddrs + Send>(addr: A) -> io::Result<Vec<SocketAddr>> {
    if numeric::<A>() {
        return addr.to_socket_addrs().map(Iterator::collect);
    }
    crate::blocking::blocking_scoped(move || addr.to_socket_addrs().map(Iterator::collect))
}

/// Tries `f` on each address `addr` resolves to; the last error if none worked.
pub(super) fn each_addr<T>(
    addr: impl ToSocketAddrs + Send,
    mut f: impl FnMut(&SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last = None;
    for a in resolve(addr)? {
        match f(&a) {
            Ok(t) => return Ok(t),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "spindle::net: the address resolved to nothing: pass an IP address and port, or a host name that resolves",
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};

    #[test]
    fn numeric_addresses_are_told_from_names() {
        assert!(numeric::<SocketAddr>());
        assert!(numeric::<&SocketAddr>());
        assert!(numeric::<SocketAddrV4>());
        assert!(numeric::<(IpAddr, u16)>());
        assert!(numeric::<(Ipv4Addr, u16)>());
        assert!(numeric::<&[SocketAddr]>());
        assert!(!numeric::<&str>());
        assert!(!numeric::<String>());
        assert!(!numeric::<(&str, u16)>());
    }
}
