//! What a shard counts, and where: the layout of one slot's metrics words and the shard's writer.
//!
//! Each shard owns the block of its heartbeat slot (`heartbeat::Heartbeats::metrics_words`) and is
//! its only writer, so every update is a relaxed load and store of one word: no lock, no locked
//! instruction, no syscall. Histograms are fixed arrays of per-bucket counts; readers (the
//! supervisor) make them cumulative. This module owns the word layout and nothing else: it must not
//! know about HTTP parsing, Redis or Prometheus text.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::heartbeat::METRICS_WORDS;

/// Written in word 0 by a shard that counts with this layout; the supervisor reads a block only
/// when it carries this value (a block of zeros is a shard that counts nothing). Change it whenever
/// a word below moves or changes meaning: after a binary upgrade, HUP starts new shards under the
/// old supervisor, which must then skip their blocks rather than misread them. Words appended after
/// the previous release's last one need no change: an older supervisor never reads them (and a
/// newer one reads zeros from an older shard), as with the counting API's words below.
pub const LAYOUT: u64 = 0x6869_7463_6f72_0001;

/// Response statuses hitcore can answer, each with its own counter; anything else counts as other.
pub const STATUSES: [u16; 12] = [200, 400, 404, 405, 413, 414, 417, 431, 500, 501, 503, 505];

/// Statuses only the counting API answers, counted in words appended after the first layout's
/// (see [`LAYOUT`]); `hitcore_http_requests_total` shows them with the others.
pub const API_STATUSES: [u16; 6] = [201, 204, 401, 403, 409, 429];

/// The counting API's requests by route (`hitcore_api_requests_total{route}`); the four admin
/// routes are one, and no label names a counter (that would be one series per key).
pub const API_ROUTES: [&str; 6] = ["hit", "get", "create", "info", "admin", "stream"];

/// Why a 503 was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// The Redis connection was down: nothing was sent.
    RedisDown,
    /// The command was written and the connection broke (reset or `--redis-timeout`) first.
    RedisLost,
    /// Too many requests already waited on the shard's Redis connection.
    Overloaded,
    /// The node refused the write: not a writable primary (`-READONLY`, `-LOADING`, `-MOVED`, ...)
    /// or "try again" (`-CLUSTERDOWN`, `-BUSY`, `-OOM`, ...; see `redis::errors`).
    NotPrimary,
    /// The increment ran but fewer replicas than `--wait-replicas` acknowledged it.
    NotDurable,
    /// A health check while Redis is unhealthy or the shard drains.
    Unhealthy,
}

impl Unavailable {
    /// Every reason, in word order.
    pub const ALL: [Unavailable; 6] = [
        Unavailable::RedisDown,
        Unavailable::RedisLost,
        Unavailable::Overloaded,
        Unavailable::NotPrimary,
        Unavailable::NotDurable,
        Unavailable::Unhealthy,
    ];

    /// The `reason` label value.
    pub fn label(self) -> &'static str {
        match self {
            Unavailable::RedisDown => "redis_down",
            Unavailable::RedisLost => "redis_lost",
            Unavailable::Overloaded => "overloaded",
            Unavailable::NotPrimary => "redis_not_primary",
            Unavailable::NotDurable => "not_durable",
            Unavailable::Unhealthy => "unhealthy",
        }
    }
}

/// How an HTTPS connection's start ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// The TLS handshake completed.
    Done,
    /// The TLS handshake failed (no common version, a refused client certificate, garbage).
    Failed,
    /// The client spoke plain HTTP to an HTTPS listener.
    PlainHttp,
    /// The client closed, or sent nothing, or did not finish within `--header-timeout`.
    Closed,
}

impl Handshake {
    /// Every outcome, in word order.
    pub const ALL: [Handshake; 4] = [Handshake::Done, Handshake::Failed, Handshake::PlainHttp, Handshake::Closed];

    /// The `outcome` label value.
    pub fn label(self) -> &'static str {
        match self {
            Handshake::Done => "done",
            Handshake::Failed => "failed",
            Handshake::PlainHttp => "plain_http",
            Handshake::Closed => "closed",
        }
    }
}

/// Which deadline closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// A request head did not arrive within `--header-timeout`.
    Header,
    /// An idle keep-alive connection sent nothing within `--keep-alive`.
    KeepAlive,
    /// A client did not take its answers within `--write-timeout`.
    Write,
    /// Redis did not answer within `--redis-timeout`.
    Redis,
}

