//! The command line: gunicorn-like flags (clap) and their validation into a [`Config`].
//!
//! It owns flag names, defaults, help text and every check that can be made before anything is
//! bound or spawned. Each refusal names the flag it is about. It must not open sockets: the only
//! outside facts it reads are the CPU affinity mask, name resolution for `-b` (never for
//! `--redis`: shards resolve that at every connect) and the `--redis-tls-*` files, read once to
//! refuse a bad one at start.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::config::Config;
use crate::http::parse::{Limits, MAX_FIELD_SIZE, MAX_FIELDS, MAX_REQUEST_LINE};
use crate::logging::{LogLevel, LogTarget};
use crate::redis::tls::{self, TlsFiles};
use crate::redis::url::{DEFAULT_URL, RedisTarget};

/// hitcore: a thread-per-core HTTP hit counter on io_uring, backed by Redis.
///
/// `GET /` increments a Redis counter and answers with its new value. One shard process per CPU,
/// each pinned, each with its own listener and its own pipelined Redis connection, under a
/// supervisor that restarts stalled or crashed shards without dropping queued connections.
#[derive(Debug, Parser)]
#[command(name = "hitcore", version, about, long_about = None, max_term_width = 100)]
pub struct Cli {
    /// Shards to run, one process pinned to one CPU each [default: the CPUs this process may use]
    #[arg(short = 'w', long = "workers", value_name = "N", hide_default_value = true,
          default_value_t = allowed_cpus().len())]
    pub workers: usize,

    /// CPUs to pin shards to, e.g. `1-3,6`; shard i runs on the i-th [default: the affinity mask]
    #[arg(long, value_name = "LIST")]
    pub cpus: Option<String>,

    /// Allow more shards than CPUs: shards then share CPUs, round-robin
    #[arg(long)]
    pub share_cpus: bool,

    /// Address to listen on, HOST:PORT; port 0 picks a free port (the log says which)
    #[arg(short = 'b', long, value_name = "ADDRESS", default_value = "127.0.0.1:8000")]
    pub bind: String,

    /// Redis URL: redis://[user][:password]@host[:port][/db], rediss://... for TLS,
    /// unix:///path?db=N&password=..., redis+sentinel://[user][:password]@host:port[,host:port...]/SERVICE[/db]
    /// or redis+cluster://[user][:password]@host:port[,host:port...] (rediss+... for TLS). The host is
    /// resolved again at every reconnect
    #[arg(long, env = "REDIS_URL", hide_env_values = true, value_name = "URL", default_value = DEFAULT_URL)]
    pub redis: String,

    /// rediss://: trust only the CA certificates in this PEM file [default: the system's roots]
    #[arg(long = "redis-tls-ca", value_name = "FILE")]
    pub redis_tls_ca: Option<PathBuf>,

    /// rediss://: present this client certificate chain (PEM) for mutual TLS; needs --redis-tls-key
    #[arg(long = "redis-tls-cert", value_name = "FILE", requires = "redis_tls_key")]
    pub redis_tls_cert: Option<PathBuf>,

    /// rediss://: the private key (PEM) of --redis-tls-cert
    #[arg(long = "redis-tls-key", value_name = "FILE", requires = "redis_tls_cert")]
    pub redis_tls_key: Option<PathBuf>,

    /// rediss://: accept any server certificate (no verification; a WARNING says so at start)
    #[arg(long = "redis-tls-insecure", conflicts_with = "redis_tls_ca")]
    pub redis_tls_insecure: bool,

    /// The sentinels' own password (their requirepass), for redis+sentinel:// URLs; the URL's
    /// credentials are the data nodes'
    #[arg(
        long = "sentinel-password",
        env = "HITCORE_SENTINEL_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub sentinel_password: Option<String>,

    /// The Redis key holding the counter
    #[arg(long, value_name = "NAME", default_value = "hit")]
    pub key: String,

    /// Seconds an idle keep-alive connection waits for its next request; 0 disables keep-alive
    #[arg(long = "keep-alive", value_name = "SECS", value_parser = seconds, allow_negative_numbers = true, default_value = "2")]
    pub keep_alive: Duration,

    /// Seconds a connection may take to send a complete request head
    #[arg(long = "header-timeout", value_name = "SECS", value_parser = seconds, allow_negative_numbers = true, default_value = "2")]
    pub header_timeout: Duration,

    /// At --worker-connections, seconds a connection must have waited for a complete request (idle
    /// or slow) before it may be closed to make room for a new one
    #[arg(long = "evict-after", value_name = "SECS", value_parser = seconds, allow_negative_numbers = true,
          default_value = "0.1")]
    pub evict_after: Duration,

    /// Seconds a batch of answers may wait for a client that does not read them; then the connection is closed
    #[arg(long = "write-timeout", value_name = "SECS", value_parser = seconds, allow_negative_numbers = true,
          default_value = "10")]
    pub write_timeout: Duration,

    /// Pending-connection queue of each shard's listener (the kernel caps it at somaxconn)
    #[arg(long, value_name = "N", default_value_t = 2048)]
    pub backlog: u32,

    /// Connections each shard serves at once; beyond it, new ones wait in the kernel's queue
    #[arg(long = "worker-connections", value_name = "N", default_value_t = 1000)]
    pub worker_connections: usize,

    /// Longest request line in bytes (answered 414 beyond); 0 means the maximum, 8190
    #[arg(long = "limit-request-line", value_name = "N", default_value_t = 4094)]
    pub limit_request_line: usize,

    /// Most header fields in a request (answered 431 beyond); at most 32768
    #[arg(long = "limit-request-fields", value_name = "N", default_value_t = 100)]
    pub limit_request_fields: usize,

    /// Longest header field in bytes (answered 431 beyond); 0 means the maximum, 8190
    #[arg(
        long = "limit-request-field-size",
        alias = "limit-request-field_size",
        value_name = "N",
        default_value_t = 8190
    )]
    pub limit_request_field_size: usize,

    /// Seconds without a heartbeat before a shard is killed and replaced (WORKER TIMEOUT); 0 = off
    #[arg(short = 't', long, value_name = "SECS", value_parser = seconds, allow_negative_numbers = true, default_value = "30")]
    pub timeout: Duration,

    /// Seconds a graceful stop (TERM, HUP, TTOU) may take before shards are killed
    #[arg(long = "graceful-timeout", value_name = "SECS", value_parser = seconds, allow_negative_numbers = true, default_value = "30")]
    pub graceful_timeout: Duration,

    /// Seconds a Redis command may wait for its reply; then its requests get 503 and the
    /// connection is rebuilt
    #[arg(long = "redis-timeout", value_name = "SECS", value_parser = seconds, allow_negative_numbers = true, default_value = "1")]
    pub redis_timeout: Duration,

    /// Replicas that must acknowledge each batch's increment (one WAIT per batch) before it is
    /// answered 200; when fewer do within --wait-timeout, the batch is answered 503
    #[arg(long = "wait-replicas", value_name = "N", default_value_t = 0)]
    pub wait_replicas: u32,

    /// Milliseconds each batch's WAIT may wait for --wait-replicas acknowledgements
    #[arg(long = "wait-timeout", value_name = "MS", default_value_t = 50)]
    pub wait_timeout: u64,

    /// Error log file, or - for stderr
    #[arg(long = "error-logfile", alias = "log-file", value_name = "FILE", default_value = "-")]
    pub error_logfile: String,

    /// Access log file, or - for stdout [default: off]
    #[arg(long = "access-logfile", value_name = "FILE")]
    pub access_logfile: Option<String>,

    /// Error log level
    #[arg(long = "log-level", value_enum, value_name = "LEVEL", default_value = "info")]
    pub log_level: LogLevel,

    /// Send one INCR per request instead of one INCRBY per batch (for comparisons)
    #[arg(long = "no-coalesce")]
    pub no_coalesce: bool,

    /// Write the supervisor's PID to FILE (refused if it names a live process); removed on exit
    #[arg(short = 'p', long = "pid", value_name = "FILE")]
    pub pidfile: Option<PathBuf>,

    /// Run shards as this user (name or uid); the supervisor binds first, so a root supervisor can
    /// listen on port 80 [default: the current user]
    #[arg(short = 'u', long, value_name = "USER")]
    pub user: Option<String>,

    /// Run shards with this group (name or gid) [default: the --user's primary group]
    #[arg(short = 'g', long, value_name = "GROUP")]
    pub group: Option<String>,

    /// Metrics, health checks and the access log's contents.
    #[command(flatten)]
    pub observe: ObserveFlags,
}

