//! Name resolution for `net`: `ToSocketAddrs` runs on the blocking pool (a DNS
//! lookup may wait on the network for seconds), never on a core.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

/// The addresses `addr` resolves to, resolved on the runtime's blocking pool (on the
/// calling thread outside a runtime).
pub(super) fn resolve(addr: impl ToSocketAddrs + Send) -> io::Result<Vec<SocketAddr>> {
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
