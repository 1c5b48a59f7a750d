//! From a target to a ready session: find the node ([`Discovery`]), open the transport (TCP or
//! unix socket, TLS if asked), log in (AUTH, SELECT, CLIENT SETNAME, PING) and check with `ROLE`
//! that the node is a primary, all as one pipelined round trip.
//!
//! This is the seam every topology plugs into. Today [`Discovery::Direct`] resolves the URL's
//! host again at every connect, on glommio's blocking thread (never on the event loop), and tries
//! its addresses in order. Sentinel (ask the sentinels for the primary) and Cluster (the owner of
//! the key's slot) add their own variants to [`Discovery`]; they may use [`Connector::open`] and
//! [`roundtrip`] to talk to sentinels and seed nodes.
//!
//! It owns no state of the running session (queue, pipelining, reconnect policy): that is
//! `client`'s. It must not log either: every failure is a [`ConnectError`] that `client` reports
//! once per change.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpStream, UnixStream};
use rustls::ClientConfig;

use super::cluster_discovery::ClusterDiscovery;
use super::resp::{self, Frame, ProtocolError};
use super::sentinel_discovery::SentinelDiscovery;
use super::stream::Stream;
use super::tls::{self, TlsFiles};
use super::url::{Endpoint, RedisTarget};

/// How long one connect plus handshake may take before the attempt counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long name resolution may take. The lookup runs on a blocking thread; one that outlives
/// this is left to finish there, and the attempt fails now.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(1);
/// The largest handshake or discovery reply accepted (CLUSTER SLOTS of a large cluster fits).
const MAX_REPLY: usize = 16 << 20;

/// How the node to connect to is found, at every connect.
#[derive(Debug, Clone)]
pub enum Discovery {
    /// The URL's own host (resolved anew each time) or unix socket.
    Direct,
    /// Ask the sentinels for the primary (`redis+sentinel://`).
    Sentinel(SentinelDiscovery),
    /// The owner of the key's slot (`redis+cluster://`); the client sets the key.
    Cluster(ClusterDiscovery),
}

/// Why the last session ended, told to discovery before the next connect: Sentinel asks the
/// sentinels again, Cluster refreshes its slot map or follows a redirect. Direct needs none of it
/// (it resolves the name again anyway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionHint {
    /// The connection broke, timed out or went out of step.
    Broken,
    /// The node refused a write as not a writable primary (`-READONLY`, `-LOADING`, `-MASTERDOWN`).
    NotPrimary,
    /// A Cluster redirect: the reply's text, such as `MOVED 866 127.0.0.1:7001`.
    Redirect(String),
    /// Fewer replicas than `--wait-replicas` acknowledged a write.
    NotDurable,
}

impl Discovery {
    /// The discovery a target calls for.
    pub fn for_target(target: &RedisTarget) -> Discovery {
        match &target.endpoint {
            Endpoint::Tcp { .. } | Endpoint::Unix(_) => Discovery::Direct,
            Endpoint::Sentinel { sentinels, service, tls } => Discovery::Sentinel(SentinelDiscovery::new(
                sentinels.clone(),
                service.clone(),
                target.sentinel_password.clone(),
                *tls,
            )),
            // The slot is the key's: `Connector::new` sets it from the key it is given.
            Endpoint::Cluster { seeds, tls } => Discovery::Cluster(ClusterDiscovery::new(seeds.clone(), "hit", *tls)),
        }
    }
}

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
    fn try_next(&self) -> bool {
        matches!(self, ConnectError::Io { .. } | ConnectError::Timeout { .. })
    }

    /// Whether this is an ordinary "nothing there" failure rather than a misconfiguration or a
    /// wrong node, for the log level.
    pub fn is_unreachable(&self) -> bool {
        self.try_next()
    }
}

/// What one shard needs to connect: the target, its login and TLS files, and the key (whose slot
/// decides the node in a Cluster).
#[derive(Debug)]
pub struct Connector {
    target: RedisTarget,
    /// The counter key (Cluster discovery has its slot).
    #[allow(dead_code, reason = "kept for log lines and future discovery")]
    key: String,
    tls_files: TlsFiles,
    /// Built on first use (on the blocking thread: it reads files) and kept.
    tls: Option<Arc<ClientConfig>>,
    discovery: Discovery,
    /// `CLIENT SETNAME` value.
    client_name: String,
}

impl Connector {
    /// A connector for `target`; nothing is read or resolved until [`Connector::connect`].
    pub fn new(target: RedisTarget, key: String, tls_files: TlsFiles, client_name: String) -> Connector {
        let mut discovery = Discovery::for_target(&target);
        if let Discovery::Cluster(cluster) = &mut discovery {
            cluster.set_key(&key);
        }
        Connector { target, key, tls_files, tls: None, discovery, client_name }
    }

