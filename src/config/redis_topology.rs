//! The Sentinel and Cluster URL forms: `redis+sentinel://` and `redis+cluster://` text to a
//! [`TopologyUrl`], and back to a form that is safe to log.
//!
//! It owns the syntax of those two forms only (the single-node forms are `url`'s), and resolves no
//! names: sentinels, seeds and the nodes they name are looked up at every (re)connect, because a
//! failover is exactly when addresses change. Like `url`, it must never put a password into an
//! error or a `Display`.
//!
//! ```text
//! redis+sentinel://[user][:password]@host[:port][,host[:port]...]/SERVICE[/db]   (port 26379)
//! rediss+sentinel://...                                                         (TLS to all)
//! redis+cluster://[user][:password]@host[:port][,host[:port]...]                (port 6379)
//! rediss+cluster://...
//! ```
//! The credentials are the data nodes'. Sentinels that need their own password get it from
//! `--sentinel-password`, not from the URL, so that one URL form serves both set-ups.

use std::fmt;

use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};

/// The port of a sentinel written without one.
pub const SENTINEL_PORT: u16 = 26379;
/// The port of a cluster seed written without one.
pub const CLUSTER_PORT: u16 = 6379;

/// A host name or IP address and a port, as written or as a node reported it. Resolved when
/// connecting, never before.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HostPort {
    /// A name, an IPv4 address, or an IPv6 address without brackets.
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How the primary is found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Topology {
    /// Ask these sentinels, in turn, for the primary of `service`.
    Sentinel {
        /// The sentinels, in the order to try them first.
        sentinels: Vec<HostPort>,
        /// The name the sentinels monitor the primary under.
        service: String,
    },
    /// Learn the slot map from these nodes, and send the key to the owner of its slot.
    Cluster {
        /// The seed nodes.
        seeds: Vec<HostPort>,
    },
}

/// A parsed `redis+sentinel://` or `redis+cluster://` URL.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologyUrl {
    /// Sentinels or seeds.
    pub topology: Topology,
    /// ACL user for the data nodes.
    pub user: Option<String>,
    /// The data nodes' password. Never logged.
    pub password: Option<String>,
    /// The database (Sentinel only; a cluster has only database 0).
    pub db: u32,
    /// `rediss+...`: TLS to every node and sentinel.
    pub tls: bool,
}

