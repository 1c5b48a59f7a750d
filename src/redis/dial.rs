//! Dialing a Redis node, for everything in `redis/` that talks to one: resolve a name (on
//! glommio's blocking thread, never on the event loop), open the transport (TCP or unix socket,
//! TLS if asked), and run one pipelined round trip of commands. The data connection's handshake
//! (`connect`), Sentinel and Cluster discovery, the sentinel subscriptions and `-ASK` sends all
//! use it.
//!
//! It is a leaf: it knows addresses, transports and replies, not topologies, queues or sessions,
//! and it must not log (every failure is a [`ConnectError`] that its caller reports). The TLS
//! client configuration is built once per shard ([`Dialer`] is shared by cloning) and reused by
//! every connection, so the trust store is read once, not per connection.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpStream, UnixStream};
use rustls::ClientConfig;

use super::resp::{self, Frame, ProtocolError};
use super::stream::Stream;
use super::tls::{self, TlsFiles};
use crate::config::redis_topology::HostPort;

/// How long name resolution may take. The lookup runs on a blocking thread; one that outlives
/// this is left to finish there, and the attempt fails now.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(1);
/// The largest handshake or discovery reply accepted (CLUSTER SLOTS of a large cluster fits).
const MAX_REPLY: usize = 16 << 20;

/// One place to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The host name the certificate must carry (TLS), and what log lines call the node.
    pub name: String,
    /// Where to connect.
    pub addr: Address,
}

/// A resolved address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// TCP.
    Tcp(SocketAddr),
    /// A unix socket.
    Unix(PathBuf),
}

impl std::fmt::Display for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.addr {
            Address::Tcp(addr) if addr.ip().to_string() == self.name => write!(f, "{addr}"),
            Address::Tcp(addr) => write!(f, "{} ({addr})", self.name),
            Address::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A logged-in session with a primary, ready for commands.
#[derive(Debug)]
pub struct Ready {
    /// The transport, with nothing unread in it.
    pub stream: Stream,
    /// Which node, for log lines.
    pub node: Candidate,
    /// Set when ROLE could not be asked (an ACL without it): the node was not checked.
    pub role_unchecked: Option<String>,
}

/// Why a connection attempt failed; kept apart so that each reads differently in the log.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Discovery found no node to try (no sentinel knows the primary, no slot owner).
    #[error("{0}")]
    Discovery(String),
    /// The host name did not resolve (or resolved to nothing).
    #[error("cannot resolve Redis host '{host}': {reason}")]
    Resolve {
        /// The host as written.
        host: String,
        /// The resolver's words.
        reason: String,
    },
    /// The transport failed (refused, reset, unreachable).
    #[error("{node}: {error}")]
    Io {
        /// The node tried.
        node: String,
        /// What happened.
        error: io::Error,
    },
    /// The TLS handshake failed, or the certificate was not accepted.
    #[error("TLS with {node} failed: {reason}")]
    Tls {
        /// The node tried.
        node: String,
        /// rustls's words (an unknown issuer, a name mismatch, an alert from the server).
        reason: String,
    },
    /// The TLS configuration could not be built (a file gone since start-up).
    #[error("{0}")]
    TlsConfig(String),
    /// Connect plus handshake took too long.
    #[error("{node}: timed out after {limit:?}")]
    Timeout {
        /// The node tried, or the name being resolved.
        node: String,
        /// The limit.
        limit: Duration,
    },
    /// Redis refused the handshake (WRONGPASS, NOAUTH, a bad database): the message is Redis's own.
    #[error("{0}")]
    Refused(String),
    /// The node is not a primary (ROLE answered slave or sentinel): it is not written to.
    #[error("Redis at {node} is not a primary (ROLE: {role}); not writing to it")]
    NotPrimary {
        /// The node.
        node: String,
        /// What ROLE said.
        role: String,
    },
    /// The reply stream could not be understood.
    #[error("{node}: {error}")]
    Protocol {
        /// The node.
        node: String,
        /// What was wrong.
        error: ProtocolError,
    },
}

