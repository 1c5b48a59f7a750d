//! What `-b/--bind` names: a TCP address, a unix socket path, an inherited descriptor, or a socket
//! systemd passed (socket activation), as plain data that survives the hand-off to shards.
//!
//! It owns the syntax of a bind (`HOST:PORT`, `[V6]:PORT`, `:PORT`, `unix:PATH`, `fd://N`) and
//! systemd's `LISTEN_PID`/`LISTEN_FDS`/`LISTEN_FDNAMES` protocol. It must not open or bind anything:
//! [`crate::listener`] does, in the supervisor.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::RawFd;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One address to serve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Bind {
    /// TCP, resolved once at start-up: one SO_REUSEPORT listener per shard.
    Tcp(SocketAddr),
    /// A unix stream socket at this path, created with `--bind-mode` and removed on exit.
    Unix(PathBuf),
    /// `fd://N`: a listening socket inherited as descriptor N.
    Fd(RawFd),
    /// A socket systemd passed (socket activation), with its `FileDescriptorName=` if any.
    Activated {
        /// The descriptor (3 and up).
        fd: RawFd,
        /// Its name from `LISTEN_FDNAMES`.
        name: Option<String>,
    },
}

impl fmt::Display for Bind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bind::Tcp(addr) => write!(f, "{addr}"),
            Bind::Unix(path) => write!(f, "unix:{}", path.display()),
            Bind::Fd(fd) => write!(f, "fd://{fd}"),
            Bind::Activated { fd, name: Some(name) } => write!(f, "fd://{fd} (systemd socket '{name}')"),
            Bind::Activated { fd, name: None } => write!(f, "fd://{fd} (systemd socket)"),
        }
    }
}

impl Bind {
    /// Parses one `-b` value: `HOST:PORT`, `[V6]:PORT`, a bare host or IPv6 address (port 8000),
    /// `:PORT` (all IPv4 interfaces), `unix:PATH` (absolute or relative) or `fd://N`. Host names
    /// are resolved here, once.
    pub fn parse(text: &str) -> Result<Bind, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(format!("'{text}': expected unix:/path/to/socket"));
            }
            // sun_path holds 108 bytes with the terminating NUL.
            if path.len() > 107 {
                return Err(format!("'{text}': a unix socket path is at most 107 bytes"));
            }
            return Ok(Bind::Unix(PathBuf::from(path)));
        }
        if let Some(n) = text.strip_prefix("fd://") {
            return match n.parse::<RawFd>() {
                Ok(fd) if fd >= 3 => Ok(Bind::Fd(fd)),
                _ => Err(format!("'{text}': expected fd://N with N a descriptor number, 3 or more")),
            };
        }
        // A bare IPv6 address first: `::1` also starts with the `:` of `:PORT`.
        let with_port = if text.parse::<std::net::Ipv6Addr>().is_ok() {
            format!("[{text}]:8000")
        } else if let Some(port) = text.strip_prefix(':') {
            format!("0.0.0.0:{port}")
        } else if text.ends_with(']') || !text.contains(':') {
            format!("{text}:8000")
        } else {
            text.to_string()
        };
        with_port
            .to_socket_addrs()
            .map_err(|e| format!("'{text}': {e}"))?
            .next()
            .map(Bind::Tcp)
            .ok_or_else(|| format!("'{text}' resolves to no address"))
    }

    /// Whether `self`, as asked for now, names the listener `bound` was opened for: TCP port 0
    /// was resolved when bound, so asking for port 0 again is no change (a HUP keeps the socket).
    pub fn same_request(&self, bound: &Bind) -> bool {
        match (self, bound) {
            (Bind::Tcp(n), Bind::Tcp(o)) => n.ip() == o.ip() && (n.port() == 0 || n.port() == o.port()),
            (n, o) => n == o,
        }
    }
}

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: RawFd = 3;