/// Why a Sentinel or Cluster URL was refused. Messages name the part that is wrong and never
/// quote the URL: when a password holds an unencoded `/`, `?` or `#`, the authority ends early
/// and pieces of the password land in the hosts, the path or the query, so no part written by
/// the user is safe to echo.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TopologyUrlError {
    /// No `host:port` at all.
    #[error("no {0} addresses; expected host:port[,host:port...] after '@'")]
    NoHosts(&'static str),
    /// An empty host in the list, such as `a:1,,b:2` or `:26379`: the address's place in the list.
    #[error("empty host in address {0} of the list")]
    EmptyHost(usize),
    /// A port that is not a number from 1 to 65535: the address's place in the list (from 1).
    #[error("bad port in address {0} of the list; expected a number from 1 to 65535")]
    Port(usize),
    /// `redis+sentinel://hosts` without `/SERVICE`.
    #[error("missing the service name: expected redis+sentinel://host:port[,host:port...]/SERVICE[/db]")]
    NoService,
    /// A service name that does not percent-decode to UTF-8.
    #[error("the service name is not valid percent-encoded UTF-8")]
    Service,
    /// A database that is not a non-negative integer.
    #[error("invalid database; expected a number such as /0")]
    Db,
    /// A path on a cluster URL other than nothing or `/0`.
    #[error("a Redis Cluster has only database 0; remove the path after the addresses")]
    ClusterDb,
    /// Anything after the path (`?`, `#`), or a path with more parts than the form has: which.
    #[error("unexpected {0} in the URL")]
    Extra(&'static str),
    /// An `@` after the addresses: the sign of a password holding an unencoded `/`, `?` or `#`.
    #[error("'@' after the host list: a password holding '/', '?' or '#' must percent-encode them (%2F, %3F, %23)")]
    Unencoded,
    /// Credentials that do not percent-decode to UTF-8.
    #[error("user name or password is not valid percent-encoded UTF-8")]
    Credentials,
}

impl TopologyUrl {
    /// Parses `text` if its scheme is one of the Sentinel or Cluster forms; `Ok(None)` for any
    /// other scheme (the caller tries the single-node forms).
    pub fn parse(text: &str) -> Result<Option<TopologyUrl>, TopologyUrlError> {
        let Some((scheme, rest)) = text.split_once("://") else { return Ok(None) };
        let (tls, sentinel) = match scheme.to_ascii_lowercase().as_str() {
            "redis+sentinel" => (false, true),
            "rediss+sentinel" => (true, true),
            "redis+cluster" => (false, false),
            "rediss+cluster" => (true, false),
            _ => return Ok(None),
        };
        let what = if sentinel { "sentinel" } else { "seed node" };
        // The authority ends at the first '/', '?' or '#', as in any URL: a password holding one of
        // them must be percent-encoded.
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => (decode(user)?, decode(pass)?),
                None => (decode(u)?, None),
            },
        };
        let default_port = if sentinel { SENTINEL_PORT } else { CLUSTER_PORT };
        if tail.contains('@') {
            return Err(TopologyUrlError::Unencoded);
        }
        let nodes = parse_hosts(hosts, default_port, what)?;
        if let Some(extra) = tail.find(['?', '#']).map(|i| &tail[i..]) {
            return Err(TopologyUrlError::Extra(if extra.starts_with('?') {
                "query ('?...')"
            } else {
                "fragment ('#...')"
            }));
        }
        let mut parts = tail.split('/').skip(1).filter(|p| !p.is_empty());
        let (topology, db) = if sentinel {
            let service = parts.next().ok_or(TopologyUrlError::NoService)?;
            let service =
                percent_decode_str(service).decode_utf8().map_err(|_| TopologyUrlError::Service)?.into_owned();
            let db = match parts.next() {
                None => 0,
                Some(db) => db.parse().map_err(|_| TopologyUrlError::Db)?,
            };
            (Topology::Sentinel { sentinels: nodes, service }, db)
        } else {
            match parts.next() {
                None | Some("0") => {}
                Some(_) => return Err(TopologyUrlError::ClusterDb),
            }
            (Topology::Cluster { seeds: nodes }, 0)
        };
        if parts.next().is_some() {
            return Err(TopologyUrlError::Extra("path part after the database"));
        }
        Ok(Some(TopologyUrl { topology, user, password, db, tls }))
    }
}

fn parse_hosts(list: &str, default_port: u16, what: &'static str) -> Result<Vec<HostPort>, TopologyUrlError> {
    if list.is_empty() {
        return Err(TopologyUrlError::NoHosts(what));
    }
    list.split(',').enumerate().map(|(i, one)| parse_host(one, default_port, i + 1)).collect()
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; `place` (from 1) is what an error names.
fn parse_host(one: &str, default_port: u16, place: usize) -> Result<HostPort, TopologyUrlError> {
    let (host, port) = if let Some(v6) = one.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or(TopologyUrlError::EmptyHost(place))?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':').ok_or(TopologyUrlError::Port(place))?)),
        }
    } else {
        match one.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (one, None),
        }
    };
    if host.is_empty() {
        return Err(TopologyUrlError::EmptyHost(place));
    }
    let port = match port {
        None => default_port,
        Some(p) => p.parse::<u16>().ok().filter(|&p| p > 0).ok_or(TopologyUrlError::Port(place))?,
    };
    Ok(HostPort { host: host.to_ascii_lowercase(), port })
}

fn decode(s: &str) -> Result<Option<String>, TopologyUrlError> {
    if s.is_empty() {
        return Ok(None);
    }
    percent_decode_str(s).decode_utf8().map(|c| Some(c.into_owned())).map_err(|_| TopologyUrlError::Credentials)
}

/// The redacted URL: the password is `***`. This is what every log line shows.
impl fmt::Display for TopologyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.tls { "s" } else { "" };
        let auth = match (&self.user, &self.password) {
            (Some(u), Some(_)) => format!("{u}:***@"),
            (None, Some(_)) => ":***@".to_string(),
            (Some(u), None) => format!("{u}@"),
            (None, None) => String::new(),
        };
        let list = |nodes: &[HostPort]| nodes.iter().map(HostPort::to_string).collect::<Vec<_>>().join(",");
        match &self.topology {
            Topology::Sentinel { sentinels, service } => {
                write!(f, "redis{s}+sentinel://{auth}{}/{service}/{}", list(sentinels), self.db)
            }
            Topology::Cluster { seeds } => write!(f, "redis{s}+cluster://{auth}{}", list(seeds)),
        }
    }
}

