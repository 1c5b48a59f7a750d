//! The validated configuration: plain data, the same in the supervisor and in every shard.
//!
//! It owns nothing but values. The supervisor builds it from the command line (`cli`), and hands it
//! to each shard process serialised in the shard's environment, so shards never re-parse flags,
//! re-resolve names or re-read the CPU mask. It must not hold file descriptors or anything that does
//! not survive a re-exec.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::http::parse::Limits;
use crate::logging::{LogLevel, LogTarget};
use crate::redis::tls::TlsFiles;
use crate::redis::url::RedisTarget;

/// Everything a supervisor or shard needs to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// The CPU each shard is pinned to, by shard index; its length is `-w`.
    pub cpus: Vec<usize>,
    /// Every CPU shards may use (`--cpus`, default the affinity mask): where TTIN finds room.
    pub allowed_cpus: Vec<usize>,
    /// Whether several shards may share one CPU (`--share-cpus`).
    pub share_cpus: bool,
    /// The address every shard's listener binds, with the real port once bound (`-b`).
    pub bind: SocketAddr,
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
    /// `--wait-timeout`: how long each batch's WAIT may wait (default 50 ms).
    #[serde(default = "default_wait_timeout")]
    pub wait_timeout: Duration,
    /// The counter key (`--key`, default `hit`).
    pub key: String,
    /// How long an idle keep-alive connection waits for the next request; zero disables keep-alive
    /// (`--keep-alive`, default 2 s, as gunicorn).
    pub keep_alive: Duration,
    /// How long a started request head may take to arrive completely, and how long a new connection
    /// may take to send its first head (`--header-timeout`, default 2 s).
    pub header_timeout: Duration,
    /// How long a batch of answers may wait for a client that does not read them before the
    /// connection is closed (`--write-timeout`, default 10 s).
    pub write_timeout: Duration,
    /// At the connection cap, how long a connection must have waited for a complete request
    /// before it may be closed to make room (`--evict-after`, default 0.1 s).
    pub evict_after: Duration,
    /// `listen()` backlog of each shard's listener (`--backlog`, default 2048; capped by somaxconn).
    pub backlog: u32,
    /// Connections one shard serves at once; beyond it the shard stops accepting and the kernel
    /// queues them (`--worker-connections`, default 1000).
    pub worker_connections: usize,
    /// Request head limits (`--limit-request-*`).
    pub limits: Limits,
    /// A shard whose heartbeat is older than this is killed and replaced; zero disables the
    /// watchdog (`-t/--timeout`, default 30 s).
    pub timeout: Duration,
    /// How long a graceful stop may take before shards are killed (`--graceful-timeout`, default 30 s).
    pub graceful_timeout: Duration,
    /// How long a written Redis command may wait for its reply before the connection is rebuilt
    /// and its requests get 503 (`--redis-timeout`, default 1 s).
    pub redis_timeout: Duration,
    /// Where the error log goes (`--error-logfile`, default stderr).
    pub error_log: LogTarget,
    /// Where the access log goes, if anywhere (`--access-logfile`, default off).
    pub access_log: Option<LogTarget>,
    /// `--log-level`, default info.
    pub log_level: LogLevel,
    /// One INCRBY per batch (default) or one INCR per request (`--no-coalesce`).
    pub coalesce: bool,
    /// `-p/--pid`: the pid file, if any.
    pub pidfile: Option<PathBuf>,
    /// `-u/--user`: the uid shards run as (the supervisor keeps its own, to bind).
    pub user: Option<u32>,
    /// `-g/--group`: the gid shards run as.
    pub group: Option<u32>,
}

/// Pipelined requests taken from one connection per batch. More stay in its buffer for the next
/// batch, so one client cannot make a shard hold an unbounded batch.
pub const MAX_PIPELINE: usize = 128;

/// `--wait-timeout`'s default.
pub fn default_wait_timeout() -> Duration {
    Duration::from_millis(50)
}

impl Config {
    /// Requests one shard may have waiting on Redis at once: every connection with a full batch.
    /// Reaching it answers 503 rather than queueing more.
    pub fn max_pending(&self) -> u64 {
        (self.worker_connections * MAX_PIPELINE) as u64
    }
}