impl ConnectError {
    /// A key that changes when the failure changes in a way worth a new log line.
    pub fn kind(&self) -> String {
        match self {
            // Per change of the first reason, not of every detail after it (Sentinel and Cluster
            // discovery list each node asked and why it gave nothing, in parentheses).
            ConnectError::Discovery(m) => format!("discovery:{}", m.split(" (").next().unwrap_or(m)),
            ConnectError::Resolve { host, .. } => format!("resolve:{host}"),
            ConnectError::Io { node, error } => format!("io:{node}:{:?}", error.kind()),
            ConnectError::Tls { node, reason } => format!("tls:{node}:{reason}"),
            ConnectError::TlsConfig(m) => format!("tlsconfig:{m}"),
            ConnectError::Timeout { node, .. } => format!("timeout:{node}"),
            ConnectError::Refused(m) => format!("refused:{m}"),
            ConnectError::NotPrimary { node, role } => format!("role:{node}:{role}"),
            ConnectError::Protocol { node, .. } => format!("protocol:{node}"),
        }
    }

    /// Whether the next candidate address is worth trying (the node was not reached at all).
    pub fn try_next(&self) -> bool {
        matches!(self, ConnectError::Io { .. } | ConnectError::Timeout { .. })
    }

    /// Whether this is an ordinary "nothing there" failure rather than a misconfiguration or a
    /// wrong node, for the log level.
    pub fn is_unreachable(&self) -> bool {
        self.try_next()
    }
}

/// Opens transports, with TLS when asked. Cloning shares the TLS configuration: one per shard.
#[derive(Debug, Clone)]
pub struct Dialer(Rc<DialerState>);

#[derive(Debug)]
struct DialerState {
    /// `--redis-tls-*`.
    files: TlsFiles,
    /// Built on first use (on the blocking thread: it reads files) and kept for the shard's life;
    /// `None` until then.
    config: RefCell<Option<Arc<ClientConfig>>>,
}

impl Dialer {
    /// A dialer with these TLS files; nothing is read until the first TLS connection.
    pub fn new(files: TlsFiles) -> Dialer {
        Dialer(Rc::new(DialerState { files, config: RefCell::new(None) }))
    }

    /// Opens the transport to `node`, with TLS (verified against `node.name`) when `tls`.
    pub async fn open(&self, node: &Candidate, tls: bool) -> Result<Stream, ConnectError> {
        let io_error = |error: io::Error| ConnectError::Io { node: node.to_string(), error };
        let tcp = match &node.addr {
            Address::Unix(path) => {
                return Ok(Stream::Unix(UnixStream::connect(path).await.map_err(|e| io_error(e.into()))?));
            }
            Address::Tcp(addr) => {
                let s = TcpStream::connect(*addr).await.map_err(|e| io_error(e.into()))?;
                s.set_nodelay(true).map_err(|e| io_error(e.into()))?;
                s
            }
        };
        if !tls {
            return Ok(Stream::Tcp(tcp));
        }
        let config = self.tls_config().await?;
        let name =
            tls::server_name(&node.name).map_err(|reason| ConnectError::Tls { node: node.to_string(), reason })?;
        let tls = futures_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| ConnectError::Tls { node: node.to_string(), reason: tls_reason(&e) })?;
        Ok(Stream::Tls(Box::new(tls)))
    }

    /// Resolves `node` and opens a transport to its first address (sentinels, cluster nodes:
    /// names that one address serves).
    pub async fn open_host(&self, node: &HostPort, tls: bool) -> Result<(Candidate, Stream), ConnectError> {
        let addr = *resolve(&node.host, node.port).await?.first().expect("resolve returns at least one address");
        let candidate = Candidate { name: node.host.clone(), addr: Address::Tcp(addr) };
        let stream = self.open(&candidate, tls).await?;
        Ok((candidate, stream))
    }

    async fn tls_config(&self) -> Result<Arc<ClientConfig>, ConnectError> {
        if let Some(config) = &*self.0.config.borrow() {
            return Ok(config.clone());
        }
        let files = self.0.files.clone();
        let built = glommio::executor().spawn_blocking(move || tls::client_config(&files)).await;
        let config = built.map_err(|e| ConnectError::TlsConfig(format!("{}: {e}", e.flag())))?;
        // Two connections may have started building at once; the first one kept wins, so every
        // later connection shares one configuration.
        Ok(self.0.config.borrow_mut().get_or_insert(config).clone())
    }
}