/// Observability flags, kept together (docs/observability.md).
#[derive(Debug, clap::Args)]
pub struct ObserveFlags {
    /// Serve Prometheus metrics at http://ADDRESS/metrics from the supervisor [default: off]
    #[arg(long = "metrics-bind", value_name = "ADDRESS")]
    pub metrics_bind: Option<String>,

    /// Path of the health check: 200 while this shard's Redis connection works, else 503; never counts
    #[arg(long = "health-path", value_name = "PATH", default_value = crate::config::DEFAULT_HEALTH_PATH)]
    pub health_path: String,

    /// Access log line, in gunicorn's atoms (%(h)s, %(r)s, %({header}i)s, ...)
    #[arg(long = "access-logformat", value_name = "FORMAT", default_value = crate::http::logformat::DEFAULT)]
    pub access_logformat: String,

    /// Proxies whose X-Forwarded-For names the client in the access log: addresses, networks, or *
    #[arg(long = "forwarded-allow-ips", env = "FORWARDED_ALLOW_IPS", value_name = "LIST",
          default_value = crate::http::forwarded::DEFAULT)]
    pub forwarded_allow_ips: String,

    /// Every connection starts with a PROXY protocol v1 or v2 header (from a load balancer);
    /// connections without a valid one are closed
    #[arg(long = "proxy-protocol")]
    pub proxy_protocol: bool,
}

