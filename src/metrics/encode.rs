//! Prometheus text exposition (format 0.0.4) of a [`Snapshot`].
//!
//! It owns metric names, help texts, labels and the sums across shards; histograms become
//! cumulative `_bucket` series here. Names follow Prometheus practice: a `hitcore_` prefix, base
//! units (`_seconds`), `_total` on counters. docs/observability.md lists every one of them; a test
//! there keeps the list and this file in step. It must not read shared memory itself.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::collect::{Snapshot, responses};
use super::shm::{
    API_ROUTES, API_STATUSES, BATCH_BOUNDS, Handshake, LATENCY_BOUNDS_NS, STATUSES, Timeout, Unavailable, word,
};
use crate::heartbeat::METRICS_WORDS;

/// The `Content-Type` of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric family hitcore exports, for the documentation and the dashboard's test.
pub const FAMILIES: [&str; 21] = [
    "hitcore_build_info",
    "hitcore_shards",
    "hitcore_shard_restarts_total",
    "hitcore_worker_timeouts_total",
    "hitcore_http_requests_total",
    "hitcore_shard_responses_total",
    "hitcore_http_unavailable_total",
    "hitcore_http_request_duration_seconds",
    "hitcore_connections_accepted_total",
    "hitcore_connections_open",
    "hitcore_connection_timeouts_total",
    "hitcore_connection_evictions_total",
    "hitcore_proxy_protocol_rejected_total",
    "hitcore_tls_handshakes_total",
    "hitcore_redis_up",
    "hitcore_redis_reconnects_total",
    "hitcore_redis_round_trips_total",
    "hitcore_redis_batch_increments",
    "hitcore_api_requests_total",
    "hitcore_api_rate_limited_total",
    "hitcore_api_stream_clients",
];