/// Appends `AUTH [user] password` to `out` when the target has a password; returns how many
/// replies that adds (0 or 1).
pub fn encode_auth(out: &mut Vec<u8>, user: Option<&str>, password: Option<&str>) -> usize {
    match (user, password) {
        (Some(u), Some(p)) => resp::encode_command(out, &[b"AUTH", u.as_bytes(), p.as_bytes()]),
        (None, Some(p)) => resp::encode_command(out, &[b"AUTH", p.as_bytes()]),
        (_, None) => return 0,
    }
    1
}

/// rustls's reason, without io::Error's wrapping.
fn tls_reason(e: &io::Error) -> String {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(tls) => tls.to_string(),
        None => e.to_string(),
    }
}

/// Resolves `host` on glommio's blocking thread. An IP address is taken as it is.
pub async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, ConnectError> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let name = host.to_string();
    let lookup =
        glommio::executor().spawn_blocking(move || (name.as_str(), port).to_socket_addrs().map(Vec::from_iter));
    let failed = |reason: String| ConnectError::Resolve { host: host.to_string(), reason };
    match within(RESOLVE_TIMEOUT, lookup).await {
        None => Err(failed(format!("no answer within {RESOLVE_TIMEOUT:?}"))),
        Some(Err(e)) => Err(failed(e.to_string())),
        Some(Ok(addrs)) if addrs.is_empty() => Err(failed("no addresses".into())),
        Some(Ok(addrs)) => Ok(addrs),
    }
}

/// Runs `fut` for at most `limit`.
pub async fn within<T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        glommio::timer::sleep(limit).await;
        None
    })
    .await
}

/// Writes `commands` (already encoded) and reads `replies` replies, in order. Error replies are
/// returned as [`Frame::Error`], not as errors: the caller knows which ones matter.
pub async fn roundtrip(
    stream: &mut Stream,
    node: &Candidate,
    commands: &[u8],
    replies: usize,
) -> Result<Vec<Frame>, ConnectError> {
    let io_error = |error: io::Error| match error.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        // A server that wants a client certificate says so with an alert after the handshake.
        Some(tls) => ConnectError::Tls { node: node.to_string(), reason: tls.to_string() },
        None => ConnectError::Io { node: node.to_string(), error },
    };
    stream.write_all(commands).await.map_err(io_error)?;
    stream.flush().await.map_err(io_error)?;
    let mut frames = Vec::with_capacity(replies);
    let mut buf = vec![0u8; 4096];
    let (mut start, mut end) = (0, 0);
    while frames.len() < replies {
        match resp::decode_frame(&buf[start..end]) {
            Ok(Some((frame, used))) => {
                frames.push(frame);
                start += used;
                continue;
            }
            Ok(None) => {}
            Err(error) => return Err(ConnectError::Protocol { node: node.to_string(), error }),
        }
        if end == buf.len() {
            if buf.len() >= MAX_REPLY {
                let error = ProtocolError("reply too long".into());
                return Err(ConnectError::Protocol { node: node.to_string(), error });
            }
            buf.resize(buf.len() * 2, 0);
        }
        let n = stream.read(&mut buf[end..]).await.map_err(io_error)?;
        if n == 0 {
            return Err(io_error(io::Error::new(io::ErrorKind::UnexpectedEof, "Redis closed the connection")));
        }
        end += n;
    }
    if start != end {
        let error = ProtocolError("more replies than commands".into());
        return Err(ConnectError::Protocol { node: node.to_string(), error });
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_read_well_in_log_lines() {
        let ip = Candidate { name: "127.0.0.1".into(), addr: Address::Tcp("127.0.0.1:7000".parse().unwrap()) };
        assert_eq!(ip.to_string(), "127.0.0.1:7000");
        let named = Candidate { name: "localhost".into(), addr: Address::Tcp("[::1]:7000".parse().unwrap()) };
        assert_eq!(named.to_string(), "localhost ([::1]:7000)");
    }

    #[test]
    fn auth_is_encoded_only_with_a_password() {
        let mut out = Vec::new();
        assert_eq!(encode_auth(&mut out, Some("u"), None), 0);
        assert!(out.is_empty());
        assert_eq!(encode_auth(&mut out, Some("u"), Some("p")), 1);
        assert_eq!(out, b"*3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$1\r\np\r\n");
    }
}
