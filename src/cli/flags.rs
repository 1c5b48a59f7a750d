//! The one [`Cli`] struct: the command line as groups of flags, each flattened in from the file
//! that validates it, and [`Cli::into_config`], which puts their parts together into a [`Config`]
//! and makes the checks that span groups.
//!
//! The groups are flattened in the order `--help` has always listed their flags (clap lists, and
//! `--check-config` prints, flags in definition order), which is why a few subjects come in two
//! groups (Redis: [`RedisFlags`] and [`ReplyFlags`]; the supervisor: [`StopFlags`] and
//! [`ProcessFlags`]). It must not open sockets or decide precedence between the command line, the
//! environment and the file (`load` does); each refusal names its flag ([`FlagError`]).

use std::path::PathBuf;

use clap::Parser;

use super::api::ApiFlags;
use super::connections::ConnectionFlags;
use super::error::FlagError;
use super::https::HttpsFlags;
use super::listen::ListenFlags;
use super::logs::LogFlags;
use super::observe::ObserveFlags;
use super::redis::{RedisFlags, ReplyFlags};
use super::shards::ShardFlags;
use super::supervise::{ProcessFlags, StopFlags};
use crate::config::Config;

/// hitcore: a thread-per-core HTTP hit counter on io_uring, backed by Redis.
///
/// `GET /` increments a Redis counter and answers with its new value. One shard process per CPU,
/// each with its own listener and its own pipelined Redis connection, under a
/// supervisor that restarts stalled or crashed shards without dropping queued connections.
#[derive(Debug, Parser)]
#[command(name = "hitcore", version, about, long_about = None, max_term_width = 100)]
pub struct Cli {
    /// `-w`, `--cpus`, `--share-cpus`, `--pin`.
    #[command(flatten)]
    pub shards: ShardFlags,

    /// `-b`, `--bind-mode`, and systemd's sockets.
    #[command(flatten)]
    pub listen: ListenFlags,

    /// `--redis`, its password, TLS and sentinel flags, `--key`.
    #[command(flatten)]
    pub redis: RedisFlags,

    /// Keep-alive, timeouts, `--backlog`, `--worker-connections`, `--limit-request-*`.
    #[command(flatten)]
    pub connections: ConnectionFlags,

    /// `-t`, `--graceful-timeout`, `--upgrade-timeout`.
    #[command(flatten)]
    pub stop: StopFlags,

    /// `--redis-timeout`, `--wait-replicas`, `--wait-timeout`.
    #[command(flatten)]
    pub replies: ReplyFlags,

    /// `--error-logfile`, `--access-logfile`, `--log-level`.
    #[command(flatten)]
    pub logs: LogFlags,

    // One boolean with nothing to check, kept here where --help has always listed it.
    /// Send one INCR per request instead of one INCRBY per batch (for comparisons)
    #[arg(long = "no-coalesce")]
    pub no_coalesce: bool,

    /// `-p`, `-u`, `-g`.
    #[command(flatten)]
    pub process: ProcessFlags,

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
    pub https: HttpsFlags,

    /// The counting API.
    #[command(flatten)]
    pub api: ApiFlags,
}

impl Cli {
    /// Validates every group and resolves names, producing the configuration every process
    /// shares. Each group checks its own flags; the checks made here need two groups.
    pub fn into_config(self) -> Result<Config, FlagError> {
        let shards = self.shards.into_shards()?;
        let listen = self.listen.into_listen()?;
        let redis = self.redis.into_redis()?;
        let connections = self.connections.into_connections()?;
        let replies = self.replies.into_replies()?;
        let logs = self.logs.into_logs();
        let process = self.process.into_process()?;
        // HTTPS is served on the TCP binds, and cannot yet follow a PROXY header.
        let https = self.https.into_https(&listen.binds, self.observe.proxy_protocol)?;
        let observe = self.observe.into_observe()?;
        // The rate limit counts the client that --forwarded-allow-ips lets X-Forwarded-For name.
        let api = self.api.into_settings(&observe.forwarded_allow_ips)?;
        Ok(Config {
            cpus: shards.cpus,
            allowed_cpus: shards.allowed_cpus,
            share_cpus: shards.share_cpus,
            pin: shards.pin,
            bind: listen.bind,
            binds: listen.binds,
            bind_mode: listen.bind_mode,
            redis: redis.redis,
            redis_tls: redis.redis_tls,
            wait_replicas: replies.wait_replicas,
            wait_timeout: replies.wait_timeout,
            key: redis.key,
            keep_alive: connections.keep_alive,
            header_timeout: connections.header_timeout,
            write_timeout: connections.write_timeout,
            evict_after: connections.evict_after,
            backlog: connections.backlog,
            worker_connections: connections.worker_connections,
            limits: connections.limits,
            timeout: self.stop.timeout,
            graceful_timeout: self.stop.graceful_timeout,
            upgrade_timeout: self.stop.upgrade_timeout,
            redis_timeout: replies.redis_timeout,
            error_log: logs.error_log,
            access_log: logs.access_log,
            log_level: logs.log_level,
            coalesce: !self.no_coalesce,
            pidfile: process.pidfile,
            user: process.user,
            group: process.group,
            observe,
            https,
            api,
        })
    }
}
