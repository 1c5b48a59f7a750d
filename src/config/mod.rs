//! The validated configuration: plain data, the same in the supervisor and in every shard.
//!
//! It owns nothing but values. The supervisor builds it from the command line (`cli`), and hands it
//! to each shard process serialised in the shard's hand-off, so shards never re-parse flags,
//! re-resolve names or re-read the CPU mask. It must not hold file descriptors or anything that does
//! not survive a re-exec.
//!
//! Dependencies point one way, into here: `config` imports nothing of `redis/` or `http/`. The
//! plain data those rooms are configured with lives in this folder (`limits`: the request-head
//! limits; `redis_url` and `redis_topology`: the Redis URL forms and their syntax; `https`: the
//! HTTPS files and versions; `api`: the counting API's settings), and the shard
//! builds `redis` settings and the HTTP context from it. `defaults` holds every flag's default,
//! which clap shows and the serde defaults below return, so a hand-off that lacks a field reads
//! as the flag's default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bind::Bind;
use crate::logging::{LogLevel, LogTarget};

pub mod api;
pub mod defaults;
pub mod https;
pub mod limits;
pub mod redis_topology;
pub mod redis_url;

use defaults::{DEFAULT_ACCESS_LOG_FORMAT, DEFAULT_HEALTH_PATH, DEFAULT_TRUSTED_PEERS};
use limits::Limits;
use redis_url::{RedisTarget, TlsFiles};