    /// Tells discovery why the last session ended, before the next [`Connector::connect`].
    pub fn session_ended(&mut self, hint: SessionHint) {
        // Sentinel asks the sentinels again at every connect, and Cluster learns the slot map
        // again, whatever ended the session; Direct resolves the name again. Only a -MOVED names
        // a node to go to: the client follows it itself (`discovery_mut`), this covers any other path.
        if let (Discovery::Cluster(cluster), SessionHint::Redirect(message)) = (&mut self.discovery, hint) {
            if let Some(crate::redis::slots::Redirect::Moved { to, .. }) =
                crate::redis::slots::Redirect::parse(message.as_bytes(), "")
            {
                if !to.host.is_empty() {
                    cluster.moved(to);
                }
            }
        }
    }

    /// The target, for log lines (its `Display` is redacted).
    pub fn target(&self) -> &RedisTarget {
        &self.target
    }

    /// The discovery, for the client to tell it what a session learnt (the key, a `-MOVED`).
    pub fn discovery_mut(&mut self) -> &mut Discovery {
        &mut self.discovery
    }

    /// Finds the node, connects, logs in and checks it is a primary.
    pub async fn connect(&mut self) -> Result<Ready, ConnectError> {
        let candidates = self.discover().await?;
        let mut last = None;
        for node in candidates {
            match within(CONNECT_TIMEOUT, self.connect_to(&node)).await {
                Some(Ok(ready)) => return Ok(ready),
                Some(Err(e)) if !e.try_next() => return Err(e),
                Some(Err(e)) => last = Some(e),
                None => last = Some(ConnectError::Timeout { node: node.to_string(), limit: CONNECT_TIMEOUT }),
            }
        }
        Err(last.unwrap_or_else(|| ConnectError::Discovery("no Redis node to connect to".into())))
    }

    /// The candidates for this attempt, in the order to try them.
    async fn discover(&mut self) -> Result<Vec<Candidate>, ConnectError> {
        // Sentinel and Cluster discovery talk to other nodes through this connector (`open`, for
        // TLS), so they are taken out of it for the duration and put back.
        if !matches!(self.discovery, Discovery::Direct) {
            let mut discovery = std::mem::replace(&mut self.discovery, Discovery::Direct);
            let target = self.target.clone();
            let found = match &mut discovery {
                Discovery::Sentinel(sentinels) => sentinels.candidates(self).await,
                Discovery::Cluster(cluster) => cluster.candidates(self, &target).await,
                Discovery::Direct => unreachable!("matched above"),
            };
            self.discovery = discovery;
            return found;
        }
        match &self.discovery {
            Discovery::Direct => match &self.target.endpoint {
                Endpoint::Tcp { host, port, .. } => {
                    let addrs = resolve(host, *port).await?;
                    Ok(addrs.into_iter().map(|a| Candidate { name: host.clone(), addr: Address::Tcp(a) }).collect())
                }
                Endpoint::Unix(path) => {
                    Ok(vec![Candidate { name: path.display().to_string(), addr: Address::Unix(path.clone()) }])
                }
                Endpoint::Sentinel { .. } | Endpoint::Cluster { .. } => {
                    unreachable!("for_target gives these their own discovery")
                }
            },
            Discovery::Sentinel(_) | Discovery::Cluster(_) => unreachable!("handled above"),
        }
    }

    async fn connect_to(&mut self, node: &Candidate) -> Result<Ready, ConnectError> {
        let mut stream = self.open(node, self.target.tls()).await?;
        let role_unchecked = handshake(&self.target, &self.client_name, node, &mut stream).await?;
        Ok(Ready { stream, node: node.clone(), role_unchecked })
    }

