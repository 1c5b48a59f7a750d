//! From a target to a ready session: find the node ([`Discovery`]), open the transport through
//! `dial`, log in (AUTH, SELECT, CLIENT SETNAME, PING) and check with `ROLE` that the node is a
//! primary, all as one pipelined round trip.
//!
//! This is the seam every topology plugs into: [`Discovery::Direct`] resolves the URL's host
//! again at every connect and tries its addresses in order; Sentinel asks the sentinels for the
//! primary and Cluster finds the owner of the key's slot (`sentinel::discovery`,
//! `cluster::discovery`, which dial through the same [`Dialer`] and import nothing from here).
//!
//! It owns no state of the running session (queue, pipelining, reconnect policy): that is
//! `client`'s. It must not log either: every failure is a [`ConnectError`] that `client` reports
//! once per change.

use std::time::Duration;

use super::cluster::discovery::ClusterDiscovery;
use super::dial::{self, Address, Candidate, ConnectError, Dialer, roundtrip};
use super::resp::{self, Frame, ProtocolError};
use super::sentinel::discovery::SentinelDiscovery;
use super::sentinel::watch::Switch;
use super::stream::Stream;
use crate::config::redis_topology::HostPort;
use crate::config::redis_url::{Endpoint, RedisTarget};

/// How long one connect plus handshake may take before the attempt counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How the node to connect to is found, at every connect.
#[derive(Debug, Clone)]
pub enum Discovery {
    /// The URL's own host (resolved anew each time) or unix socket.
    Direct,
    /// Ask the sentinels for the primary (`redis+sentinel://`).
    Sentinel(SentinelDiscovery),
    /// The owner of the key's slot (`redis+cluster://`).
    Cluster(ClusterDiscovery),
}

impl Discovery {
    /// The discovery a target calls for; `key` is the one whose slot picks a Cluster's node, and
    /// `switch` the failovers a Sentinel target's subscriptions hear of.
    pub fn for_target(target: &RedisTarget, key: &str, switch: Option<std::rc::Rc<Switch>>) -> Discovery {
        match &target.endpoint {
            Endpoint::Tcp { .. } | Endpoint::Unix(_) => Discovery::Direct,
            Endpoint::Sentinel { sentinels, service, tls } => {
                let mut sentinel =
                    SentinelDiscovery::new(sentinels.clone(), service.clone(), target.sentinel_password.clone(), *tls);
                if let Some(switch) = switch {
                    sentinel.listen(switch);
                }
                Discovery::Sentinel(sentinel)
            }
            Endpoint::Cluster { seeds, tls } => Discovery::Cluster(ClusterDiscovery::new(seeds.clone(), key, *tls)),
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

/// What one shard needs to connect: the target, its login, the dialer and the discovery.
#[derive(Debug)]
pub struct Connector {
    target: RedisTarget,
    dialer: Dialer,
    discovery: Discovery,
    /// `CLIENT SETNAME` value.
    client_name: String,
}

impl Connector {
    /// A connector for `target` with `discovery`; nothing is read or resolved until
    /// [`Connector::connect`].
    pub fn new(target: RedisTarget, discovery: Discovery, dialer: Dialer, client_name: String) -> Connector {
        Connector { target, dialer, discovery, client_name }
    }

    /// The target, for log lines (its `Display` is redacted).
    pub fn target(&self) -> &RedisTarget {
        &self.target
    }

    /// Finds the node, connects, logs in and checks it is a primary. `moved_to` is where a
    /// Cluster `-MOVED` said the key's slot lives now: that node is tried without asking for the
    /// slot map (it knows better than a map another node may still be gossiping).
    pub async fn connect(&mut self, moved_to: Option<HostPort>) -> Result<Ready, ConnectError> {
        let candidates = self.discover(moved_to).await?;
        let mut last = None;
        for node in candidates {
            match dial::within(CONNECT_TIMEOUT, self.connect_to(&node)).await {
                Some(Ok(ready)) => return Ok(ready),
                Some(Err(e)) if !e.try_next() => return Err(e),
                Some(Err(e)) => last = Some(e),
                None => last = Some(ConnectError::Timeout { node: node.to_string(), limit: CONNECT_TIMEOUT }),
            }
        }
        Err(last.unwrap_or_else(|| ConnectError::Discovery("no Redis node to connect to".into())))
    }

    /// The candidates for this attempt, in the order to try them.
    async fn discover(&mut self, moved_to: Option<HostPort>) -> Result<Vec<Candidate>, ConnectError> {
        match &mut self.discovery {
            Discovery::Sentinel(sentinels) => sentinels.candidates(&self.dialer).await,
            Discovery::Cluster(cluster) => cluster.candidates(&self.dialer, &self.target, moved_to).await,
            Discovery::Direct => match &self.target.endpoint {
                Endpoint::Tcp { host, port, .. } => {
                    let addrs = dial::resolve(host, *port).await?;
                    Ok(addrs.into_iter().map(|a| Candidate { name: host.clone(), addr: Address::Tcp(a) }).collect())
                }
                Endpoint::Unix(path) => {
                    Ok(vec![Candidate { name: path.display().to_string(), addr: Address::Unix(path.clone()) }])
                }
                Endpoint::Sentinel { .. } | Endpoint::Cluster { .. } => {
                    unreachable!("Discovery::for_target gives these their own discovery")
                }
            },
        }
    }

    async fn connect_to(&mut self, node: &Candidate) -> Result<Ready, ConnectError> {
        let mut stream = self.dialer.open(node, self.target.tls()).await?;
        let role_unchecked = handshake(&self.target, &self.client_name, node, &mut stream).await?;
        Ok(Ready { stream, node: node.clone(), role_unchecked })
    }
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
    if dial::encode_auth(&mut out, target.user.as_deref(), target.password.as_deref()) == 1 {
        expect.push(Step::Login(match &target.user {
            Some(user) => format!("AUTH as user '{user}'"),
            None => "AUTH".into(),
        }));
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
}