impl Timeout {
    /// Every kind, in word order.
    pub const ALL: [Timeout; 4] = [Timeout::Header, Timeout::KeepAlive, Timeout::Write, Timeout::Redis];

    /// The `kind` label value.
    pub fn label(self) -> &'static str {
        match self {
            Timeout::Header => "header",
            Timeout::KeepAlive => "keep_alive",
            Timeout::Write => "write",
            Timeout::Redis => "redis",
        }
    }
}

/// Upper bounds of the increments-per-round-trip histogram (the coalescing factor).
pub const BATCH_BOUNDS: [u64; 11] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/// Upper bounds of the request latency histogram, in nanoseconds (0.1 ms .. 10 s).
pub const LATENCY_BOUNDS_NS: [u64; 16] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Word indices. Counters only grow while the shard lives; gauges are the shard's current value.
pub mod word {
    use super::{API_ROUTES, API_STATUSES, BATCH_BOUNDS, Handshake, LATENCY_BOUNDS_NS, STATUSES, Unavailable};

    /// [`super::LAYOUT`] once the shard counts here.
    pub const LAYOUT: usize = 0;
    /// The shard's index (gauge-like: written once at boot).
    pub const SHARD: usize = 1;
    /// Responses by status, [`STATUSES`] order, then one for any other status.
    pub const STATUS: usize = 2;
    /// 503s by reason, `Unavailable::ALL` order.
    pub const UNAVAILABLE: usize = STATUS + STATUSES.len() + 1;
    /// Connections closed by a deadline, `Timeout::ALL` order.
    pub const TIMEOUT: usize = UNAVAILABLE + Unavailable::ALL.len();
    /// Connections closed at the connection cap to make room.
    pub const EVICTED: usize = TIMEOUT + 4;
    /// Connections accepted.
    pub const ACCEPTED: usize = EVICTED + 1;
    /// Connections open now (gauge).
    pub const OPEN: usize = ACCEPTED + 1;
    /// PROXY protocol headers rejected.
    pub const PROXY_REJECTED: usize = OPEN + 1;
    /// Redis connection up (1) or down (0) (gauge).
    pub const REDIS_UP: usize = PROXY_REJECTED + 1;
    /// Successful Redis connections after the first.
    pub const REDIS_RECONNECTS: usize = REDIS_UP + 1;
    /// Increments sent (the batch histogram's sum).
    pub const BATCH_SUM: usize = REDIS_RECONNECTS + 1;
    /// Commands sent, by increments in them: [`BATCH_BOUNDS`] then +Inf (their total is the count).
    pub const BATCH: usize = BATCH_SUM + 1;
    /// Request latency sum, in nanoseconds.
    pub const LATENCY_SUM_NS: usize = BATCH + BATCH_BOUNDS.len() + 1;
    /// Requests by latency: [`LATENCY_BOUNDS_NS`] then +Inf (their total is the count).
    pub const LATENCY: usize = LATENCY_SUM_NS + 1;
    /// HTTPS connections by how their start ended, `Handshake::ALL` order. Appended after every
    /// older word, so a supervisor of the previous release reads the rest of the block as it
    /// always did (and ignores these), and this release reads zeros from an older shard.
    pub const HANDSHAKE: usize = LATENCY + LATENCY_BOUNDS_NS.len() + 1;
    /// Words used by the layout before the counting API; everything above is appended after it,
    /// with the same compatibility (see [`super::LAYOUT`]).
    pub const END_BEFORE_API: usize = HANDSHAKE + Handshake::ALL.len();
    /// Responses with the API's own statuses, [`API_STATUSES`] order.
    pub const API_STATUS: usize = END_BEFORE_API;
    /// API requests by route, [`API_ROUTES`] order.
    pub const API_ROUTE: usize = API_STATUS + API_STATUSES.len();
    /// API requests refused by `--rate-limit` (429).
    pub const API_RATE_LIMITED: usize = API_ROUTE + API_ROUTES.len();
    /// `/stream` (Server-Sent Events) clients connected now (gauge).
    pub const API_STREAM_CLIENTS: usize = API_RATE_LIMITED + 1;
    /// Words used.
    pub const END: usize = API_STREAM_CLIENTS + 1;