/// Everything a supervisor or shard needs to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// The CPU each shard is assigned, by shard index (pinned to it with `--pin`); its length is `-w`.
    pub cpus: Vec<usize>,
    /// Every CPU shards may use (`--cpus`, default the affinity mask): where TTIN finds room.
    pub allowed_cpus: Vec<usize>,
    /// Whether several shards may share one CPU (`--share-cpus`).
    pub share_cpus: bool,
    /// Whether each shard is pinned to its CPU in `cpus` (`--pin`); otherwise a shard may run on any
    /// of `allowed_cpus` and the kernel places it. Absent from the hand-offs of releases before it,
    /// which always pinned: read as the flag's default, as every added field is (src/handoff.rs).
    #[serde(default)]
    pub pin: bool,
    /// The TCP address every shard's listener binds, with the real port once bound (the first
    /// `-b`; see `binds`).
    pub bind: SocketAddr,
    /// Every address given, in order: TCP, `unix:PATH`, `fd://N`, or systemd's sockets when
    /// activated without `-b` (`-b`, repeatable). Empty from a supervisor older than this field.
    #[serde(default)]
    pub binds: Vec<Bind>,
    /// `--bind-mode`: the permissions of `unix:` sockets (default: 0666 less the umask).
    #[serde(default)]
    pub bind_mode: Option<u32>,
    /// Redis, resolved (`--redis` / `REDIS_URL`).
    pub redis: RedisTarget,
    /// `--redis-tls-ca`, `--redis-tls-cert`, `--redis-tls-key`, `--redis-tls-insecure`, for
    /// `rediss://` (absent from a previous release's hand-off: no TLS files).
    #[serde(default)]
    pub redis_tls: TlsFiles,
    /// `--wait-replicas`: replicas that must acknowledge each batch before it is answered 200
    /// (default 0: no WAIT).
    #[serde(default)]
    pub wait_replicas: u32,
    /// `--wait-timeout`: how long each batch's WAIT may wait (default [`defaults::DEFAULT_WAIT_TIMEOUT_MS`]).
    #[serde(default = "default_wait_timeout")]
    pub wait_timeout: Duration,
    /// The counter key (`--key`, default [`defaults::DEFAULT_KEY`]).
    pub key: String,
    /// How long an idle keep-alive connection waits for the next request; zero disables keep-alive
    /// (`--keep-alive`, default [`defaults::DEFAULT_KEEP_ALIVE`]).
    pub keep_alive: Duration,
    /// How long a started request head may take to arrive completely, and how long a new connection
    /// may take to send its first head (`--header-timeout`, default [`defaults::DEFAULT_HEADER_TIMEOUT`]).
    pub header_timeout: Duration,
    /// How long a batch of answers may wait for a client that does not read them before the
    /// connection is closed (`--write-timeout`, default [`defaults::DEFAULT_WRITE_TIMEOUT`]).
    pub write_timeout: Duration,
    /// At the connection cap, how long a connection must have waited for a complete request
    /// before it may be closed to make room (`--evict-after`, default [`defaults::DEFAULT_EVICT_AFTER`]).
    #[serde(default = "default_evict_after")]
    pub evict_after: Duration,
    /// `listen()` backlog of each shard's listener (`--backlog`, default [`defaults::DEFAULT_BACKLOG`];
    /// capped by somaxconn).
    pub backlog: u32,
    /// Connections one shard serves at once; beyond it the shard stops accepting and the kernel
    /// queues them (`--worker-connections`, default [`defaults::DEFAULT_WORKER_CONNECTIONS`]).
    pub worker_connections: usize,
    /// Request head limits (`--limit-request-*`).
    pub limits: Limits,
    /// A shard whose heartbeat is older than this is killed and replaced; zero disables the
    /// watchdog (`-t/--timeout`, default [`defaults::DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
    /// How long a graceful stop may take before shards are killed (`--graceful-timeout`,
    /// default [`defaults::DEFAULT_GRACEFUL_TIMEOUT`]).
    pub graceful_timeout: Duration,
    /// How long a USR2 may take before the new supervisor serves; past it the old one stops the new
    /// one and carries on (`--upgrade-timeout`, default [`defaults::DEFAULT_UPGRADE_TIMEOUT`]; absent
    /// from an older release's hand-off).
    #[serde(default = "default_upgrade_timeout")]
    pub upgrade_timeout: Duration,
    /// How long a written Redis command may wait for its reply before the connection is rebuilt
    /// and its requests get 503 (`--redis-timeout`, default [`defaults::DEFAULT_REDIS_TIMEOUT`]).
    pub redis_timeout: Duration,
    /// Where the error log goes (`--error-logfile`, default stderr).
    pub error_log: LogTarget,
    /// Where the access log goes, if anywhere (`--access-logfile`, default off).
    pub access_log: Option<LogTarget>,
    /// `--log-level`, default [`defaults::DEFAULT_LOG_LEVEL`].
    pub log_level: LogLevel,
    /// One INCRBY per batch (default) or one INCR per request (`--no-coalesce`).
    pub coalesce: bool,
    /// `-p/--pid`: the pid file, if any.
    pub pidfile: Option<PathBuf>,
    /// `-u/--user`: the uid shards run as (the supervisor keeps its own, to bind).
    pub user: Option<u32>,
    /// `-g/--group`: the gid shards run as.
    pub group: Option<u32>,
    /// Metrics, health checks and what the access log says (absent from an older supervisor's
    /// hand-off: the defaults then apply).
    #[serde(default)]
    pub observe: Observe,
    /// `--certfile`, `--keyfile` and the other HTTPS flags: HTTPS on every TCP listener when
    /// present (absent from a previous release's hand-off: plain HTTP, as it served).
    #[serde(default)]
    pub https: Option<https::Https>,
    /// The counting API's settings (`--api-mode`, `--counter-ttl`, `--cors-origins`,
    /// `--admin-token-file`); absent from an older supervisor's hand-off: the defaults.
    #[serde(default)]
    pub api: api::Settings,
}

/// Observability settings: `--metrics-bind`, `--health-path`, `--access-logformat`,
/// `--forwarded-allow-ips`, `--proxy-protocol`, `--proxy-allow-from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Observe {
    /// Where the supervisor serves `/metrics`, if anywhere (`--metrics-bind`, default off).
    pub metrics_bind: Option<SocketAddr>,
    /// The health check's path (`--health-path`, default [`DEFAULT_HEALTH_PATH`]).
    pub health_path: String,
    /// The access log's line, in gunicorn's atoms (`--access-logformat`).
    pub access_log_format: String,
    /// Peers whose `X-Forwarded-For` names the client (`--forwarded-allow-ips`).
    pub forwarded_allow_ips: String,
    /// Every connection starts with a PROXY protocol v1/v2 header (`--proxy-protocol`).
    pub proxy_protocol: bool,
    /// The error and access logs as text lines or JSON lines (`--log-format`; absent from an
    /// older supervisor's hand-off: text).
    pub log_format: crate::logjson::LogFormat,
    /// Peers whose PROXY header is believed (`--proxy-allow-from`, gunicorn's `127.0.0.1,::1`;
    /// also the default under an older supervisor, whose hand-off lacks it).
    pub proxy_allow_from: String,
}

