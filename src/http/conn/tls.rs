//! The start of an HTTPS connection: telling a TLS client from a plain-HTTP one, and the TLS
//! handshake, both within `--header-timeout`.
//!
//! It owns the shard's acceptor (built at boot from the HTTPS files and the session-ticket secret
//! the supervisor passed), which listeners speak TLS, and the rate limit on its one log line. The
//! handshake is a task like any other on the shard's io_uring loop: it waits for the client's
//! bytes without blocking the shard's other connections, and its CPU work (one signature per full
//! handshake) is bounded by the client's round trips. It must not consume request bytes: any that
//! arrive with the handshake stay in the TLS stream for the loop.

use std::cell::Cell;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_lite::FutureExt;
use futures_rustls::TlsAcceptor;
use futures_rustls::server::TlsStream;
use glommio::net::TcpStream;
use rustls::ServerConfig;
use tracing::{debug, warn};

use crate::https::Https;

/// The first byte of every TLS connection: a handshake record.
const HANDSHAKE_RECORD: u8 = 0x16;

/// How often, at most, plain-HTTP connections on an HTTPS listener are reported.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// A shard's HTTPS acceptor.
pub struct Tls {
    acceptor: TlsAcceptor,
    /// Plain-HTTP connections closed since the last report.
    plain: Cell<u64>,
    /// When they were last reported (`None`: never).
    reported: Cell<Option<Instant>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("plain", &self.plain).finish_non_exhaustive()
    }
}

impl Tls {
    /// The acceptor for a configuration built by [`crate::https::server_config`].
    pub fn new(config: Arc<ServerConfig>) -> Tls {
        Tls { acceptor: TlsAcceptor::from(config), plain: Cell::new(0), reported: Cell::new(None) }
    }

    /// A shard's acceptor: the session-ticket secret from the memfd the supervisor passed (`None`:
    /// an older supervisor's hand-off; a key of this process's own), then the files, read now.
    /// Blocking file I/O, at boot. The error is the boot failure's reason.
    pub fn boot(https: &Https, ticket_fd: Option<RawFd>) -> Result<Tls, String> {
        let secret = ticket_fd
            .map(crate::https::tickets::read_secret)
            .transpose()
            .map_err(|e| format!("cannot read the TLS session-ticket secret: {e}"))?;
        let config = crate::https::server_config(https, SystemTime::now(), secret.as_ref())
            .map_err(|e| format!("invalid value for '{}': {e}", e.flag))?;
        Ok(Tls::new(config))
    }

    /// Says, at most once per [`REPORT_EVERY`], that plain-HTTP connections were closed.
    fn plain_http(&self, peer: Option<IpAddr>) {
        let n = self.plain.get() + 1;
        let due = self.reported.get().is_none_or(|t| t.elapsed() >= REPORT_EVERY);
        if !due {
            self.plain.set(n);
            return;
        }
        let from = peer.map_or_else(|| "-".to_string(), |p| p.to_string());
        let others = if n > 1 { format!(" ({} others since the last such line)", n - 1) } else { String::new() };
        warn!("closing a connection from {from}: it sent plain HTTP to an HTTPS listener (use https://){others}");
        self.plain.set(0);
        self.reported.set(Some(Instant::now()));
    }
}

/// Whether connections on the listener `fd` start with TLS when HTTPS is on: TCP ones do; unix:
/// sockets stay plain (a local proxy in front has ended TLS already). A listener that cannot say
/// what it is gets HTTPS, never plain text where HTTPS was asked for.
pub fn serves(fd: RawFd) -> bool {
    // SAFETY: the caller's listening socket, open while it asks.
    let listener = unsafe { BorrowedFd::borrow_raw(fd) };
    !matches!(socket2::SockRef::from(&listener).local_addr(), Ok(addr) if addr.as_socket().is_none())
}

/// Why a connection ended before its handshake completed, for the caller's counters.
#[derive(Debug)]
pub(super) enum NoTls {
    /// It closed, or sent nothing within the deadline.
    Silent,
    /// It spoke plain HTTP (closed, reported as rate limits allow).
    PlainHttp,
    /// The handshake failed (logged at debug: the client's fault).
    Failed,
}

/// Waits for the client's first byte, closes a plain-HTTP client, and completes the handshake, all
/// within `limit`.
pub(super) async fn handshake(
    tls: &Tls,
    stream: TcpStream,
    peer: Option<IpAddr>,
    limit: Duration,
) -> Result<Box<TlsStream<TcpStream>>, NoTls> {
    let deadline = Instant::now() + limit;
    match first_byte(&stream, deadline).await {
        Ok(Some(HANDSHAKE_RECORD)) => {}
        Ok(Some(_)) => {
            tls.plain_http(peer);
            return Err(NoTls::PlainHttp);
        }
        Ok(None) => return Err(NoTls::Silent),
        Err(e) => {
            debug!("connection ended before its TLS handshake: {e}");
            return Err(NoTls::Silent);
        }
    }
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    if stream.set_read_timeout(Some(left)).is_err() || stream.set_write_timeout(Some(left)).is_err() {
        return Err(NoTls::Silent);
    }
    let accept = async { Some(tls.acceptor.accept(stream).await) };
    let late = async {
        glommio::timer::sleep(left).await;
        None
    };
    match accept.or(late).await {
        Some(Ok(stream)) => {
            // The connection's reads are bounded by their own deadlines (its registry entry, checked
            // by the shard's tick), not by the socket's timeout: the handshake's must not outlive it.
            if stream.get_ref().0.set_read_timeout(None).is_err() {
                return Err(NoTls::Silent);
            }
            Ok(Box::new(stream))
        }
        Some(Err(e)) => {
            let from = peer.map_or_else(|| "-".to_string(), |p| p.to_string());
            debug!("TLS handshake with {from} failed: {e}");
            Err(NoTls::Failed)
        }
        None => {
            debug!("TLS handshake not complete within --header-timeout");
            Err(NoTls::Silent)
        }
    }
}

/// The client's first byte, peeked (left in the socket for rustls), or `None` when it closed.
async fn first_byte(stream: &TcpStream, deadline: Instant) -> io::Result<Option<u8>> {
    let fd = stream.as_raw_fd();
    loop {
        let mut byte = 0u8;
        // SAFETY: a valid socket and a valid one-byte buffer.
        let n = unsafe { libc::recv(fd, (&raw mut byte).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
        match n {
            1 => return Ok(Some(byte)),
            0 => return Ok(None),
            _ => {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => {}
                    _ => return Err(e),
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let ready = async { glommio::net::wait_readable(fd).await };
        let late = async {
            glommio::timer::sleep(left).await;
            Err(io::ErrorKind::TimedOut.into())
        };
        ready.or(late).await?;
    }
}
