//! Listening sockets: one SO_REUSEPORT listener per shard, all with identical options.
//!
//! The supervisor creates every listener (so a reuseport group is owned by one user, and a root
//! supervisor can bind port 80 before anything drops privileges) and keeps its own copy of each.
//! This module owns socket options, the probe that stops a second server from silently joining the
//! group, and ejecting a listener from the group. It must not accept connections: shards do that.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

/// Why a listener could not be created, with the address and the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Something else is listening on the address: another server, or another hitcore.
    #[error("Connection in use: {0}")]
    InUse(SocketAddr),
    /// Any other failure, with the step.
    #[error("cannot listen on {addr}: {step}: {source}")]
    Io {
        /// The address.
        addr: SocketAddr,
        /// What was being done.
        step: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

/// Checks that nothing listens on `addr` yet, by binding it without SO_REUSEPORT: a reuseport
/// group (another hitcore) would otherwise accept our listeners silently and split the traffic.
/// Port 0 needs no probe.
pub fn probe(addr: SocketAddr) -> Result<(), ListenError> {
    if addr.port() == 0 {
        return Ok(());
    }
    let io = |step| move |source| ListenError::Io { addr, step, source };
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(io("socket"))?;
    // SO_REUSEADDR only lets us bind over connections lingering in TIME_WAIT; it does not let us
    // share a port that is listening.
    sock.set_reuse_address(true).map_err(io("SO_REUSEADDR"))?;
    match sock.bind(&addr.into()) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(ListenError::InUse(addr)),
        Err(e) => Err(io("bind")(e)),
        Ok(()) => Ok(()),
    }
}

/// Creates one shard's listener: SO_REUSEADDR, SO_REUSEPORT, TCP_NODELAY (inherited by accepted
/// sockets), non-blocking, bound to `addr` and listening with `backlog`.
///
/// Non-blocking lets a retiring shard empty the accept queue with plain `accept4` calls that
/// return at once when it is empty; glommio's own accept keeps the flag as it finds it.
pub fn open(addr: SocketAddr, backlog: u32) -> Result<Socket, ListenError> {
    let io = |step| move |source| ListenError::Io { addr, step, source };
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(io("socket"))?;
    sock.set_reuse_address(true).map_err(io("SO_REUSEADDR"))?;
    sock.set_reuse_port(true).map_err(io("SO_REUSEPORT"))?;
    sock.set_nodelay(true).map_err(io("TCP_NODELAY"))?;
    sock.set_nonblocking(true).map_err(io("O_NONBLOCK"))?;
    sock.bind(&addr.into()).map_err(|e| match e.kind() {
        io::ErrorKind::AddrInUse => ListenError::InUse(addr),
        _ => io("bind")(e),
    })?;
    sock.listen(backlog.min(i32::MAX as u32) as i32).map_err(io("listen"))?;
    Ok(sock)
}

/// The address a listener is bound to (the real port when bound to port 0).
pub fn local_addr(sock: &Socket) -> io::Result<SocketAddr> {
    sock.local_addr()?.as_socket().ok_or_else(|| io::Error::other("not an IP socket"))
}

/// Whether the socket is still a listener: false once it has been shut down (ejected).
pub fn is_listening(sock: &Socket) -> bool {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: valid fd, pointer and length for an int option.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    rc == 0 && value != 0
}

/// Takes a listener out of its reuseport group at once: new connections go to the other shards,
/// and with `net.ipv4.tcp_migrate_req=1` the ones queued on it move too (otherwise they are reset).
/// Works on any copy of the socket, so the supervisor can eject a stalled shard's listener.
pub fn eject(sock: &Socket) {
    let _ = sock.shutdown(std::net::Shutdown::Both);
}

/// Reads `net.ipv4.tcp_migrate_req`; `None` if the kernel does not have it.
pub fn migrate_req() -> Option<bool> {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req").ok().map(|s| s.trim() != "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_share_a_port_and_the_probe_sees_them() {
        let first = open("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let addr = local_addr(&first).unwrap();
        let second = open(addr, 16).unwrap();
        assert!(is_listening(&first) && is_listening(&second));
        assert!(matches!(probe(addr), Err(ListenError::InUse(_))));
        eject(&second);
        assert!(!is_listening(&second));
        assert!(is_listening(&first));
    }
}
