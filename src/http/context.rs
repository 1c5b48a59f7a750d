//! What a connection is handed: the shard-owned pieces the request path uses, and nothing else.
//!
//! The shard builds one [`Context`] and every connection task gets an `Rc` of it, the way hyper's
//! protocol code is given a service and mini-redis's `Handler` gets only what it uses: the HTTP
//! settings, the Redis handle, the cached `Date`, the access log, the connection registry, the
//! shard's counters and metrics slot, the health path and PROXY setting, its draining flag, the
//! counting API's settings, and the two shared buffers. It must not name the shard, its listener, its signals or the supervisor: the
//! connection code stays testable on its own and the shard can change how it accepts without
//! touching it.

use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::access::AccessLog;
use super::conn::registry::Registry;
use super::forwarded::Trust;
use super::parse::Limits;
use super::response::HttpDate;
use crate::metrics::shm::Meter;
use crate::redis::client::Redis;

/// Bytes read per `recv` into the shared scratch buffer.
const SCRATCH: usize = 64 * 1024;

/// The HTTP settings a connection follows (from the shard's configuration).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Request head limits (`--limit-request-*`).
    pub limits: Limits,
    /// How long an idle keep-alive connection waits for its next request; zero disables keep-alive.
    pub keep_alive: Duration,
    /// How long a request head may take to arrive.
    pub header_timeout: Duration,
    /// How long a batch of answers may wait for a client that does not read them.
    pub write_timeout: Duration,
}

/// Counters the shard reports; one writer (this shard's thread), no atomics needed.
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests answered.
    pub requests: Cell<u64>,
    /// Connections accepted.
    pub connections: Cell<u64>,
}

impl Counters {
    /// Adds one to a counter.
    pub fn bump(counter: &Cell<u64>) {
        counter.set(counter.get() + 1);
    }
}

/// What connections report and answer about the shard itself: metrics, health, the PROXY header.
#[derive(Debug)]
pub struct Observing {
    /// The shard's metrics slot.
    pub meter: Meter,
    /// `--health-path`.
    pub health_path: Box<str>,
    /// `--proxy-protocol`: every connection starts with a PROXY header, accepted from the peers
    /// this names; `None` without the flag.
    pub proxy_protocol: Option<ProxyPolicy>,
}

impl Default for Observing {
    fn default() -> Self {
        Observing {
            meter: Meter::detached(),
            health_path: crate::config::defaults::DEFAULT_HEALTH_PATH.into(),
            proxy_protocol: None,
        }
    }
}

/// `--proxy-allow-from`: the peers whose PROXY header is believed. A connection from any other peer
/// is closed before its header is read, so the address it claims is never used or logged.
#[derive(Debug)]
pub struct ProxyPolicy {
    allow: Trust,
    /// When a refusal was last logged, and how many since were not: one line a second at most, so
    /// a flood of such connections cannot flood the error log.
    last_logged: Cell<Option<Instant>>,
    unlogged: Cell<u64>,
}

impl ProxyPolicy {
    /// A policy trusting `allow` (`--proxy-allow-from`, parsed).
    pub fn new(allow: Trust) -> ProxyPolicy {
        ProxyPolicy { allow, last_logged: Cell::new(None), unlogged: Cell::new(0) }
    }

    /// Whether a PROXY header from `peer` may be read (`None`: a unix socket, whose peers the
    /// socket file's permissions already chose). A refusal is logged with the peer, at most once a
    /// second.
    pub fn admits(&self, peer: Option<IpAddr>) -> bool {
        let Some(ip) = peer else { return true };
        if self.allow.trusts(ip) {
            return true;
        }
        let now = Instant::now();
        if self.last_logged.get().is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            self.unlogged.set(self.unlogged.get() + 1);
        } else {
            let more = match self.unlogged.replace(0) {
                0 => String::new(),
                n => format!("; {n} more since the last such line"),
            };
            tracing::warn!(
                "closing a connection from {}: its peer is not in --proxy-allow-from, so its PROXY header is \
                 not read{more}",
                ip.to_canonical()
            );
            self.last_logged.set(Some(now));
        }
        false
    }
}

/// Everything a connection needs from its shard.
#[derive(Debug)]
pub struct Context {
    /// The HTTP settings.
    pub settings: Settings,
    /// The shard's Redis connection.
    pub redis: Redis,
    /// The cached `Date` header, refreshed by the shard's tick.
    pub date: HttpDate,
    /// The access log, when `--access-logfile` is given.
    pub access: Option<AccessLog>,
    /// Live connections, for a graceful stop and the connection cap.
    pub registry: Registry,
    /// What the shard reports.
    pub counters: Counters,
    /// Metrics, health check and PROXY protocol settings.
    pub observing: Observing,
    /// Set on a graceful stop: answers carry `Connection: close` and idle connections close.
    pub draining: Cell<bool>,
    /// The counting API's settings (`crate::api`).
    pub api: crate::api::Api,
    /// Every read lands here first; a connection keeps only what it cannot consume at once.
    pub(super) scratch: RefCell<Vec<u8>>,
    /// Responses are built here and written from here when the socket takes them at once.
    pub(super) output: RefCell<Vec<u8>>,
    /// Builds with the `test-hooks` feature only (cargo enables it for the tests): the n-th connection's task panics (`HITCORE_TEST_PANIC_CONNECTION=n`), so a
    /// test can show that a panicking connection harms no other.
    #[cfg(feature = "test-hooks")]
    pub(super) panic_at: Option<u64>,
}

impl Context {
    /// The same context serving the counting API with `api`'s settings.
    pub fn with_api(mut self, api: crate::api::Api) -> Context {
        self.api = api;
        self
    }

    /// A context for a shard's connections. Runs on the shard's executor.
    pub fn new(settings: Settings, redis: Redis, access: Option<AccessLog>, observing: Observing) -> Context {
        redis.set_meter(observing.meter);
        // Test builds only: the shard reads as where the kernel refuses multishot receives (before
        // 6.0, or a failed buffer-ring registration), so a test covers that fallback here.
        #[cfg(feature = "test-hooks")]
        if std::env::var_os("HITCORE_TEST_NO_MULTISHOT").is_some() {
            glommio::net::refuse_multishot_recv();
        }
        Context {
            settings,
            redis,
            date: HttpDate::default(),
            access,
            registry: Registry::default(),
            counters: Counters::default(),
            observing,
            draining: Cell::new(false),
            api: crate::api::Api::default(),
            scratch: RefCell::new(vec![0; SCRATCH]),
            output: RefCell::new(Vec::with_capacity(SCRATCH)),
            #[cfg(feature = "test-hooks")]
            panic_at: std::env::var("HITCORE_TEST_PANIC_CONNECTION").ok().and_then(|v| v.parse().ok()),
        }
    }
}