/// Renders `snap` as Prometheus text.
pub fn encode(snap: &Snapshot) -> String {
    // Counters: every live block plus the retired totals.
    let mut total = snap.retired;
    for live in &snap.live {
        for (i, v) in live.words.iter().enumerate() {
            total[i] = total[i].wrapping_add(*v);
        }
    }
    let mut out = String::with_capacity(8192);
    let o = &mut out;

    family(o, "hitcore_build_info", "gauge", "Always 1; the labels say which build is running.");
    let _ = writeln!(o, "hitcore_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));

    family(o, "hitcore_shards", "gauge", "Shard processes booted and serving.");
    let _ = writeln!(o, "hitcore_shards {}", snap.booted);
    family(o, "hitcore_shard_restarts_total", "counter", "Shards started again after exiting unasked.");
    let _ = writeln!(o, "hitcore_shard_restarts_total {}", snap.restarts);
    family(o, "hitcore_worker_timeouts_total", "counter", "Shards killed for a stale heartbeat (WORKER TIMEOUT).");
    let _ = writeln!(o, "hitcore_worker_timeouts_total {}", snap.worker_timeouts);

    family(o, "hitcore_http_requests_total", "counter", "HTTP responses sent, by status code.");
    for (i, code) in STATUSES.iter().enumerate() {
        let _ = writeln!(o, "hitcore_http_requests_total{{code=\"{code}\"}} {}", total[word::STATUS + i]);
    }
    for (i, code) in API_STATUSES.iter().enumerate() {
        let _ = writeln!(o, "hitcore_http_requests_total{{code=\"{code}\"}} {}", total[word::API_STATUS + i]);
    }
    let _ = writeln!(o, "hitcore_http_requests_total{{code=\"other\"}} {}", total[word::STATUS + STATUSES.len()]);

    family(o, "hitcore_shard_responses_total", "counter", "HTTP responses sent, by shard index.");
    let mut by_shard: BTreeMap<u64, u64> = snap.retired_responses.clone();
    for live in &snap.live {
        *by_shard.entry(live.shard).or_default() += responses(&live.words);
    }
    for (shard, n) in &by_shard {
        let _ = writeln!(o, "hitcore_shard_responses_total{{shard=\"{shard}\"}} {n}");
    }

    family(o, "hitcore_http_unavailable_total", "counter", "503 answers, by reason.");
    for (i, r) in Unavailable::ALL.iter().enumerate() {
        let _ =
            writeln!(o, "hitcore_http_unavailable_total{{reason=\"{}\"}} {}", r.label(), total[word::UNAVAILABLE + i]);
    }

    family(
        o,
        "hitcore_http_request_duration_seconds",
        "histogram",
        "Time from a complete request to its answer being handed to the kernel.",
    );
    let bounds: Vec<String> = LATENCY_BOUNDS_NS.iter().map(|ns| seconds(*ns)).collect();
    histogram(
        o,
        "hitcore_http_request_duration_seconds",
        &bounds,
        &total,
        word::LATENCY,
        &seconds(total[word::LATENCY_SUM_NS]),
    );

    family(o, "hitcore_connections_accepted_total", "counter", "TCP connections accepted.");
    let _ = writeln!(o, "hitcore_connections_accepted_total {}", total[word::ACCEPTED]);
    family(o, "hitcore_connections_open", "gauge", "TCP connections open now.");
    let open: u64 = snap.live.iter().map(|l| l.words[word::OPEN]).sum();
    let _ = writeln!(o, "hitcore_connections_open {open}");
    family(o, "hitcore_connection_timeouts_total", "counter", "Connections closed by a deadline, by kind.");
    for (i, k) in Timeout::ALL.iter().enumerate() {
        let _ = writeln!(o, "hitcore_connection_timeouts_total{{kind=\"{}\"}} {}", k.label(), total[word::TIMEOUT + i]);
    }
    family(
        o,
        "hitcore_connection_evictions_total",
        "counter",
        "Idle or slow connections closed at --worker-connections to make room.",
    );
    let _ = writeln!(o, "hitcore_connection_evictions_total {}", total[word::EVICTED]);
    family(
        o,
        "hitcore_proxy_protocol_rejected_total",
        "counter",
        "Connections closed for a bad or missing PROXY header.",
    );
    let _ = writeln!(o, "hitcore_proxy_protocol_rejected_total {}", total[word::PROXY_REJECTED]);
    family(
        o,
        "hitcore_tls_handshakes_total",
        "counter",
        "HTTPS connections by how their start ended: done, failed, plain_http, closed.",
    );
    for (i, k) in Handshake::ALL.iter().enumerate() {
        let _ = writeln!(o, "hitcore_tls_handshakes_total{{outcome=\"{}\"}} {}", k.label(), total[word::HANDSHAKE + i]);
    }

    family(o, "hitcore_redis_up", "gauge", "1 while the shard's Redis connection is up, by shard index.");
    let mut up: BTreeMap<u64, u64> = BTreeMap::new();
    for live in &snap.live {
        // During a reload two processes can carry one index: the shard is up if either is.
        let v = up.entry(live.shard).or_default();
        *v = (*v).max(live.words[word::REDIS_UP]);
    }
    for (shard, v) in &up {
        let _ = writeln!(o, "hitcore_redis_up{{shard=\"{shard}\"}} {v}");
    }
    family(o, "hitcore_redis_reconnects_total", "counter", "Redis connections made again after one was lost.");
    let _ = writeln!(o, "hitcore_redis_reconnects_total {}", total[word::REDIS_RECONNECTS]);
    family(o, "hitcore_redis_round_trips_total", "counter", "Commands sent to Redis (one INCRBY per batch).");
    let trips: u64 = total[word::BATCH..word::BATCH + BATCH_BOUNDS.len() + 1].iter().sum();
    let _ = writeln!(o, "hitcore_redis_round_trips_total {trips}");
    family(
        o,
        "hitcore_redis_batch_increments",
        "histogram",
        "Increments carried by each Redis command: the coalescing factor.",
    );
    let bounds: Vec<String> = BATCH_BOUNDS.iter().map(u64::to_string).collect();
    histogram(o, "hitcore_redis_batch_increments", &bounds, &total, word::BATCH, &total[word::BATCH_SUM].to_string());

    family(
        o,
        "hitcore_api_requests_total",
        "counter",
        "Counting API requests, by route (admin: set, reset, update, delete).",
    );
    for (i, route) in API_ROUTES.iter().enumerate() {
        let _ = writeln!(o, "hitcore_api_requests_total{{route=\"{route}\"}} {}", total[word::API_ROUTE + i]);
    }
    family(o, "hitcore_api_rate_limited_total", "counter", "Counting API requests refused by --rate-limit (429).");
    let _ = writeln!(o, "hitcore_api_rate_limited_total {}", total[word::API_RATE_LIMITED]);
    family(o, "hitcore_api_stream_clients", "gauge", "Server-Sent Events clients connected to /stream now.");
    let streams: u64 = snap.live.iter().map(|l| l.words[word::API_STREAM_CLIENTS]).sum();
    let _ = writeln!(o, "hitcore_api_stream_clients {streams}");
    out
}

fn family(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Writes cumulative `_bucket`s from per-bucket counts at `words[first..]` (bounds, then +Inf).
fn histogram(o: &mut String, name: &str, bounds: &[String], words: &[u64; METRICS_WORDS], first: usize, sum: &str) {
    let mut cumulative = 0u64;
    for (i, le) in bounds.iter().enumerate() {
        cumulative += words[first + i];
        let _ = writeln!(o, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    cumulative += words[first + bounds.len()];
    let _ = writeln!(o, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(o, "{name}_sum {sum}");
    let _ = writeln!(o, "{name}_count {cumulative}");
}

/// Nanoseconds as decimal seconds, exactly (no float rounding: `0.00025`, `2.5`, `10`).
fn seconds(ns: u64) -> String {
    let (whole, frac) = (ns / 1_000_000_000, ns % 1_000_000_000);
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:09}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::collect::Live;

    fn snap() -> Snapshot {
        let mut words = [0u64; METRICS_WORDS];
        words[word::STATUS] = 5;
        words[word::LATENCY] = 3;
        words[word::LATENCY + 4] = 2;
        words[word::LATENCY_SUM_NS] = 1_500_000;
        words[word::BATCH + 2] = 2;
        words[word::BATCH_SUM] = 7;
        words[word::REDIS_UP] = 1;
        let mut retired = [0u64; METRICS_WORDS];
        retired[word::STATUS] = 1;
        Snapshot {
            live: vec![Live { shard: 1, booted: true, words }],
            booted: 1,
            retired,
            retired_responses: BTreeMap::from([(0, 1)]),
            restarts: 1,
            worker_timeouts: 0,
        }
    }

    #[test]
    fn sums_live_and_retired_and_makes_buckets_cumulative() {
        let text = encode(&snap());
        for line in [
            "hitcore_http_requests_total{code=\"200\"} 6",
            "hitcore_shard_responses_total{shard=\"0\"} 1",
            "hitcore_shard_responses_total{shard=\"1\"} 5",
            "hitcore_http_request_duration_seconds_bucket{le=\"0.0001\"} 3",
            "hitcore_http_request_duration_seconds_bucket{le=\"0.001\"} 3",
            "hitcore_http_request_duration_seconds_bucket{le=\"0.0025\"} 5",
            "hitcore_http_request_duration_seconds_bucket{le=\"+Inf\"} 5",
            "hitcore_http_request_duration_seconds_sum 0.0015",
            "hitcore_http_request_duration_seconds_count 5",
            "hitcore_redis_batch_increments_bucket{le=\"4\"} 2",
            "hitcore_redis_batch_increments_sum 7",
            "hitcore_redis_round_trips_total 2",
            "hitcore_redis_up{shard=\"1\"} 1",
            "hitcore_shards 1",
            "hitcore_shard_restarts_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn every_family_is_declared_once() {
        let text = encode(&snap());
        for name in FAMILIES {
            assert_eq!(text.matches(&format!("# TYPE {name} ")).count(), 1, "{name}");
        }
        assert_eq!(text.matches("# TYPE ").count(), FAMILIES.len());
    }

    #[test]
    fn seconds_are_exact() {
        assert_eq!(seconds(250_000), "0.00025");
        assert_eq!(seconds(2_500_000_000), "2.5");
        assert_eq!(seconds(10_000_000_000), "10");
        assert_eq!(seconds(0), "0");
    }
}