impl ObserveFlags {
    fn into_observe(self) -> Result<crate::config::Observe, FlagError> {
        let metrics_bind = match &self.metrics_bind {
            None => None,
            Some(text) => {
                if !text.contains(':') {
                    return Err(refuse("--metrics-bind", format!("'{text}' needs a port: HOST:PORT or :PORT")));
                }
                Some(parse_bind(text).map_err(|m| refuse("--metrics-bind", m))?)
            }
        };
        let path = &self.health_path;
        if !path.starts_with('/')
            || path == "/"
            || path.contains(['?', '#'])
            || path.bytes().any(|b| b <= b' ' || b >= 0x7f)
        {
            return Err(refuse(
                "--health-path",
                format!("'{path}' must be a path such as /healthz: starting with /, not / itself, no query"),
            ));
        }
        crate::http::logformat::Format::compile(&self.access_logformat).map_err(|m| refuse("--access-logformat", m))?;
        crate::http::forwarded::Trust::parse(&self.forwarded_allow_ips)
            .map_err(|m| refuse("--forwarded-allow-ips", m))?;
        Ok(crate::config::Observe {
            metrics_bind,
            health_path: self.health_path,
            access_log_format: self.access_logformat,
            forwarded_allow_ips: self.forwarded_allow_ips,
            proxy_protocol: self.proxy_protocol,
        })
    }
}

/// A flag whose value cannot be used, with the flag's name for the message.
#[derive(Debug, thiserror::Error)]
#[error("invalid value for '{flag}': {message}")]
pub struct FlagError {
    /// The flag, as the user would type it.
    pub flag: &'static str,
    /// What is wrong, without echoing secrets.
    pub message: String,
}

fn refuse(flag: &'static str, message: impl Into<String>) -> FlagError {
    FlagError { flag, message: message.into() }
}