    /// The gauges: not carried over when a slot's shard is gone.
    pub const GAUGES: [usize; 4] = [SHARD, OPEN, REDIS_UP, API_STREAM_CLIENTS];
}

const _: () = assert!(word::END <= METRICS_WORDS, "the metrics layout outgrew the heartbeat region's block");

/// A shard's writer into its own block. Copy and free to pass around: the block lives as long as
/// the process (see [`Meter::attach`]).
#[derive(Debug, Clone, Copy)]
pub struct Meter {
    words: &'static [AtomicU64; METRICS_WORDS],
}

impl Meter {
    /// Counts into `words` (the shard's slot block, mapped for the life of the process), stamping
    /// the layout and the shard's index. Counts a replacement shard finds there are kept: the
    /// supervisor folds a finished shard's counts away before it reuses the slot.
    pub fn attach(words: &'static [AtomicU64; METRICS_WORDS], shard: usize) -> Meter {
        words[word::SHARD].store(shard as u64, Ordering::Relaxed);
        words[word::LAYOUT].store(LAYOUT, Ordering::Release);
        Meter { words }
    }

    /// A block of the process's own, for a shard under a supervisor whose region has none (and for
    /// tests): counts go nowhere, at the same cost.
    pub fn detached() -> Meter {
        let words: &'static [AtomicU64; METRICS_WORDS] =
            Box::leak(Box::new([const { AtomicU64::new(0) }; METRICS_WORDS]));
        Meter { words }
    }

