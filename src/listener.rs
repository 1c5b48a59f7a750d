//! Listening sockets: one SO_REUSEPORT listener per shard, all with identical options.
//!
//! The supervisor creates every listener (so a reuseport group is owned by one user, and a root
//! supervisor can bind port 80 before anything drops privileges) and keeps its own copy of each.
//! This module owns socket options, the probe that stops a second server from silently joining the
//! group, and ejecting a listener from the group. It must not accept connections: shards do that.
//! [`shared`] holds the listeners all shards share (unix sockets, inherited and systemd's sockets).

pub mod shared;

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

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

/// The options every shard's listener is created with; identical on all of them, so that connections
/// can migrate between them (`tcp_migrate_req`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenOptions {
    /// `listen()` backlog (`--backlog`).
    pub backlog: u32,
    /// TCP_DEFER_ACCEPT: the kernel hands a connection to accept only once its first bytes have
    /// arrived, or after this long (`--header-timeout` up to [`MAX_DEFER_ACCEPT`], rounded up to
    /// whole seconds).
    pub defer_accept_secs: u32,
}

/// The longest the kernel holds a silent connection before accept. A connection held there costs
/// no slot but sits in the SYN queue; its deadline starts once it is accepted, so a long
/// `--header-timeout` (60 s by default) need not keep silent connections in the kernel as long.
pub const MAX_DEFER_ACCEPT: Duration = Duration::from_secs(2);

impl ListenOptions {
    /// The options a configuration asks for.
    pub fn of(config: &crate::config::Config) -> ListenOptions {
        ListenOptions { backlog: config.backlog, defer_accept_secs: defer_accept_secs(config.header_timeout) }
    }
}

/// The TCP_DEFER_ACCEPT hold for a `--header-timeout`: the timeout up to [`MAX_DEFER_ACCEPT`],
/// in whole seconds, at least one.
fn defer_accept_secs(header_timeout: Duration) -> u32 {
    header_timeout.min(MAX_DEFER_ACCEPT).as_secs_f64().ceil().max(1.0) as u32
}

/// Creates one shard's listener: SO_REUSEADDR, SO_REUSEPORT, TCP_NODELAY (inherited by accepted
/// sockets), TCP_DEFER_ACCEPT, non-blocking, bound to `addr` and listening with `backlog`.
///
/// Non-blocking lets a retiring shard empty the accept queue with plain `accept4` calls that
/// return at once when it is empty; glommio's own accept keeps the flag as it finds it.
///
/// TCP_DEFER_ACCEPT (nginx's `deferred`): an HTTP client speaks first, so a connection is only worth
/// accepting once its request has arrived. The shard then reads the request with its first `recv`
/// instead of finding nothing and arming a poll for it: measured with ab -c 500 on the 2-core VM, shard
/// CPU per 1000 connections 50 ms without, 31 ms with (docs/performance.md). Connections that send
/// nothing stay in the kernel, not in a shard's connection slots, until the deadline.
pub fn open(addr: SocketAddr, options: ListenOptions) -> Result<Socket, ListenError> {
    let sock = bind(addr, options)?;
    listen(&sock, options).map_err(|source| ListenError::Io { addr, step: "listen", source })?;
    Ok(sock)
}

/// As [`open`], without the `listen()`: a bound socket that joins the reuseport group only when
/// [`listen`] is called on it (by its shard once it can accept, or by the supervisor once the shard
/// has booted). Until then no connection can land in a queue nobody would serve.
pub fn bind(addr: SocketAddr, options: ListenOptions) -> Result<Socket, ListenError> {
    let io = |step| move |source| ListenError::Io { addr, step, source };
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(io("socket"))?;
    sock.set_reuse_address(true).map_err(io("SO_REUSEADDR"))?;
    sock.set_reuse_port(true).map_err(io("SO_REUSEPORT"))?;
    sock.set_nodelay(true).map_err(io("TCP_NODELAY"))?;
    sock.set_nonblocking(true).map_err(io("O_NONBLOCK"))?;
    set_defer_accept(&sock, options.defer_accept_secs).map_err(io("TCP_DEFER_ACCEPT"))?;
    sock.bind(&addr.into()).map_err(|e| match e.kind() {
        io::ErrorKind::AddrInUse => ListenError::InUse(addr),
        _ => io("bind")(e),
    })?;
    Ok(sock)
}

/// `listen()` with the configured backlog. On a socket already listening it only sets the backlog
/// again, so the shard and the supervisor may both call it.
pub fn listen(sock: &Socket, options: ListenOptions) -> io::Result<()> {
    sock.listen(options.backlog.min(i32::MAX as u32) as i32)
}

fn set_defer_accept(sock: &Socket, secs: u32) -> io::Result<()> {
    let value = secs.min(i32::MAX as u32) as libc::c_int;
    // SAFETY: a valid socket, and a valid pointer and length for an int option.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
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

/// A socket's identity, the same in every process and whatever its descriptor number: the inode
/// of its socket file (`fstat`). Ownership is decided by it, never by descriptor numbers, which a
/// HUP replacement's copy or another process's copy do not share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SockId {
    dev: u64,
    ino: u64,
}

/// The identity of the socket behind `fd`; `None` if it is not open.
pub fn identity(fd: &impl AsRawFd) -> Option<SockId> {
    // SAFETY: fstat on a descriptor number with a valid, zeroed stat buffer; a closed one is an error.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let ok = unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } == 0;
    ok.then_some(SockId { dev: st.st_dev, ino: st.st_ino })
}

/// Takes a listener out of its reuseport group at once: new connections go to the other shards,
/// and with `net.ipv4.tcp_migrate_req=1` the ones queued on it move too (otherwise they are reset).
/// Works on any copy of the socket, so the supervisor can eject a stalled shard's listener; for the
/// same reason it must only be called on a socket no other process holds (the supervisor checks its
/// owners first: src/supervisor/owners.rs).
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
    fn the_kernel_holds_a_silent_connection_at_most_two_seconds() {
        let secs = |ms| defer_accept_secs(Duration::from_millis(ms));
        assert_eq!((secs(100), secs(1000), secs(1500), secs(2000)), (1, 1, 2, 2));
        assert_eq!((secs(60_000), secs(3_600_000)), (2, 2), "a long --header-timeout holds no longer");
    }

    #[test]
    fn a_bound_socket_joins_the_group_only_when_it_listens() {
        let options = ListenOptions { backlog: 16, defer_accept_secs: 2 };
        let first = open("127.0.0.1:0".parse().unwrap(), options).unwrap();
        let later = bind(local_addr(&first).unwrap(), options).unwrap();
        assert!(!is_listening(&later));
        listen(&later, options).unwrap();
        listen(&later, options).unwrap();
        assert!(is_listening(&later));
    }

    #[test]
    fn shards_share_a_port_and_the_probe_sees_them() {
        let options = ListenOptions { backlog: 16, defer_accept_secs: 2 };
        let first = open("127.0.0.1:0".parse().unwrap(), options).unwrap();
        let addr = local_addr(&first).unwrap();
        let second = open(addr, options).unwrap();
        assert!(is_listening(&first) && is_listening(&second));
        assert!(matches!(probe(addr), Err(ListenError::InUse(_))));
        eject(&second);
        assert!(!is_listening(&second));
        assert!(is_listening(&first));
        // A copy is the same socket, another descriptor number; another socket is another identity.
        let copy = first.try_clone().unwrap();
        assert_eq!(identity(&copy), identity(&first));
        assert_ne!(identity(&first), identity(&second));
    }
}
