//! Redis connection URLs: `--redis` / `REDIS_URL` text to a [`RedisTarget`], and back to a form
//! that is safe to log.
//!
//! It owns URL syntax, percent-decoding of credentials and the one DNS lookup hitcore makes for
//! Redis (at start-up, in the supervisor, so no shard ever blocks on DNS). It must never put the
//! password into an error or a `Display`: every message built here uses [`RedisTarget`]'s redacted
//! form or the parts of the URL that are not secret.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};

/// The default `--redis`.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379/0";

/// Where Redis is and how to log in: everything a shard needs to (re)connect without DNS.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedisTarget {
    /// The transport.
    pub endpoint: Endpoint,
    /// ACL user for `AUTH user password` (Redis 6+); `None` sends `AUTH password`.
    pub user: Option<String>,
    /// The password; `None` sends no AUTH. Never logged.
    pub password: Option<String>,
    /// The database number for `SELECT`; 0 sends no SELECT.
    pub db: u32,
}

/// A resolved Redis address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Endpoint {
    /// TCP, resolved once at start-up; `host` is kept for log lines.
    Tcp {
        /// The host as written in the URL.
        host: String,
        /// The address it resolved to.
        addr: SocketAddr,
    },
    /// A unix socket path.
    Unix(PathBuf),
}

/// Why a Redis URL was refused. Messages never contain the password.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    /// Not a URL at all.
    #[error("not a valid URL ({0}); expected redis://[user][:password]@host[:port][/db] or unix:///path")]
    Syntax(String),
    /// A scheme other than redis, unix and redis+unix.
    #[error("unsupported scheme '{0}'; use redis://, unix:// or redis+unix://")]
    Scheme(String),
    /// A redis:// URL without a host.
    #[error("missing host")]
    NoHost,
    /// A database that is not a non-negative integer.
    #[error("invalid database '{0}'; expected a number such as /0")]
    Db(String),
    /// The host did not resolve.
    #[error("cannot resolve Redis host '{host}': {reason}")]
    Resolve {
        /// The host as written.
        host: String,
        /// The resolver's error.
        reason: String,
    },
    /// A unix URL without a path.
    #[error("missing socket path")]
    NoPath,
    /// Credentials that do not percent-decode to UTF-8.
    #[error("user name or password is not valid percent-encoded UTF-8")]
    Credentials,
}

impl RedisTarget {
    /// Parses and resolves `text`. Forms: `redis://[user][:password]@host[:port][/db]` and
    /// `unix:///path/redis.sock?db=N&password=...&user=...` (also spelled `redis+unix://`).
    pub fn parse(text: &str) -> Result<RedisTarget, UrlError> {
        // The url crate's error never echoes its input, so the password cannot leak through it.
        let url = url::Url::parse(text).map_err(|e| UrlError::Syntax(e.to_string()))?;
        match url.scheme() {
            "redis" => {
                let host = url.host_str().filter(|h| !h.is_empty()).ok_or(UrlError::NoHost)?;
                let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
                let port = url.port().unwrap_or(6379);
                let addr = (host.as_str(), port)
                    .to_socket_addrs()
                    .map_err(|e| UrlError::Resolve { host: host.clone(), reason: e.to_string() })?
                    .next()
                    .ok_or_else(|| UrlError::Resolve { host: host.clone(), reason: "no addresses".into() })?;
                let db = match url.path().trim_start_matches('/') {
                    "" => 0,
                    db => db.parse().map_err(|_| UrlError::Db(db.to_string()))?,
                };
                let user = decode(url.username())?.filter(|u| !u.is_empty());
                let password = match url.password() {
                    Some(p) => decode(p)?,
                    None => None,
                };
                Ok(RedisTarget { endpoint: Endpoint::Tcp { host, addr }, user, password, db })
            }
            "unix" | "redis+unix" => {
                let path = url.path();
                if path.is_empty() || path == "/" {
                    return Err(UrlError::NoPath);
                }
                let path = percent_decode_str(path).decode_utf8().map_err(|_| UrlError::NoPath)?;
                let mut target = RedisTarget {
                    endpoint: Endpoint::Unix(PathBuf::from(path.as_ref())),
                    user: decode(url.username())?.filter(|u| !u.is_empty()),
                    password: url.password().map(decode).transpose()?.flatten(),
                    db: 0,
                };
                // query_pairs percent-decodes for us.
                for (key, value) in url.query_pairs() {
                    match key.as_ref() {
                        "db" => target.db = value.parse().map_err(|_| UrlError::Db(value.to_string()))?,
                        "password" | "pass" => target.password = Some(value.into_owned()),
                        "user" | "username" => target.user = Some(value.into_owned()),
                        _ => {}
                    }
                }
                Ok(target)
            }
            other => Err(UrlError::Scheme(other.to_string())),
        }
    }
}