/// Debug is the redacted form too.
impl fmt::Debug for TopologyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopologyUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(host: &str, port: u16) -> HostPort {
        HostPort { host: host.into(), port }
    }

    fn parse(text: &str) -> TopologyUrl {
        TopologyUrl::parse(text).unwrap().unwrap()
    }

    #[test]
    fn sentinel_forms() {
        let u = parse("redis+sentinel://:p%40ss@10.0.0.1:26380,sentinel-b,[::1]:5000/mymaster/3");
        let sentinels = vec![hp("10.0.0.1", 26380), hp("sentinel-b", 26379), hp("::1", 5000)];
        assert_eq!(u.topology, Topology::Sentinel { sentinels, service: "mymaster".into() });
        assert_eq!((u.user, u.password.as_deref(), u.db, u.tls), (None, Some("p@ss"), 3, false));
        let u = parse("rediss+sentinel://alice:pw@h:1/svc");
        assert_eq!((u.user.as_deref(), u.db, u.tls), (Some("alice"), 0, true));
        assert_eq!(u.to_string(), "rediss+sentinel://alice:***@h:1/svc/0");
        let u = parse("redis+sentinel://h/svc/");
        assert_eq!(u.topology, Topology::Sentinel { sentinels: vec![hp("h", 26379)], service: "svc".into() });
        assert_eq!(u.password, None);
    }

    #[test]
    fn cluster_forms() {
        let u = parse("redis+cluster://:secret@127.0.0.1:7000,127.0.0.1:7001,node3");
        let seeds = vec![hp("127.0.0.1", 7000), hp("127.0.0.1", 7001), hp("node3", 6379)];
        assert_eq!(u.topology, Topology::Cluster { seeds });
        assert_eq!(u.to_string(), "redis+cluster://:***@127.0.0.1:7000,127.0.0.1:7001,node3:6379");
        assert!(parse("rediss+cluster://h:1/0").tls);
        assert_eq!(parse("redis+cluster://h:1/").db, 0);
    }

    #[test]
    fn other_schemes_are_not_ours() {
        for other in ["redis://h:1/0", "rediss://h", "unix:///tmp/s", "h:1", "http://x"] {
            assert_eq!(TopologyUrl::parse(other), Ok(None), "{other}");
        }
    }

    #[test]
    fn errors_name_what_is_wrong() {
        use TopologyUrlError::*;
        let cases = [
            ("redis+sentinel://h1:26379,h2:26380", NoService),
            ("redis+sentinel://h1:26379/", NoService),
            ("redis+sentinel://:pw@/svc", NoHosts("sentinel")),
            ("redis+cluster://", NoHosts("seed node")),
            ("redis+sentinel://h1:x/svc", Port(1)),
            ("redis+sentinel://h1:0/svc", Port(1)),
            ("redis+cluster://h1:1,h2:70000", Port(2)),
            ("redis+cluster://h1:1,,h2:2", EmptyHost(2)),
            ("redis+cluster://:6379", EmptyHost(1)),
            ("redis+sentinel://h/svc/x", Db),
            ("redis+cluster://h/2", ClusterDb),
            ("redis+sentinel://h/svc/1/more", Extra("path part after the database")),
            ("redis+cluster://h?x=1", Extra("query ('?...')")),
            ("redis+cluster://app:Zx9/Qk@10.0.0.1:7000", Unencoded),
            ("redis+sentinel://app:12/cd@h/svc", Unencoded),
            ("redis+cluster://:%ff@h", Credentials),
        ];
        for (text, want) in cases {
            assert_eq!(TopologyUrl::parse(text), Err(want), "{text}");
        }
        assert!(NoService.to_string().contains("missing the service name"));
        assert!(Port(2).to_string().contains("bad port in address 2 of the list"));
    }

    #[test]
    fn the_password_never_shows() {
        for bad in [
            "redis+sentinel://:hunter2@h:x/svc",
            "redis+sentinel://:hunter2@h",
            "redis+cluster://:hunter2@h/3",
            "redis+cluster://:hunter2@h:1?q",
            "redis+cluster://u:hunter2@,",
        ] {
            let err = TopologyUrl::parse(bad).unwrap_err().to_string();
            assert!(!err.contains("hunter2"), "{bad} -> {err}");
        }
        let u = parse("redis+sentinel://:hunter2@h/svc");
        assert!(!format!("{u} {u:?}").contains("hunter2"));
    }
}