impl Cli {
    /// Validates every flag and resolves names, producing the configuration every process shares.
    pub fn into_config(self) -> Result<Config, FlagError> {
        let mask = allowed_cpus();
        let allowed = match &self.cpus {
            None => mask.clone(),
            Some(list) => {
                let cpus = parse_cpu_list(list).map_err(|m| refuse("--cpus", m))?;
                if let Some(bad) = cpus.iter().find(|c| !mask.contains(c)) {
                    return Err(refuse(
                        "--cpus",
                        format!("CPU {bad} is not in this process's affinity mask ({})", format_cpu_list(&mask)),
                    ));
                }
                cpus
            }
        };
        if allowed.is_empty() {
            return Err(refuse("--cpus", "no CPUs to run on"));
        }
        if self.workers == 0 {
            return Err(refuse("--workers", "at least one shard is needed"));
        }
        if self.workers > allowed.len() && !self.share_cpus {
            return Err(refuse(
                "--workers",
                format!(
                    "{} shards but only {} CPUs ({}); a shard is pinned to one CPU, so pass --share-cpus to let \
                     shards share CPUs",
                    self.workers,
                    allowed.len(),
                    format_cpu_list(&allowed)
                ),
            ));
        }
        let cpus = (0..self.workers).map(|i| allowed[i % allowed.len()]).collect();
        let bind = parse_bind(&self.bind).map_err(|m| refuse("--bind", m))?;
        let mut redis = RedisTarget::parse(&self.redis).map_err(|e| refuse("--redis", e.to_string()))?;
        let redis_tls = TlsFiles {
            ca: self.redis_tls_ca,
            cert: self.redis_tls_cert,
            key: self.redis_tls_key,
            insecure: self.redis_tls_insecure,
        };
        if redis.tls() {
            // Read now so that a missing or unreadable file stops the start, naming it; every
            // shard reads the files again when it connects.
            tls::client_config(&redis_tls).map_err(|e| refuse(e.flag(), e.to_string()))?;
        } else if redis_tls != TlsFiles::default() {
            let flag = if redis_tls.insecure { "--redis-tls-insecure" } else { "--redis-tls-ca" };
            return Err(refuse(flag, "the --redis-tls-* flags apply to rediss:// URLs only"));
        }
        if let Some(password) = self.sentinel_password {
            if !matches!(redis.endpoint, crate::redis::url::Endpoint::Sentinel { .. }) {
                return Err(refuse("--sentinel-password", "only a redis+sentinel:// URL asks sentinels"));
            }
            redis.sentinel_password = Some(password);
        }
        if self.key.is_empty() {
            return Err(refuse("--key", "the key must not be empty"));
        }
        if self.backlog == 0 {
            return Err(refuse("--backlog", "must be at least 1"));
        }
        if self.worker_connections == 0 {
            return Err(refuse("--worker-connections", "must be at least 1"));
        }
        let limits = Limits {
            request_line: bounded("--limit-request-line", self.limit_request_line, MAX_REQUEST_LINE)?,
            fields: match self.limit_request_fields {
                0 => return Err(refuse("--limit-request-fields", "must be at least 1")),
                n if n > MAX_FIELDS => return Err(refuse("--limit-request-fields", format!("at most {MAX_FIELDS}"))),
                n => n,
            },
            field_size: bounded("--limit-request-field-size", self.limit_request_field_size, MAX_FIELD_SIZE)?,
        };
        if self.header_timeout.is_zero() {
            return Err(refuse("--header-timeout", "must be more than 0"));
        }
        if self.write_timeout.is_zero() {
            return Err(refuse("--write-timeout", "must be more than 0"));
        }
        if self.redis_timeout.is_zero() {
            return Err(refuse("--redis-timeout", "must be more than 0"));
        }
        let wait_timeout = Duration::from_millis(self.wait_timeout);
        if self.wait_timeout == 0 {
            return Err(refuse("--wait-timeout", "must be at least 1 ms (WAIT with 0 waits forever)"));
        }
        if self.wait_replicas > 0 && wait_timeout >= self.redis_timeout {
            return Err(refuse(
                "--wait-timeout",
                format!(
                    "{} ms is not shorter than --redis-timeout ({:?}): every batch would time out before its WAIT answers",
                    self.wait_timeout, self.redis_timeout
                ),
            ));
        }
        let user = self.user.as_deref().map(lookup_user).transpose().map_err(|m| refuse("--user", m))?;
        let group = match self.group.as_deref() {
            Some(g) => Some(lookup_group(g).map_err(|m| refuse("--group", m))?),
            None => user.map(|(_, gid)| gid),
        };
        let observe = self.observe.into_observe()?;
        let log_target = |s: &str, dash: LogTarget| if s == "-" { dash } else { LogTarget::File(PathBuf::from(s)) };
        Ok(Config {
            cpus,
            allowed_cpus: allowed,
            share_cpus: self.share_cpus,
            bind,
            redis,
            redis_tls,
            wait_replicas: self.wait_replicas,
            wait_timeout,
            key: self.key,
            keep_alive: self.keep_alive,
            header_timeout: self.header_timeout,
            write_timeout: self.write_timeout,
            evict_after: self.evict_after,
            backlog: self.backlog,
            worker_connections: self.worker_connections,
            limits,
            timeout: self.timeout,
            graceful_timeout: self.graceful_timeout,
            redis_timeout: self.redis_timeout,
            error_log: log_target(&self.error_logfile, LogTarget::Stderr),
            access_log: self.access_logfile.as_deref().map(|s| log_target(s, LogTarget::Stdout)),
            log_level: self.log_level,
            coalesce: !self.no_coalesce,
            pidfile: self.pidfile,
            user: user.map(|(uid, _)| uid),
            group,
            observe,
        })
    }
}

/// 0 means the maximum; above the maximum is refused.
fn bounded(flag: &'static str, value: usize, max: usize) -> Result<usize, FlagError> {
    match value {
        0 => Ok(max),
        n if n > max => Err(refuse(flag, format!("at most {max} (0 means {max})"))),
        n => Ok(n),
    }
}

/// The CPUs in this process's affinity mask, ascending.
pub fn allowed_cpus() -> Vec<usize> {
    let mut cpus: Vec<usize> = core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect();
    cpus.sort_unstable();
    cpus
}

