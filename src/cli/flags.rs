//! The one [`Cli`] struct: every flag's name, default and help (clap), with its groups flattened
//! in, and [`Cli::into_config`], which validates them into a [`Config`].
//!
//! It must not open sockets or decide precedence between the command line, the environment and
//! the file (`load` does); each refusal names its flag ([`FlagError`]).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use super::error::{FlagError, refuse};
use super::observe::ObserveFlags;
use super::secrets;
use super::values::{allowed_cpus, format_cpu_list, lookup_group, lookup_user, octal_mode, parse_cpu_list, seconds};
use crate::bind::Bind;

use crate::config::Config;
use crate::config::redis_url::{DEFAULT_URL, RedisTarget};
use crate::http::parse::{Limits, MAX_FIELD_SIZE, MAX_FIELDS, MAX_REQUEST_LINE};
use crate::logging::{LogLevel, LogTarget};
use crate::redis::tls::{self, TlsFiles};

/// hitcore: a thread-per-core HTTP hit counter on io_uring, backed by Redis.
///
/// `GET /` increments a Redis counter and answers with its new value. One shard process per CPU,
/// each with its own listener and its own pipelined Redis connection, under a
/// supervisor that restarts stalled or crashed shards without dropping queued connections.
#[derive(Debug, Parser)]
#[command(name = "hitcore", version, about, long_about = None, max_term_width = 100)]
pub struct Cli {
    /// Shards to run, one process per CPU [default: $WEB_CONCURRENCY when set (as gunicorn), else the
    /// CPUs this process may use]
    #[arg(short = 'w', long = "workers", value_name = "N", hide_default_value = true,
          default_value_t = allowed_cpus().len())]
    pub workers: usize,

    /// CPUs shards run on, e.g. `1-3,6`; with --pin shard i runs on the i-th [default: the affinity mask]
    #[arg(long, value_name = "LIST")]
    pub cpus: Option<String>,

    /// Allow more shards than CPUs: shards then share CPUs, round-robin
    #[arg(long)]
    pub share_cpus: bool,

    /// Pin each shard to one CPU of --cpus (shard i to the i-th), for a machine whose CPUs the shards
    /// have to themselves [default: each shard may run on any CPU of --cpus and the kernel places it,
    /// so a busy neighbour on one CPU (a load generator, a log shipper) does not stall a shard]
    #[arg(long)]
    pub pin: bool,

    /// Address to listen on: HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N; repeat for several.
    /// Port 0 picks a free port (the log says which). Without it, the sockets systemd passes
    /// (socket activation) when there are any, else 0.0.0.0:$PORT when PORT is set (as gunicorn)
    #[arg(short = 'b', long, value_name = "ADDRESS", default_value = "127.0.0.1:8000", action = clap::ArgAction::Append)]
    pub bind: Vec<String>,

    /// Permissions of unix: sockets, in octal (e.g. 660) [default: 666 less the umask]
    #[arg(long = "bind-mode", value_name = "MODE", value_parser = octal_mode)]
    pub bind_mode: Option<u32>,

    /// The sockets systemd passed, set by the loader when no `-b` was given (not a flag).
    #[arg(skip)]
    pub activated: Vec<Bind>,

    /// Redis URL: redis://[user][:password]@host[:port][/db], rediss://... for TLS,
    /// unix:///path?db=N&password=..., redis+sentinel://[user][:password]@host:port[,host:port...]/SERVICE[/db]
    /// or redis+cluster://[user][:password]@host:port[,host:port...] (rediss+... for TLS). The host is
    /// resolved again at every reconnect (also read from REDIS_URL)
    // A value starting with '-' is the value, not a flag clap would refuse by quoting it.
    #[arg(long, hide_env_values = true, allow_hyphen_values = true, value_name = "URL", default_value = DEFAULT_URL)]
    pub redis: String,

    /// File holding the Redis password (one line), so it stays out of URLs, `ps` and the
    /// environment [default: $CREDENTIALS_DIRECTORY/redis-password when systemd passes it]
    #[arg(long = "redis-password-file", value_name = "FILE")]
    pub redis_password_file: Option<PathBuf>,

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
        allow_hyphen_values = true,
        value_name = "PASSWORD"
    )]
    pub sentinel_password: Option<String>,

    /// File holding the sentinels' password (one line), so it stays out of `ps` and the
    /// environment [default: $CREDENTIALS_DIRECTORY/sentinel-password when systemd passes it and
    /// the URL is redis+sentinel://]
    #[arg(long = "sentinel-password-file", value_name = "FILE", conflicts_with = "sentinel_password")]
    pub sentinel_password_file: Option<PathBuf>,

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

    /// Connections each shard serves at once; beyond it, new ones wait in the kernel's queue (an idle
    /// one costs about 3.4 KiB; the open-files limit is raised to fit, up to its hard limit)
    #[arg(long = "worker-connections", value_name = "N", default_value_t = 10000)]
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

    /// Error log level: debug, info, warning, error or critical, in any case
    #[arg(long = "log-level", value_enum, ignore_case = true, value_name = "LEVEL", default_value = "info")]
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

    /// Read settings from this TOML file; keys are the long flags (`workers = 4`); the command
    /// line and the environment win over it
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Check the configuration (flags, environment, file, addresses, files it names), print it with
    /// secrets masked, and exit: 0 if valid, 2 if not. Binds nothing and needs no Redis
    #[arg(long = "check-config")]
    pub check_config: bool,

    /// Metrics, health checks and the access log's contents.
    #[command(flatten)]
    pub observe: ObserveFlags,

    /// HTTPS.
    #[command(flatten)]
    pub https: super::https::HttpsFlags,

    /// The counting API.
    #[command(flatten)]
    pub api: super::api::ApiFlags,
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
                    "{} shards but only {} CPUs ({}); hitcore runs one shard per CPU, so pass --share-cpus to let \
                     shards share CPUs",
                    self.workers,
                    allowed.len(),
                    format_cpu_list(&allowed)
                ),
            ));
        }
        let cpus = (0..self.workers).map(|i| allowed[i % allowed.len()]).collect();
        let binds = if self.activated.is_empty() {
            let binds = self.bind.iter().map(|b| Bind::parse(b)).collect::<Result<Vec<_>, _>>();
            binds.map_err(|m| refuse("--bind", m))?
        } else {
            self.activated
        };
        if let Some(twice) = binds.iter().enumerate().find_map(|(i, b)| binds[..i].contains(b).then_some(b)) {
            return Err(refuse("--bind", format!("{twice} is given twice")));
        }
        if self.bind_mode.is_some() && !binds.iter().any(|b| matches!(b, Bind::Unix(_))) {
            return Err(refuse("--bind-mode", "there is no unix: address to apply it to"));
        }
        let bind = served(&binds)?;
        let mut redis = RedisTarget::parse(&self.redis).map_err(|e| refuse("--redis", e.to_string()))?;
        if let Some(password) = secrets::redis_password(self.redis_password_file.as_deref(), redis.password.is_some())?
        {
            redis.password = Some(password);
        }
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
        let sentinel = matches!(redis.endpoint, crate::config::redis_url::Endpoint::Sentinel { .. });
        redis.sentinel_password =
            secrets::sentinel_password(self.sentinel_password, self.sentinel_password_file.as_deref(), sentinel)?;
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
        let group = match (self.group.as_deref(), user) {
            (Some(g), _) => Some(lookup_group(g).map_err(|m| refuse("--group", m))?),
            (None, Some((_, Some(gid)))) => Some(gid),
            (None, Some((uid, None))) => {
                return Err(refuse("--user", format!("uid {uid} has no passwd entry, so no primary group: pass -g")));
            }
            (None, None) => None,
        };
        let https = self.https.into_https(&binds, self.observe.proxy_protocol)?;
        let observe = self.observe.into_observe()?;
        let api = self.api.into_settings(&observe.forwarded_allow_ips)?;
        let log_target = |s: &str, dash: LogTarget| if s == "-" { dash } else { LogTarget::File(PathBuf::from(s)) };
        Ok(Config {
            cpus,
            allowed_cpus: allowed,
            share_cpus: self.share_cpus,
            pin: self.pin,
            bind,
            binds,
            bind_mode: self.bind_mode,
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
            https,
            api,
        })
    }
}

/// The address every shard gets a listener of its own for: the first bind when it is TCP. When it
/// is not, shards share their main listener and this placeholder (port 0 on no address) is unused.
fn served(binds: &[Bind]) -> Result<std::net::SocketAddr, FlagError> {
    match binds.first() {
        Some(Bind::Tcp(addr)) => Ok(*addr),
        Some(_) => Ok(std::net::SocketAddr::from(([0, 0, 0, 0], 0))),
        None => Err(refuse("--bind", "no address to listen on")),
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