    /// Opens the transport to `node`, with TLS (verified against `node.name`) when `tls`.
    pub async fn open(&mut self, node: &Candidate, tls: bool) -> Result<Stream, ConnectError> {
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

    async fn tls_config(&mut self) -> Result<Arc<ClientConfig>, ConnectError> {
        if let Some(config) = &self.tls {
            return Ok(config.clone());
        }
        let files = self.tls_files.clone();
        let built = glommio::executor().spawn_blocking(move || tls::client_config(&files)).await;
        let config = built.map_err(|e| ConnectError::TlsConfig(format!("{}: {e}", e.flag())))?;
        self.tls = Some(config.clone());
        Ok(config)
    }
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

/// AUTH, SELECT, CLIENT SETNAME, PING and ROLE in one write, their replies checked in order.
/// Returns why ROLE could not be checked, if it could not (an ACL user without it).
async fn handshake(
    target: &RedisTarget,
    client_name: &str,
    node: &Candidate,
    stream: &mut Stream,
) -> Result<Option<String>, ConnectError> {
    let (out, expect) = handshake_commands(target, client_name);
    let frames = roundtrip(stream, node, &out, expect.len()).await?;
    let mut role_unchecked = None;
    for (step, frame) in expect.iter().zip(&frames) {
        match (step, frame) {
            (Step::Login(what), Frame::Error(message)) => {
                return Err(ConnectError::Refused(format!("{what} failed: {message}")));
            }
            (Step::Login(_), Frame::SimpleString(_)) | (Step::Optional, _) => {}
            (Step::Role, Frame::Error(message)) => role_unchecked = Some(message.clone()),
            (Step::Role, frame) => match role_of(frame) {
                Some("master") => {}
                Some(role) => return Err(ConnectError::NotPrimary { node: node.to_string(), role: role.into() }),
                None => {
                    let error = ProtocolError("unexpected reply to ROLE".into());
                    return Err(ConnectError::Protocol { node: node.to_string(), error });
                }
            },
            (Step::Login(what), _) => {
                let error = ProtocolError(format!("unexpected reply to {what}"));
                return Err(ConnectError::Protocol { node: node.to_string(), error });
            }
        }
    }
    Ok(role_unchecked)
}

/// What a handshake reply is checked for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// Must answer a status (+OK, +PONG); an error refuses the connection.
    Login(String),
    /// Its failure does not matter (CLIENT SETNAME).
    Optional,
    /// ROLE: must say master. An error (NOPERM) leaves the node unchecked.
    Role,
}

fn handshake_commands(target: &RedisTarget, client_name: &str) -> (Vec<u8>, Vec<Step>) {
    let mut out = Vec::new();
    let mut expect = Vec::new();
    if let Some(password) = &target.password {
        match &target.user {
            Some(user) => {
                resp::encode_command(&mut out, &[b"AUTH", user.as_bytes(), password.as_bytes()]);
                expect.push(Step::Login(format!("AUTH as user '{user}'")));
            }
            None => {
                resp::encode_command(&mut out, &[b"AUTH", password.as_bytes()]);
                expect.push(Step::Login("AUTH".into()));
            }
        }
    }
    if target.db != 0 {
        resp::encode_command(&mut out, &[b"SELECT", itoa::Buffer::new().format(target.db).as_bytes()]);
        expect.push(Step::Login(format!("SELECT {}", target.db)));
    }
    resp::encode_command(&mut out, &[b"CLIENT", b"SETNAME", client_name.as_bytes()]);
    expect.push(Step::Optional);
    // PING proves the session works: without AUTH against a server that wants it, this is NOAUTH.
    resp::encode_command(&mut out, &[b"PING"]);
    expect.push(Step::Login("PING".into()));
    resp::encode_command(&mut out, &[b"ROLE"]);
    expect.push(Step::Role);
    (out, expect)
}

/// The first element of a ROLE reply: `master`, `slave` or `sentinel`.
fn role_of(frame: &Frame) -> Option<&str> {
    match frame {
        Frame::Array(items) => items.first().and_then(resp::frame_text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handshake_is_one_write_with_role_last() {
        let target = RedisTarget::parse("redis://alice:pw@127.0.0.1/3").unwrap();
        let (out, expect) = handshake_commands(&target, "hitcore-shard-0");
        let text = String::from_utf8(out).unwrap();
        let order: Vec<_> =
            ["AUTH", "SELECT", "SETNAME", "PING", "ROLE"].iter().map(|w| text.find(w).unwrap()).collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert_eq!(expect.len(), 5);
        assert_eq!(expect[4], Step::Role);
        let (_, expect) = handshake_commands(&RedisTarget::parse("redis://h").unwrap(), "x");
        assert_eq!(expect, vec![Step::Optional, Step::Login("PING".into()), Step::Role]);
    }

    #[test]
    fn role_replies() {
        let decode = |b: &[u8]| resp::decode_frame(b).unwrap().unwrap().0;
        assert_eq!(role_of(&decode(b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n")), Some("master"));
        let replica = b"*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:6379\r\n$9\r\nconnected\r\n:10\r\n";
        assert_eq!(role_of(&decode(replica)), Some("slave"));
        assert_eq!(role_of(&decode(b"+OK\r\n")), None);
    }

    #[test]
    fn candidates_read_well_in_log_lines() {
        let ip = Candidate { name: "127.0.0.1".into(), addr: Address::Tcp("127.0.0.1:7000".parse().unwrap()) };
        assert_eq!(ip.to_string(), "127.0.0.1:7000");
        let named = Candidate { name: "localhost".into(), addr: Address::Tcp("[::1]:7000".parse().unwrap()) };
        assert_eq!(named.to_string(), "localhost ([::1]:7000)");
    }
}