/// The sockets systemd passed to this process, from the values of `LISTEN_PID`, `LISTEN_FDS` and
/// `LISTEN_FDNAMES` (as `sd_listen_fds_with_names` reads them). `None` when they are not for this
/// process (no variables, or another pid: they were inherited from a parent that did not use them).
pub fn activated(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    names: Option<&str>,
    pid: u32,
) -> Result<Option<Vec<Bind>>, String> {
    let (Some(listen_pid), Some(listen_fds)) = (listen_pid, listen_fds) else { return Ok(None) };
    if listen_pid.trim().parse::<u32>().ok() != Some(pid) {
        return Ok(None);
    }
    let n: RawFd = listen_fds.trim().parse().map_err(|_| format!("LISTEN_FDS='{listen_fds}' is not a number"))?;
    if n <= 0 {
        return Ok(None);
    }
    let names: Vec<Option<String>> = match names {
        Some(list) => list.split(':').map(|s| (!s.is_empty() && s != "unknown").then(|| s.to_string())).collect(),
        None => Vec::new(),
    };
    Ok(Some(
        (0..n)
            .map(|i| Bind::Activated { fd: LISTEN_FDS_START + i, name: names.get(i as usize).cloned().flatten() })
            .collect(),
    ))
}

/// [`activated`] for this process's environment.
pub fn activated_from_env() -> Result<Option<Vec<Bind>>, String> {
    let var = |name| std::env::var(name).ok();
    activated(
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDS").as_deref(),
        var("LISTEN_FDNAMES").as_deref(),
        std::process::id(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forms_of_a_bind() {
        let tcp = |s: &str| Bind::Tcp(s.parse().unwrap());
        assert_eq!(Bind::parse("127.0.0.1:0"), Ok(tcp("127.0.0.1:0")));
        assert_eq!(Bind::parse("127.0.0.1"), Ok(tcp("127.0.0.1:8000")));
        assert_eq!(Bind::parse(":9000"), Ok(tcp("0.0.0.0:9000")));
        assert_eq!(Bind::parse("[::1]:9000"), Ok(tcp("[::1]:9000")));
        assert_eq!(Bind::parse("::1"), Ok(tcp("[::1]:8000")));
        assert_eq!(Bind::parse("[::1]"), Ok(tcp("[::1]:8000")));
        assert_eq!(Bind::parse("unix:/run/hitcore.sock"), Ok(Bind::Unix("/run/hitcore.sock".into())));
        assert_eq!(Bind::parse("unix:///run/hitcore.sock"), Ok(Bind::Unix("/run/hitcore.sock".into())));
        assert_eq!(Bind::parse("unix:rel.sock"), Ok(Bind::Unix("rel.sock".into())));
        assert_eq!(Bind::parse("fd://3"), Ok(Bind::Fd(3)));
        assert!(Bind::parse("unix:").is_err());
        assert!(Bind::parse(&format!("unix:/{}", "x".repeat(120))).unwrap_err().contains("107"));
        assert!(Bind::parse("fd://1").is_err());
        assert!(Bind::parse("fd://x").is_err());
        assert!(Bind::parse("127.0.0.1:notaport").is_err());
        assert_eq!(Bind::parse("unix:/a").unwrap().to_string(), "unix:/a");
        assert_eq!(Bind::Activated { fd: 3, name: Some("http".into()) }.to_string(), "fd://3 (systemd socket 'http')");
    }

    #[test]
    fn socket_activation_variables() {
        assert_eq!(activated(None, None, None, 7), Ok(None));
        assert_eq!(activated(Some("8"), Some("1"), None, 7), Ok(None), "another process's sockets");
        assert_eq!(activated(Some("7"), Some("0"), None, 7), Ok(None));
        assert_eq!(activated(Some("7"), Some("1"), None, 7), Ok(Some(vec![Bind::Activated { fd: 3, name: None }])));
        assert_eq!(
            activated(Some("7"), Some("2"), Some("http:unknown"), 7),
            Ok(Some(vec![Bind::Activated { fd: 3, name: Some("http".into()) }, Bind::Activated { fd: 4, name: None }]))
        );
        assert!(activated(Some("7"), Some("x"), None, 7).is_err());
    }
}