impl Default for Observe {
    fn default() -> Self {
        Observe {
            metrics_bind: None,
            health_path: DEFAULT_HEALTH_PATH.into(),
            access_log_format: DEFAULT_ACCESS_LOG_FORMAT.into(),
            forwarded_allow_ips: DEFAULT_TRUSTED_PEERS.into(),
            proxy_protocol: false,
            log_format: crate::logjson::LogFormat::default(),
            proxy_allow_from: DEFAULT_TRUSTED_PEERS.into(),
        }
    }
}

/// `--evict-after`'s default, for a hand-off from a supervisor older than the flag (src/handoff.rs).
fn default_evict_after() -> Duration {
    defaults::DEFAULT_EVICT_AFTER
}

/// `--upgrade-timeout`'s default, for a hand-off from a supervisor older than the flag.
fn default_upgrade_timeout() -> Duration {
    defaults::DEFAULT_UPGRADE_TIMEOUT
}

/// `--wait-timeout`'s default, for a hand-off from a supervisor older than the flag.
pub fn default_wait_timeout() -> Duration {
    Duration::from_millis(defaults::DEFAULT_WAIT_TIMEOUT_MS)
}

impl Config {
    /// What a HUP applies from a freshly loaded configuration (`cli::Invocation::reload`): every
    /// setting a new shard reads (timeouts, limits, Redis, key, logs, coalescing, anything added
    /// later) comes from `new`, and so do the binds after the first and `--bind-mode` (the
    /// supervisor opens and closes those listeners: src/supervisor/rebind.rs); what the supervisor
    /// set up once at start-up stays as it is: the first bind (every shard's main listener: one
    /// SO_REUSEPORT listener per shard when it is TCP), `--backlog`, the shards' CPUs (`-w`,
    /// `--cpus`, `--share-cpus`; TTIN and TTOU change the count), `-u`/`-g`, `-p`, the supervisor's
    /// own error log and the watchdog period (`-t`). Returns the configuration to use and the flags
    /// whose change was not applied, for a log line.
    pub fn for_reload(&self, new: Config) -> (Config, Vec<&'static str>) {
        let mut kept = Vec::new();
        let new_binds = if new.binds.is_empty() { vec![Bind::Tcp(new.bind)] } else { new.binds.clone() };
        let old_binds = if self.binds.is_empty() { vec![Bind::Tcp(self.bind)] } else { self.binds.clone() };
        let same_first = new_binds[0].same_request(&old_binds[0]);
        // The first bind stays; every other one asked for now follows it (a new first address
        // among them: it is served, as a shared listener, until a restart makes it the first).
        let binds: Vec<Bind> = std::iter::once(old_binds[0].clone())
            .chain(new_binds.iter().filter(|b| !b.same_request(&old_binds[0])).cloned())
            .collect();
        let checks = [
            ("--bind (its first address)", !same_first),
            ("--backlog", new.backlog != self.backlog),
            ("--workers", new.cpus.len() != self.cpus.len()),
            ("--cpus", new.allowed_cpus != self.allowed_cpus),
            ("--share-cpus", new.share_cpus != self.share_cpus),
            ("--user", new.user != self.user),
            ("--group", new.group != self.group),
            ("--pid", new.pidfile != self.pidfile),
            ("--error-logfile", new.error_log != self.error_log),
            ("--timeout", new.timeout != self.timeout),
            ("--metrics-bind", new.observe.metrics_bind != self.observe.metrics_bind),
        ];
        kept.extend(checks.iter().filter(|(_, changed)| *changed).map(|(flag, _)| *flag));
        let config = Config {
            cpus: self.cpus.clone(),
            allowed_cpus: self.allowed_cpus.clone(),
            share_cpus: self.share_cpus,
            bind: self.bind,
            binds,
            backlog: self.backlog,
            user: self.user,
            group: self.group,
            pidfile: self.pidfile.clone(),
            error_log: self.error_log.clone(),
            timeout: self.timeout,
            ..new
        };
        // The supervisor's /metrics listener is opened once, at start-up.
        let mut config = config;
        config.observe.metrics_bind = self.observe.metrics_bind;
        (config, kept)
    }

