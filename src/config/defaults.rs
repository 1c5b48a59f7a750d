//! Every flag's default, written once: clap shows and applies these (`default_value_t`, or a
//! `default_value` rendered from the const for seconds), and serde's default functions return
//! them for a hand-off that lacks a field, so the two cannot drift apart
//! (`cli::defaults_agree` checks it, with `--check-config`'s output).
//!
//! It owns values only; it must not parse or validate. Defaults that belong to a part with a file
//! of its own stay there, one place each: the request-head limits in [`super::limits`], the
//! counting API's in [`super::api`], `--ssl-min-version` as [`super::https::MinVersion`]'s
//! `#[default]` variant, `--log-format` as `LogFormat`'s. `--workers` has no constant: it is the
//! number of CPUs this process may use, found at start.

use std::time::Duration;

use crate::logging::LogLevel;

/// `-b/--bind`'s default (without `-b`, `PORT` or systemd's sockets).
pub const DEFAULT_BIND: &str = "127.0.0.1:8000";

/// `--key`'s default: the Redis key holding the counter.
pub const DEFAULT_KEY: &str = "hit";

/// `--keep-alive`'s default, as gunicorn's.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(2);

/// `--header-timeout`'s default: nginx's `client_header_timeout`. It was 2 s; beside 5,000
/// slowloris connections that made hitcore close about 2,000 of them a second, each reopened by
/// the attacker at once, and the churn cost a normal client's p99 (7.89 ms against nginx's 4.34;
/// with 60 s, 2.94 ms, nothing closed: docs/performance.md, issue 22). Slow heads no longer need a
/// short deadline to be shed: at `--worker-connections` the one that has waited longest is closed.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(60);

/// `--evict-after`'s default.
pub const DEFAULT_EVICT_AFTER: Duration = Duration::from_millis(100);

/// `--write-timeout`'s default.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// `--backlog`'s default, as gunicorn's.
pub const DEFAULT_BACKLOG: u32 = 2048;

/// `--worker-connections`' default (1000, gunicorn's, before issue 14).
pub const DEFAULT_WORKER_CONNECTIONS: usize = 10_000;

/// `-t/--timeout`'s default, as gunicorn's.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// `--graceful-timeout`'s default, as gunicorn's.
pub const DEFAULT_GRACEFUL_TIMEOUT: Duration = Duration::from_secs(30);

/// `--upgrade-timeout`'s default.
pub const DEFAULT_UPGRADE_TIMEOUT: Duration = Duration::from_secs(60);

/// `--redis-timeout`'s default.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// `--wait-replicas`' default: no WAIT.
pub const DEFAULT_WAIT_REPLICAS: u32 = 0;

/// `--wait-timeout`'s default, in milliseconds as the flag takes it.
pub const DEFAULT_WAIT_TIMEOUT_MS: u64 = 50;

/// `--error-logfile`'s default: `-`, stderr.
pub const DEFAULT_ERROR_LOGFILE: &str = "-";

/// `--log-level`'s default.
pub const DEFAULT_LOG_LEVEL: LogLevel = LogLevel::Info;

/// `--health-path`'s default.
pub const DEFAULT_HEALTH_PATH: &str = "/healthz";

/// gunicorn's default `access_log_format`, and hitcore's (`--access-logformat`).
pub const DEFAULT_ACCESS_LOG_FORMAT: &str = r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;

/// The peers trusted by default for `X-Forwarded-*` (`--forwarded-allow-ips`) and for PROXY
/// headers (`--proxy-allow-from`): gunicorn's default for both.
pub const DEFAULT_TRUSTED_PEERS: &str = "127.0.0.1,::1";