fn decode(s: &str) -> Result<Option<String>, UrlError> {
    if s.is_empty() {
        return Ok(None);
    }
    percent_decode_str(s).decode_utf8().map(|c| Some(c.into_owned())).map_err(|_| UrlError::Credentials)
}

/// The redacted URL: the password is replaced by `***`, so this is what every log line shows.
impl fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match (&self.user, &self.password) {
            (Some(u), Some(_)) => format!("{u}:***@"),
            (None, Some(_)) => ":***@".to_string(),
            (Some(u), None) => format!("{u}@"),
            (None, None) => String::new(),
        };
        match &self.endpoint {
            Endpoint::Tcp { host, addr } => {
                let host = if host.contains(':') { format!("[{host}]") } else { host.clone() };
                write!(f, "redis://{auth}{host}:{}/{}", addr.port(), self.db)
            }
            Endpoint::Unix(path) => write!(f, "unix://{auth}{}?db={}", path.display(), self.db),
        }
    }
}

/// Debug is the redacted form too: a `{:?}` of a config must not leak the password either.
impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisTarget({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_url() {
        let t = RedisTarget::parse(DEFAULT_URL).unwrap();
        assert_eq!(t.endpoint, Endpoint::Tcp { host: "127.0.0.1".into(), addr: "127.0.0.1:6379".parse().unwrap() });
        assert_eq!((t.user, t.password, t.db), (None, None, 0));
    }

    #[test]
    fn password_user_db_and_percent_decoding() {
        let t = RedisTarget::parse("redis://:p%40ss%3Aw@127.0.0.1:7000/3").unwrap();
        assert_eq!((t.user.as_deref(), t.password.as_deref(), t.db), (None, Some("p@ss:w"), 3));
        let t = RedisTarget::parse("redis://alice:secret@localhost").unwrap();
        assert_eq!((t.user.as_deref(), t.password.as_deref(), t.db), (Some("alice"), Some("secret"), 0));
        assert_eq!(t.to_string(), "redis://alice:***@localhost:6379/0");
    }

    #[test]
    fn unix_forms() {
        let t = RedisTarget::parse("unix:///run/redis.sock?db=2&password=s%20ecret").unwrap();
        assert_eq!(t.endpoint, Endpoint::Unix("/run/redis.sock".into()));
        assert_eq!((t.password.as_deref(), t.db), (Some("s ecret"), 2));
        assert_eq!(t.to_string(), "unix://:***@/run/redis.sock?db=2");
        let t = RedisTarget::parse("redis+unix:///tmp/r.sock").unwrap();
        assert_eq!(t.endpoint, Endpoint::Unix("/tmp/r.sock".into()));
    }

    #[test]
    fn errors_never_contain_the_password() {
        for bad in [
            "redis://:hunter2@127.0.0.1:6379/x",
            "http://:hunter2@127.0.0.1/",
            "redis://:hunter2@:6379",
            "redis://:hunter2@no-such-host.invalid:6379/0",
            "redis://:hunter2@127.0.0.1:99999/0",
            "redis://:hunter2%ff@127.0.0.1/0",
        ] {
            let err = RedisTarget::parse(bad).unwrap_err().to_string();
            assert!(!err.contains("hunter2"), "{bad} -> {err}");
        }
        let t = RedisTarget::parse("redis://:hunter2@127.0.0.1/0").unwrap();
        assert!(!format!("{t} {t:?}").contains("hunter2"));
    }
}