    /// Whether shards share their main listener (the first bind is a unix socket, an inherited or
    /// systemd's socket) instead of each having its own in a reuseport group: such a listener is
    /// never ejected or shut down by one shard, since every shard accepts from it.
    pub fn main_listener_shared(&self) -> bool {
        self.binds.first().is_some_and(|b| !matches!(b, Bind::Tcp(_)))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Invocation;

    fn load(args: &[&str]) -> Config {
        let mut all = vec!["hitcore", "-w", "1"];
        all.extend_from_slice(args);
        Invocation::new(all).load().unwrap().config
    }

    #[test]
    fn a_reload_applies_what_shards_read_and_keeps_what_start_up_set() {
        let mut old = load(&["--key", "a", "-b", "127.0.0.1:0"]);
        old.bind.set_port(4321); // as bound
        let new = load(&["--key", "b", "-b", "127.0.0.1:0", "--keep-alive", "7", "--backlog", "10"]);
        let (config, kept) = old.for_reload(new);
        assert_eq!(config.key, "b");
        assert_eq!(config.keep_alive, std::time::Duration::from_secs(7));
        assert_eq!(config.bind, "127.0.0.1:4321".parse().unwrap(), "the bound port stays");
        assert_eq!(config.backlog, old.backlog);
        assert_eq!(kept, vec!["--backlog"]);

        let moved = load(&["-b", "127.0.0.1:9"]);
        let (config, kept) = old.for_reload(moved);
        assert_eq!((config.bind, kept), ("127.0.0.1:4321".parse().unwrap(), vec!["--bind (its first address)"]));
    }

    #[test]
    fn a_reload_takes_the_binds_after_the_first_and_keeps_the_first() {
        let old = load(&["-b", "127.0.0.1:0", "-b", "unix:/tmp/a.sock"]);
        let new = load(&["-b", "127.0.0.1:0", "-b", "127.0.0.2:0", "-b", "unix:/tmp/b.sock", "--bind-mode", "600"]);
        let (config, kept) = old.for_reload(new.clone());
        assert!(kept.is_empty(), "{kept:?}");
        assert_eq!(config.binds, new.binds);
        assert_eq!(config.bind_mode, Some(0o600));

        // A new first address does not replace the first: it is served after it.
        let swapped = load(&["-b", "unix:/tmp/a.sock", "-b", "127.0.0.1:0", "-b", "127.0.0.3:0"]);
        let (config, kept) = old.for_reload(swapped);
        assert_eq!(kept, vec!["--bind (its first address)"]);
        let shown: Vec<String> = config.binds.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["127.0.0.1:0", "unix:/tmp/a.sock", "127.0.0.3:0"]);
        let (config, _) = old.for_reload(load(&["-b", "127.0.0.2:0"]));
        let shown: Vec<String> = config.binds.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["127.0.0.1:0", "127.0.0.2:0"]);
    }

    #[test]
    fn an_older_hand_off_without_observe_decodes_with_defaults() {
        let config = crate::cli::Cli::try_parse_from(["hitcore", "-w", "1", "--redis", "redis://127.0.0.1:1"])
            .unwrap()
            .into_config()
            .unwrap();
        let mut json: serde_json::Value = serde_json::to_value(&config).unwrap();
        json.as_object_mut().unwrap().remove("observe");
        let old: Config = serde_json::from_value(json).unwrap();
        assert_eq!(old.observe, Observe::default());
        assert_eq!(old.observe.health_path, "/healthz");
        // A partial block (a release with fewer fields) fills in the rest.
        let partial: Observe = serde_json::from_str(r#"{"proxy_protocol": true}"#).unwrap();
        assert!(partial.proxy_protocol);
        assert_eq!(partial.access_log_format, crate::config::defaults::DEFAULT_ACCESS_LOG_FORMAT);
        // A supervisor from before --proxy-allow-from: gunicorn's default list.
        assert_eq!(partial.proxy_allow_from, "127.0.0.1,::1");
    }
}