/// Parses `1-3,6` into `[1, 2, 3, 6]`, keeping the order given and dropping repeats.
pub fn parse_cpu_list(list: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |s: &str| s.trim().parse::<usize>().map_err(|_| format!("'{s}' is not a CPU number"));
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(part)?, num(part)?),
        };
        if lo > hi {
            return Err(format!("'{part}' is an empty range"));
        }
        for cpu in lo..=hi {
            if !cpus.contains(&cpu) {
                cpus.push(cpu);
            }
        }
    }
    if cpus.is_empty() {
        return Err("expected a list such as 0-3,6".into());
    }
    Ok(cpus)
}

/// Formats CPUs as ranges: `[0, 1, 2, 5]` -> `0-2,5`.
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        parts.push(if i == j { sorted[i].to_string() } else { format!("{}-{}", sorted[i], sorted[j]) });
        i = j + 1;
    }
    parts.join(",")
}

/// `HOST:PORT`, `[V6]:PORT`, `HOST` (port 8000) or `:PORT` (all interfaces), resolved once.
fn parse_bind(text: &str) -> Result<SocketAddr, String> {
    if text.starts_with("unix:") || text.starts_with("fd://") {
        return Err("only TCP addresses (HOST:PORT) are supported".into());
    }
    let with_port = if let Some(port) = text.strip_prefix(':') {
        format!("0.0.0.0:{port}")
    } else if text.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{text}]:8000")
    } else if text.ends_with(']') || !text.contains(':') {
        format!("{text}:8000")
    } else {
        text.to_string()
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| format!("'{text}': {e}"))?
        .next()
        .ok_or_else(|| format!("'{text}' resolves to no address"))
}

/// A user name or numeric uid, with the user's primary gid.
fn lookup_user(name: &str) -> Result<(u32, u32), String> {
    let cname = std::ffi::CString::new(name).map_err(|_| format!("'{name}' is not a user name"))?;
    // SAFETY: getpwnam/getpwuid return a pointer to static storage or null; read at once, before
    // anything else can call them (start-up is single-threaded).
    let pw = unsafe {
        match name.parse::<u32>() {
            Ok(uid) => libc::getpwuid(uid),
            Err(_) => libc::getpwnam(cname.as_ptr()),
        }
    };
    if pw.is_null() {
        return match name.parse::<u32>() {
            // A numeric uid without a passwd entry is still a uid; its group is the same number.
            Ok(uid) => Ok((uid, uid)),
            Err(_) => Err(format!("no such user '{name}'")),
        };
    }
    // SAFETY: checked non-null above.
    Ok(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

/// A group name or numeric gid.
fn lookup_group(name: &str) -> Result<u32, String> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    let cname = std::ffi::CString::new(name).map_err(|_| format!("'{name}' is not a group name"))?;
    // SAFETY: as in lookup_user.
    let gr = unsafe { libc::getgrnam(cname.as_ptr()) };
    if gr.is_null() {
        return Err(format!("no such group '{name}'"));
    }
    // SAFETY: checked non-null above.
    Ok(unsafe { (*gr).gr_gid })
}

/// Seconds as a whole or decimal number (`2`, `0.5`).
fn seconds(text: &str) -> Result<Duration, String> {
    let value: f64 = text.trim().parse().map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("'{text}' is not a non-negative number of seconds"));
    }
    Ok(Duration::from_secs_f64(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("1-3,6"), Ok(vec![1, 2, 3, 6]));
        assert_eq!(parse_cpu_list("3,1,3"), Ok(vec![3, 1]));
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("x").is_err());
        assert!(parse_cpu_list("").is_err());
        assert_eq!(format_cpu_list(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
    }

    #[test]
    fn binds() {
        assert_eq!(parse_bind("127.0.0.1:0"), Ok("127.0.0.1:0".parse().unwrap()));
        assert_eq!(parse_bind("127.0.0.1"), Ok("127.0.0.1:8000".parse().unwrap()));
        assert_eq!(parse_bind(":9000"), Ok("0.0.0.0:9000".parse().unwrap()));
        assert_eq!(parse_bind("[::1]:9000"), Ok("[::1]:9000".parse().unwrap()));
        assert!(parse_bind("unix:/tmp/x").is_err());
    }

    #[test]
    fn seconds_accept_decimals() {
        assert_eq!(seconds("2"), Ok(Duration::from_secs(2)));
        assert_eq!(seconds("0.25"), Ok(Duration::from_millis(250)));
        assert!(seconds("-1").is_err());
        assert!(seconds("soon").is_err());
    }
}
