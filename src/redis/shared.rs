//! What a shard's Redis connection is configured with ([`Settings`]) and the state its parts
//! share ([`Shared`]): the HTTP side's handle (`client::Redis`), the connection task (`client`)
//! and the session (`session`) all hold one `Rc<Shared>`.
//!
//! Plain state and its constructor; the behaviour is in `client` and `session`, which import this
//! and not each other's internals.

use std::cell::{Cell, RefCell};
use std::task::Waker;
use std::time::{Duration, Instant};

use super::follow::Follow;
use super::queue::{Batching, Queue};
use crate::config::Config;
use crate::config::redis_url::RedisTarget;
use crate::config::redis_url::TlsFiles;
use crate::metrics::shm::Meter;

/// What a shard's Redis connection needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where Redis is and how to log in.
    pub target: RedisTarget,
    /// `--redis-tls-*`, for `rediss://`.
    pub tls: TlsFiles,
    /// The counter key (`--key`).
    pub key: String,
    /// One `INCRBY key k` per batch (true) or one `INCR` per request (`--no-coalesce`).
    pub coalesce: bool,
    /// `WAIT replicas timeout_ms` after each batch (`--wait-replicas`, `--wait-timeout`), if any.
    pub wait: Option<(u32, u64)>,
    /// A command unanswered for this long breaks the connection (`--redis-timeout`).
    pub timeout: Duration,
    /// Requests queued or in flight at most; more get [`Failure::Overloaded`] at once.
    pub max_pending: u64,
    /// The shard index, for `CLIENT SETNAME hitcore-shard-N` (visible in `CLIENT LIST`).
    pub shard: usize,
}

impl Settings {
    /// The Redis settings of shard `shard` under `config`, with at most `max_pending` requests
    /// waiting (the shard knows how many its connections may have in flight).
    pub fn from_config(config: &Config, shard: usize, max_pending: u64) -> Settings {
        Settings {
            target: config.redis.clone(),
            tls: config.redis_tls.clone(),
            key: config.key.clone(),
            coalesce: config.coalesce,
            wait: (config.wait_replicas > 0)
                .then(|| (config.wait_replicas, config.wait_timeout.as_millis().max(1) as u64)),
            timeout: config.redis_timeout,
            max_pending,
            shard,
        }
    }
}

/// Shared between the HTTP side, the connection task and its session.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) settings: Settings,
    pub(super) batching: Batching,
    pub(super) up: Cell<bool>,
    pub(super) queue: RefCell<Queue>,
    /// The writer, parked until something is waiting.
    pub(super) writer: RefCell<Option<Waker>>,
    /// Error replies since the last log line about them, so a bad key logs once a second, not per request.
    pub(super) error_log: RateLimited,
    /// WAIT shortfalls, likewise.
    pub(super) wait_log: RateLimited,
    /// "Try again" replies (`-CLUSTERDOWN`, `-BUSY`, ...), likewise.
    pub(super) try_again_log: RateLimited,
    /// Set once the first connection attempt has ended, either way.
    pub(super) attempted: Cell<bool>,
    /// The shard waiting for that, before it starts accepting.
    pub(super) attempt_waiter: RefCell<Option<Waker>>,
    /// Whether the last INCR reply was a value (an error reply, e.g. a key that holds no integer,
    /// makes the shard unhealthy until a value comes back); set again by each new connection.
    pub(super) last_ok: Cell<bool>,
    /// Where the connection counts its round trips, state and reconnects (the shard's metrics slot).
    pub(super) meter: Cell<Meter>,
    /// What the topology makes the session follow: failovers (Sentinel), `-MOVED`/`-ASK` (Cluster).
    pub(super) follow: Follow,
}

impl Shared {
    /// The state of a connection that has not tried to connect yet.
    pub(super) fn new(settings: Settings, batching: Batching, follow: Follow) -> Shared {
        Shared {
            follow,
            settings,
            batching,
            up: Cell::new(false),
            queue: RefCell::default(),
            writer: RefCell::new(None),
            error_log: RateLimited::default(),
            wait_log: RateLimited::default(),
            try_again_log: RateLimited::default(),
            attempted: Cell::new(false),
            attempt_waiter: RefCell::new(None),
            last_ok: Cell::new(true),
            meter: Cell::new(Meter::detached()),
        }
    }
}

/// Logs one kind of event at most once a second, with a count of those not logged.
#[derive(Debug, Default)]
pub struct RateLimited {
    last: Cell<Option<Instant>>,
    suppressed: Cell<u64>,
}

impl RateLimited {
    /// Calls `log` with the number suppressed since the last call that logged, unless one logged
    /// less than a second ago.
    pub fn record(&self, log: impl FnOnce(u64)) {
        let now = Instant::now();
        if self.last.get().is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            self.suppressed.set(self.suppressed.get() + 1);
            return;
        }
        log(self.suppressed.replace(0));
        self.last.set(Some(now));
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;
    use crate::config::redis_url::Endpoint;

    fn config(args: &[&str]) -> Config {
        Cli::try_parse_from([&["hitcore", "-w", "1"], args].concat()).unwrap().into_config().unwrap()
    }

    #[test]
    fn a_hand_off_from_the_previous_release_decodes_with_no_tls_and_no_wait() {
        let mut json = serde_json::to_value(config(&["--redis", "redis://localhost:7000/2"])).unwrap();
        let fields = json.as_object_mut().unwrap();
        for new in ["redis_tls", "wait_replicas", "wait_timeout"] {
            assert!(fields.remove(new).is_some(), "{new}");
        }
        // The previous release resolved the host in the supervisor.
        fields["redis"]["endpoint"] = serde_json::json!({"Tcp": {"host": "localhost", "addr": "127.0.0.1:7000"}});
        let old: Config = serde_json::from_value(json).unwrap();
        let s = Settings::from_config(&old, 3, 128);
        assert_eq!(s.target.endpoint, Endpoint::Tcp { host: "localhost".into(), port: 7000, tls: false });
        assert_eq!((s.wait, s.tls, s.shard, s.target.db), (None, TlsFiles::default(), 3, 2));
    }

    #[test]
    fn settings_carry_the_wait_and_the_tls_files() {
        let s = Settings::from_config(&config(&["--wait-replicas", "2", "--wait-timeout", "30"]), 0, 128);
        assert_eq!(s.wait, Some((2, 30)));
        let s = Settings::from_config(&config(&["--redis", "rediss://h/0", "--redis-tls-insecure"]), 0, 128);
        assert!(s.target.tls() && s.tls.insecure);
        assert_eq!(Settings::from_config(&config(&[]), 0, 128).wait, None);
    }
}