    fn add(&self, i: usize, n: u64) {
        let w = &self.words[i];
        // One writer per block: a plain load and store, no read-modify-write instruction.
        w.store(w.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    fn set(&self, i: usize, v: u64) {
        self.words[i].store(v, Ordering::Relaxed);
    }

    /// Reads one word (tests, and the shard's own exit report).
    pub fn get(&self, i: usize) -> u64 {
        self.words[i].load(Ordering::Relaxed)
    }

    /// One response with `status`, `latency_ns` after its request was complete.
    pub fn response(&self, status: u16, latency_ns: u64) {
        match API_STATUSES.iter().position(|&s| s == status) {
            Some(i) => self.add(word::API_STATUS + i, 1),
            None => {
                let i = STATUSES.iter().position(|&s| s == status).unwrap_or(STATUSES.len());
                self.add(word::STATUS + i, 1);
            }
        }
        self.add(word::LATENCY_SUM_NS, latency_ns);
        let b = LATENCY_BOUNDS_NS.iter().position(|&le| latency_ns <= le).unwrap_or(LATENCY_BOUNDS_NS.len());
        self.add(word::LATENCY + b, 1);
    }

    /// One counting API request on route `route` ([`API_ROUTES`] index), besides its
    /// [`Meter::response`]; `rate_limited` when `--rate-limit` refused it.
    pub fn api_request(&self, route: usize, rate_limited: bool) {
        self.add(word::API_ROUTE + route.min(API_ROUTES.len() - 1), 1);
        if rate_limited {
            self.add(word::API_RATE_LIMITED, 1);
        }
    }

    /// A `/stream` client connected (`true`) or left.
    pub fn api_stream_client(&self, connected: bool) {
        let w = &self.words[word::API_STREAM_CLIENTS];
        let v = w.load(Ordering::Relaxed);
        w.store(if connected { v + 1 } else { v.saturating_sub(1) }, Ordering::Relaxed);
    }

    /// A 503 for `reason` (besides its [`Meter::response`]).
    pub fn unavailable(&self, reason: Unavailable) {
        let i = Unavailable::ALL.iter().position(|&r| r == reason).unwrap_or(0);
        self.add(word::UNAVAILABLE + i, 1);
    }

    /// An HTTPS connection's start, ended as `outcome`.
    pub fn handshake(&self, outcome: Handshake) {
        let i = Handshake::ALL.iter().position(|&k| k == outcome).unwrap_or(0);
        self.add(word::HANDSHAKE + i, 1);
    }

    /// A connection closed by `kind`'s deadline.
    pub fn timeout(&self, kind: Timeout) {
        let i = Timeout::ALL.iter().position(|&k| k == kind).unwrap_or(0);
        self.add(word::TIMEOUT + i, 1);
    }

    /// A connection closed at the cap to make room.
    pub fn evicted(&self) {
        self.add(word::EVICTED, 1);
    }

    /// A connection accepted (and now open).
    pub fn opened(&self) {
        self.add(word::ACCEPTED, 1);
        self.add(word::OPEN, 1);
    }

    /// A connection closed.
    pub fn closed(&self) {
        let w = &self.words[word::OPEN];
        w.store(w.load(Ordering::Relaxed).saturating_sub(1), Ordering::Relaxed);
    }

    /// A PROXY protocol header rejected.
    pub fn proxy_rejected(&self) {
        self.add(word::PROXY_REJECTED, 1);
    }

    /// The Redis connection went up or down.
    pub fn redis_up(&self, up: bool) {
        self.set(word::REDIS_UP, u64::from(up));
    }

    /// The Redis connection came back after being lost or never made.
    pub fn redis_reconnected(&self) {
        self.add(word::REDIS_RECONNECTS, 1);
    }

    /// One command sent to Redis carrying `increments` increments.
    pub fn round_trip(&self, increments: u64) {
        self.add(word::BATCH_SUM, increments);
        let b = BATCH_BOUNDS.iter().position(|&le| increments <= le).unwrap_or(BATCH_BOUNDS.len());
        self.add(word::BATCH + b, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_land_in_their_status_and_latency_buckets() {
        let m = Meter::detached();
        m.response(200, 50_000);
        m.response(200, 1_000_000);
        m.response(503, 20_000_000_000);
        m.response(418, 0);
        assert_eq!(m.get(word::STATUS), 2);
        assert_eq!(m.get(word::STATUS + 10), 1);
        assert_eq!(m.get(word::STATUS + STATUSES.len()), 1);
        assert_eq!(m.get(word::LATENCY), 2, "50 µs and 0 are in the first bucket");
        assert_eq!(m.get(word::LATENCY + 3), 1, "1 ms is in the le=0.001 bucket");
        assert_eq!(m.get(word::LATENCY + LATENCY_BOUNDS_NS.len()), 1, "20 s is only in +Inf");
        assert_eq!(m.get(word::LATENCY_SUM_NS), 20_001_050_000);
    }

    #[test]
    fn the_layout_before_the_api_is_unchanged_and_api_words_come_after_it() {
        // The previous release's supervisor reads these indices: they must not move.
        assert_eq!(
            (word::STATUS, word::UNAVAILABLE, word::TIMEOUT, word::REDIS_UP, word::BATCH, word::LATENCY),
            (2, 15, 21, 29, 32, 45)
        );
        // HTTPS's handshake words came first (the https branch landed before this one).
        assert_eq!((word::HANDSHAKE, word::END_BEFORE_API), (62, 62 + Handshake::ALL.len()));
        const { assert!(word::API_STATUS >= word::END_BEFORE_API) };
        let m = Meter::detached();
        m.response(429, 0);
        m.response(201, 0);
        m.api_request(0, true);
        m.api_request(4, false);
        assert_eq!(m.get(word::STATUS + STATUSES.len()), 0, "API statuses are not 'other'");
        assert_eq!((m.get(word::API_STATUS + 5), m.get(word::API_STATUS)), (1, 1));
        assert_eq!((m.get(word::API_ROUTE), m.get(word::API_ROUTE + 4), m.get(word::API_RATE_LIMITED)), (1, 1, 1));
        m.api_stream_client(true);
        m.api_stream_client(false);
        m.api_stream_client(false);
        assert_eq!(m.get(word::API_STREAM_CLIENTS), 0);
    }

    #[test]
    fn round_trips_and_gauges() {
        let m = Meter::detached();
        m.round_trip(1);
        m.round_trip(3);
        m.round_trip(5000);
        assert_eq!((m.get(word::BATCH), m.get(word::BATCH + 2)), (1, 1));
        assert_eq!(m.get(word::BATCH + BATCH_BOUNDS.len()), 1);
        assert_eq!(m.get(word::BATCH_SUM), 5004);
        m.opened();
        m.opened();
        m.closed();
        m.closed();
        m.closed();
        assert_eq!((m.get(word::ACCEPTED), m.get(word::OPEN)), (2, 0));
        m.redis_up(true);
        assert_eq!(m.get(word::REDIS_UP), 1);
    }
}
