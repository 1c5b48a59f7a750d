//! Observability against the real binary and a real redis-server: `/metrics` parsed by a real
//! Prometheus parser (`promtool check metrics`) and checked against the requests sent; the health
//! check and `HEAD /` with Redis up, down and back, and while draining; every access-log atom;
//! trusted and untrusted `X-Forwarded-For`; PROXY protocol v1 and v2 headers, good and bad.

use crate::common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

/// The address the supervisor serves metrics at, from its log line.
fn metrics_addr(server: &TestServer) -> SocketAddr {
    let line = server.log.wait_for("Serving metrics at: http://", DEADLINE);
    line.split("http://").nth(1).unwrap().trim_end_matches("/metrics").parse().unwrap()
}

/// One scrape: the text, validated by promtool (a real Prometheus parser), and its samples by
/// `name{labels}` as written.
fn scrape(addr: SocketAddr) -> (String, BTreeMap<String, f64>) {
    let r = get_once(addr, "GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    let text = r.text();
    promtool_check(&text);
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            (name.to_string(), value.parse::<f64>().unwrap())
        })
        .collect();
    (text, samples)
}

/// `promtool check metrics` parses the exposition and lints it; any complaint fails the test.
/// promtool is the one on PATH, or the one scripts/test extracted from Debian's prometheus package
/// into target/tools/bin without installing the package (which would start a Prometheus server
/// and node_exporter).
fn promtool_check(text: &str) {
    let extracted = concat!(env!("CARGO_MANIFEST_DIR"), "/target/tools/bin/promtool");
    let exe = if std::path::Path::new(extracted).exists() { extracted } else { "promtool" };
    let mut child = Command::new(exe)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is missing: scripts/test extracts it into target/tools/bin (scripts/prereqs.sh)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sample(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    *samples.get(key).unwrap_or_else(|| panic!("no sample {key} in {samples:#?}"))
}

fn scratch(tag: &str) -> PathBuf {
    let dir = temp_path(&format!("hitcore-obs-{tag}"), "");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits until the access log file holds `n` lines (it is flushed by the shard's tick).
fn access_lines(path: &Path, n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    wait_until("access log lines", DEADLINE, || {
        lines = std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect();
        lines.len() >= n
    });
    lines
}

#[test]
fn metrics_count_the_requests_sent_and_stay_monotonic_across_a_restart() {
    let redis = TestRedis::start();
    let mut server = TestServer::start(&["-w", "2", "--redis", &redis.url(0), "--metrics-bind", "127.0.0.1:0"]);
    server.wait_ready(2);
    let metrics = metrics_addr(&server);
    // A shard logs its Redis connection a moment before it marks itself booted.
    wait_until("both shards to be booted", DEADLINE, || sample(&scrape(metrics).1, "hitcore_shards") == 2.0);
    let (text, _) = scrape(metrics);
    assert!(text.contains("hitcore_build_info{version=\"0.1.0\"} 1"), "{text}");

    // 20 GETs on their own connections, 4 pipelined on one, 3 for a path that does not exist.
    for _ in 0..20 {
        assert_eq!(get_once(server.addr, GET).status, 200);
    }
    let mut c = Client::connect(server.addr);
    c.send(GET.repeat(4).as_bytes());
    for _ in 0..4 {
        assert_eq!(c.read_response(false).status, 200);
    }
    drop(c);
    for _ in 0..3 {
        assert_eq!(get_once(server.addr, "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n").status, 404);
    }
    let (_, s) = scrape(metrics);
    assert_eq!(sample(&s, "hitcore_http_requests_total{code=\"200\"}"), 24.0);
    assert_eq!(sample(&s, "hitcore_http_requests_total{code=\"404\"}"), 3.0);
    assert_eq!(sample(&s, "hitcore_http_requests_total{code=\"503\"}"), 0.0);
    let by_shard = sample(&s, "hitcore_shard_responses_total{shard=\"0\"}")
        + sample(&s, "hitcore_shard_responses_total{shard=\"1\"}");
    assert_eq!(by_shard, 27.0);
    assert_eq!(sample(&s, "hitcore_http_request_duration_seconds_count"), 27.0);
    assert_eq!(sample(&s, "hitcore_http_request_duration_seconds_bucket{le=\"+Inf\"}"), 27.0);
    assert_eq!(sample(&s, "hitcore_connections_accepted_total"), 24.0);
    // Every GET was one increment; the 4 pipelined ones may share a round trip.
    assert_eq!(sample(&s, "hitcore_redis_batch_increments_sum"), 24.0);
    let trips = sample(&s, "hitcore_redis_round_trips_total");
    assert!((21.0..=24.0).contains(&trips), "{trips} round trips");
    assert_eq!(sample(&s, "hitcore_redis_batch_increments_count"), trips);
    assert_eq!(sample(&s, "hitcore_redis_up{shard=\"0\"}"), 1.0);
    assert_eq!(sample(&s, "hitcore_redis_up{shard=\"1\"}"), 1.0);
    assert_eq!(redis.cmd(0, &["GET", "hit"]), "24");

    // A shard killed outright: its slot's counts move to the totals, the replacement counts on.
    let victim = server.shard_pids()[0];
    // SAFETY: a shard of the server this test started.
    unsafe { libc::kill(victim, libc::SIGKILL) };
    server.log.wait_for_count("Booting worker with pid", 3, DEADLINE);
    server.wait_ready(3);
    let (_, s) = scrape(metrics);
    assert_eq!(sample(&s, "hitcore_shard_restarts_total"), 1.0);
    assert_eq!(sample(&s, "hitcore_http_requests_total{code=\"200\"}"), 24.0, "not reset by the restart");
    let by_shard = sample(&s, "hitcore_shard_responses_total{shard=\"0\"}")
        + sample(&s, "hitcore_shard_responses_total{shard=\"1\"}");
    assert_eq!(by_shard, 27.0);
    assert_eq!(get_once(server.addr, GET).status, 200);
    let (_, s) = scrape(metrics);
    assert_eq!(sample(&s, "hitcore_http_requests_total{code=\"200\"}"), 25.0);
    server.stop();
}

#[test]
fn the_metrics_endpoint_refuses_what_it_does_not_serve_and_keeps_serving() {
    let redis = TestRedis::start();
    let server = TestServer::start(&["-w", "1", "--redis", &redis.url(0), "--metrics-bind", "127.0.0.1:0"]);
    let metrics = metrics_addr(&server);
    assert_eq!(get_once(metrics, "GET /other HTTP/1.1\r\nHost: m\r\n\r\n").status, 404);
    assert_eq!(get_once(metrics, "POST /metrics HTTP/1.1\r\nHost: m\r\nContent-Length: 0\r\n\r\n").status, 405);
    assert_eq!(get_once(metrics, "garbage\r\n\r\n").status, 400);
    let mut huge = Client::connect(metrics);
    huge.send(format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000)).as_bytes());
    assert_eq!(huge.read_response(false).status, 431);
    // A client that connects and says nothing does not stop the next scrape for long.
    let _silent = TcpStream::connect(metrics).unwrap();
    drop(_silent);
    let head = get_once(metrics, "HEAD /metrics HTTP/1.1\r\nHost: m\r\n\r\n");
    assert_eq!(head.status, 200);
    scrape(metrics);
}

/// Whether the server has closed `stream` (or answered on it): a read that does not block.
fn closed_by_server(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let closed = !matches!((&*stream).read(&mut [0u8; 64]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    stream.set_nonblocking(false).unwrap();
    closed
}

#[test]
fn a_slow_client_neither_delays_a_scrape_nor_outlives_its_deadline() {
    let redis = TestRedis::start();
    let server = TestServer::start(&["-w", "1", "--redis", &redis.url(0), "--metrics-bind", "127.0.0.1:0"]);
    let metrics = metrics_addr(&server);
    // A client that sends its request one byte at a time, a second apart.
    let mut slow = TcpStream::connect(metrics).unwrap();
    slow.write_all(b"G").unwrap();
    // The scrape is answered while the slow client is still connected and still unanswered: it was
    // served beside it, not after it.
    assert_eq!(get_once(metrics, "GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n").status, 200);
    assert!(!closed_by_server(&slow), "the scrape waited for the slow client to be dropped");
    // Trickling does not keep it alive: the request's deadline is for the whole request (5 s), not
    // for each read, so the server closes it while it is still sending.
    let opened = std::time::Instant::now();
    let closed = loop {
        if closed_by_server(&slow) {
            break true;
        }
        if opened.elapsed() > DEADLINE {
            break false;
        }
        // A write after the server closed may fail; that is the close being seen.
        if slow.write_all(b"E").is_err() {
            break true;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    };
    assert!(closed, "a client sending a byte a second was still connected after {DEADLINE:?}");
    assert_eq!(get_once(metrics, "GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n").status, 200);
}

#[test]
fn beyond_32_connections_the_metrics_endpoint_answers_503_at_once() {
    let redis = TestRedis::start();
    let server = TestServer::start(&["-w", "1", "--redis", &redis.url(0), "--metrics-bind", "127.0.0.1:0"]);
    let metrics = metrics_addr(&server);
    // 32 clients that say nothing hold every place; each is served (waited for) on its own thread.
    let silent: Vec<TcpStream> = (0..32).map(|_| TcpStream::connect(metrics).unwrap()).collect();
    // The accept loop takes them in order: once the last one holds a place, the next is refused.
    wait_until("the 33rd connection refused", DEADLINE, || {
        get_once(metrics, "GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n").status == 503
    });
    let refused = get_once(metrics, "GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n");
    assert_eq!((refused.status, refused.header("retry-after")), (503, Some("1")));
    assert!(silent.iter().all(|s| !closed_by_server(s)), "the 32 are still being served");
    drop(silent);
    wait_until("a place free again", DEADLINE, || {
        get_once(metrics, "GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n").status == 200
    });
}

#[test]
fn health_and_head_follow_redis_down_and_back_without_counting() {
    let mut redis = TestRedis::start();
    let server = TestServer::start(&[
        "-w",
        "1",
        "--redis",
        &redis.url(0),
        "--metrics-bind",
        "127.0.0.1:0",
        "--health-path",
        "/ready",
    ]);
    server.wait_ready(1);
    let metrics = metrics_addr(&server);
    assert_eq!(get_once(server.addr, GET).value(), 1);

    let health = get_once(server.addr, "GET /ready HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((health.status, health.text().as_str()), (200, "OK\n"));
    assert_eq!(health.header("cache-control"), Some("no-store"));
    assert_eq!(get_once(server.addr, "HEAD /ready HTTP/1.1\r\nHost: t\r\n\r\n").status, 200);
    assert_eq!(get_once(server.addr, "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n").status, 200);
    assert_eq!(
        get_once(server.addr, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").status,
        404,
        "the path is --health-path"
    );
    assert_eq!(redis.cmd(0, &["GET", "hit"]), "1", "probes never count");

    redis.kill();
    wait_until("the health check to fail", DEADLINE, || {
        get_once(server.addr, "GET /ready HTTP/1.1\r\nHost: t\r\n\r\n").status == 503
    });
    let down = get_once(server.addr, "GET /ready HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(down.text(), "Redis connection down\n");
    assert_eq!(down.header("retry-after"), Some("1"));
    let head = get_once(server.addr, "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(head.status, 503, "HEAD / answers what GET / would");
    assert_eq!(get_once(server.addr, GET).status, 503);
    let (_, s) = scrape(metrics);
    assert_eq!(sample(&s, "hitcore_redis_up{shard=\"0\"}"), 0.0);
    assert!(sample(&s, "hitcore_http_unavailable_total{reason=\"unhealthy\"}") >= 2.0);
    assert!(sample(&s, "hitcore_http_unavailable_total{reason=\"redis_down\"}") >= 2.0);

    redis.restart();
    server.log.wait_for("Reconnected to Redis", DEADLINE);
    let health = get_once(server.addr, "GET /ready HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(health.status, 200, "{health:?}");
    assert_eq!(get_once(server.addr, "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n").status, 200);
    let (_, s) = scrape(metrics);
    assert_eq!(sample(&s, "hitcore_redis_up{shard=\"0\"}"), 1.0);
    assert_eq!(sample(&s, "hitcore_redis_reconnects_total"), 1.0);
}

#[test]
fn the_health_check_answers_503_while_the_shard_drains() {
    let redis = TestRedis::start();
    let mut server = TestServer::start(&[
        "-w",
        "1",
        "--redis",
        &redis.url(0),
        "--header-timeout",
        "30",
        "--graceful-timeout",
        "30",
        "--metrics-bind",
        "127.0.0.1:0",
    ]);
    server.wait_ready(1);
    let metrics = metrics_addr(&server);
    // A probe whose head is half sent when the stop begins: the shard finishes it while draining.
    // The stop waits until the shard holds the connection (else it would be one of those still
    // queued, which the shard also serves, but the log line below would not count it).
    let mut probe = Client::connect(server.addr);
    probe.send(b"GET /healthz HTTP/1.1\r\n");
    wait_until("the shard to hold the probe's connection", DEADLINE, || {
        sample(&scrape(metrics).1, "hitcore_connections_open") == 1.0
    });
    server.signal(libc::SIGTERM);
    server.log.wait_for("stopping: finishing 1 open connections", DEADLINE);
    probe.send(b"Host: lb\r\n\r\n");
    let r = probe.read_response(false);
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.text(), "draining: this shard is stopping\n");
    assert_eq!(r.header("connection"), Some("close"));
    probe.assert_closed();
    assert!(server.wait_exit(DEADLINE).success());
}

const ALL_ATOMS: &str = "%(h)s|%(l)s|%(u)s|%(t)s|%(r)s|%(m)s|%(U)s|%(q)s|%(H)s|%(s)s|%(B)s|%(b)s|%(f)s|%(a)s|\
                         %(T)s|%(M)s|%(D)s|%(L)s|%(p)s|%({x-request-id}i)s|%({content-type}o)s|%({missing}i)s|%(nope)s";

#[test]
fn every_access_log_atom() {
    let redis = TestRedis::start();
    let dir = scratch("atoms");
    let log = dir.join("access.log");
    let server = TestServer::start(&[
        "-w",
        "1",
        "--redis",
        &redis.url(0),
        "--access-logfile",
        log.to_str().unwrap(),
        "--access-logformat",
        ALL_ATOMS,
    ]);
    server.wait_ready(1);
    let shard = server.shard_pids()[0];
    // "alice:secret", a referer, an agent, a header of our own, a query and an escaped path.
    let r = get_once(
        server.addr,
        "GET /?a=1&b=%20 HTTP/1.1\r\nHost: t\r\nAuthorization: Basic YWxpY2U6c2VjcmV0\r\nReferer: http://r/\r\n\
         User-Agent: probe/1.0\r\nX-Request-Id: req-42\r\n\r\n",
    );
    assert_eq!(r.value(), 1);
    assert_eq!(get_once(server.addr, "HEAD /x%41y HTTP/1.0\r\n\r\n").status, 404);
    let lines = access_lines(&log, 2);
    let get: Vec<&str> = lines[0].split('|').collect();
    assert_eq!(get.len(), 23, "{}", lines[0]);
    assert_eq!(&get[..3], ["127.0.0.1", "-", "alice"]);
    assert!(get[3].starts_with('[') && get[3].ends_with(']') && get[3].len() == 28, "t: {}", get[3]);
    assert_eq!(
        &get[4..14],
        ["GET /?a=1&b=%20 HTTP/1.1", "GET", "/", "a=1&b=%20", "HTTP/1.1", "200", "1", "1", "http://r/", "probe/1.0"]
    );
    let micros: u64 = get[16].parse().unwrap();
    assert_eq!(get[14], (micros / 1_000_000).to_string(), "T");
    assert_eq!(get[15], (micros / 1000).to_string(), "M");
    assert_eq!(get[17], format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000), "L");
    assert_eq!(get[18], format!("<{shard}>"));
    assert_eq!(&get[19..], ["req-42", "text/plain; charset=utf-8", "-", "-"]);
    let head: Vec<&str> = lines[1].split('|').collect();
    assert_eq!(&head[2..3], ["-"]);
    assert_eq!(&head[4..14], ["HEAD /x%41y HTTP/1.0", "HEAD", "/xAy", "", "HTTP/1.0", "404", "0", "-", "-", "-"]);
    assert_eq!(&head[19..], ["-", "text/plain; charset=utf-8", "-", "-"]);
}

#[test]
fn the_default_access_line_is_gunicorns() {
    let redis = TestRedis::start();
    let dir = scratch("default");
    let log = dir.join("access.log");
    let server = TestServer::start(&["-w", "1", "--redis", &redis.url(0), "--access-logfile", log.to_str().unwrap()]);
    server.wait_ready(1);
    get_once(server.addr, "GET / HTTP/1.1\r\nHost: t\r\nUser-Agent: ab/2.3\r\n\r\n");
    let line = &access_lines(&log, 1)[0];
    let (before, after) = line.split_once(" [").unwrap();
    assert_eq!(before, "127.0.0.1 - -");
    let (_time, rest) = after.split_once("] ").unwrap();
    assert_eq!(rest, "\"GET / HTTP/1.1\" 200 1 \"-\" \"ab/2.3\"");
}

#[test]
fn x_forwarded_for_counts_only_from_trusted_proxies() {
    let redis = TestRedis::start();
    let dir = scratch("xff");
    let request = "GET / HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 198.51.100.1, 203.0.113.9\r\n\r\n";
    for (i, (allow, want)) in [
        (None, "203.0.113.9"),
        (Some("127.0.0.1,203.0.113.0/24"), "198.51.100.1"),
        (Some("*"), "198.51.100.1"),
        (Some("10.0.0.1"), "127.0.0.1"),
    ]
    .into_iter()
    .enumerate()
    {
        let log = dir.join(format!("access-{i}.log"));
        let mut args = vec!["-w".to_string(), "1".into(), "--redis".into(), redis.url(0), "--access-logfile".into()];
        args.extend([log.to_str().unwrap().to_string(), "--access-logformat".into(), "%(h)s".into()]);
        if let Some(allow) = allow {
            args.extend(["--forwarded-allow-ips".to_string(), allow.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = TestServer::start(&args);
        server.wait_ready(1);
        assert_eq!(get_once(server.addr, request).status, 200);
        assert_eq!(access_lines(&log, 1)[0], want, "--forwarded-allow-ips {allow:?}");
    }
}

/// A PROXY protocol v2 header for a TCP over IPv4 connection from `src` to `dst`.
fn proxy_v2(src: [u8; 4], src_port: u16, dst: [u8; 4], dst_port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(&src_port.to_be_bytes());
    h.extend_from_slice(&dst_port.to_be_bytes());
    h
}

#[test]
fn proxy_protocol_headers_good_and_bad() {
    let redis = TestRedis::start();
    let dir = scratch("proxy");
    let log = dir.join("access.log");
    let server = TestServer::start(&[
        "-w",
        "1",
        "--redis",
        &redis.url(0),
        "--proxy-protocol",
        "--metrics-bind",
        "127.0.0.1:0",
        "--access-logfile",
        log.to_str().unwrap(),
        "--access-logformat",
        "%(h)s %(s)s",
    ]);
    server.wait_ready(1);

    let mut v1 = Client::connect(server.addr);
    v1.send(b"PROXY TCP4 198.51.100.7 127.0.0.1 5555 80\r\n");
    assert_eq!(v1.request(GET).value(), 1);
    assert_eq!(v1.request(GET).value(), 2, "the header comes once, then the connection is plain HTTP");

    let mut v2 = Client::connect(server.addr);
    let mut bytes = proxy_v2([203, 0, 113, 20], 40000, [127, 0, 0, 1], 80);
    bytes.extend_from_slice(GET.as_bytes());
    v2.send(&bytes);
    assert_eq!(v2.read_response(false).value(), 3);

    // A balancer's own check (LOCAL): the peer is the client.
    let mut local = Client::connect(server.addr);
    local.send(b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00");
    assert_eq!(local.request(GET).value(), 4);

    // Plain HTTP, a broken v1 line and a v2 header of an unknown version are closed unanswered.
    let mut plain = Client::connect(server.addr);
    plain.send(GET.as_bytes());
    plain.assert_closed();
    server.log.wait_for("did not start with a PROXY protocol header (--proxy-protocol)", DEADLINE);
    let mut bad_v1 = Client::connect(server.addr);
    bad_v1.send(b"PROXY TCP4 not-an-address 127.0.0.1 1 2\r\n");
    bad_v1.assert_closed();
    server.log.wait_for("bad PROXY protocol v1 header", DEADLINE);
    let mut bad_v2 = Client::connect(server.addr);
    let mut h = proxy_v2([1, 2, 3, 4], 1, [5, 6, 7, 8], 2);
    h[12] = 0x31;
    bad_v2.send(&h);
    bad_v2.assert_closed();
    server.log.wait_for("bad PROXY protocol v2 header", DEADLINE);

    let lines = access_lines(&log, 4);
    assert_eq!(lines, ["198.51.100.7 200", "198.51.100.7 200", "203.0.113.20 200", "127.0.0.1 200"]);
    assert_eq!(redis.cmd(0, &["GET", "hit"]), "4");
    let (_, s) = scrape(metrics_addr(&server));
    assert_eq!(sample(&s, "hitcore_proxy_protocol_rejected_total"), 3.0);
}

/// A PROXY header that never completes is closed at `--header-timeout`, not before: the deadline
/// is the one the shard's tick checks for every connection (docs/performance.md, "Deadlines on the
/// tick"), so it may come up to one tick late but never early.
#[test]
fn an_incomplete_proxy_header_is_closed_at_the_header_timeout() {
    let redis = TestRedis::start();
    let server = TestServer::start(&["-w", "1", "--redis", &redis.url(0), "--proxy-protocol", "--header-timeout", "1"]);
    server.wait_ready(1);
    let mut c = Client::connect(server.addr);
    c.send(b"PROXY TCP4 198.51.100.7 ");
    let sent = std::time::Instant::now();
    c.assert_closed();
    let waited = sent.elapsed();
    assert!(waited >= std::time::Duration::from_millis(900), "closed {waited:?} after the partial header");
    server.log.wait_for("no complete PROXY protocol header within --header-timeout", DEADLINE);
    assert_eq!(redis.cmd(0, &["GET", "hit"]), "(nil)", "nothing was counted");
}

/// A connection to `addr` from the loopback address `from` (the kernel routes all of 127/8 locally).
fn connect_from(from: [u8; 4], addr: SocketAddr) -> Client {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    socket.connect(&addr.into()).unwrap();
    Client::from_stream(socket.into())
}

#[test]
fn a_proxy_header_from_outside_proxy_allow_from_is_never_read() {
    let redis = TestRedis::start();
    let dir = scratch("proxy-allow");
    let log = dir.join("access.log");
    let server = TestServer::start(&[
        "-w",
        "1",
        "--redis",
        &redis.url(0),
        "--proxy-protocol",
        "--proxy-allow-from",
        "127.0.0.2",
        "--metrics-bind",
        "127.0.0.1:0",
        "--access-logfile",
        log.to_str().unwrap(),
        "--access-logformat",
        "%(h)s %(s)s",
    ]);
    server.wait_ready(1);
    // From the allowed balancer: the header is believed.
    let mut allowed = connect_from([127, 0, 0, 2], server.addr);
    allowed.send(b"PROXY TCP4 198.51.100.7 127.0.0.1 5555 80\r\n");
    assert_eq!(allowed.request(GET).value(), 1);
    // From anyone else: closed unanswered; the address it claims is neither used nor logged.
    let mut outsider = connect_from([127, 0, 0, 1], server.addr);
    outsider.send(format!("PROXY TCP4 203.0.113.66 127.0.0.1 5555 80\r\n{GET}").as_bytes());
    outsider.assert_closed();
    let line = server.log.wait_for("not in --proxy-allow-from", DEADLINE);
    assert!(line.contains("from 127.0.0.1:") || line.contains("from 127.0.0.1 "), "{line}");
    // A burst of them: a line a second at most, the rest counted.
    let burst = std::time::Instant::now();
    for _ in 0..20 {
        let mut c = connect_from([127, 0, 0, 1], server.addr);
        c.send(b"PROXY TCP4 203.0.113.66 127.0.0.1 5555 80\r\n");
        c.assert_closed();
    }
    let seconds = burst.elapsed().as_secs() as usize;
    let lines = server.log.count("not in --proxy-allow-from");
    assert!(lines <= seconds + 2, "{lines} lines for 21 refusals in {seconds} s");
    assert!(server.log.lines().iter().all(|l| !l.contains("203.0.113.66")), "the claimed address is never logged");
    assert_eq!(redis.cmd(0, &["GET", "hit"]), "1");
    let metrics = metrics_addr(&server);
    let rejected = || {
        let r = get_once(metrics, "GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n");
        r.text().lines().find_map(|l| l.strip_prefix("hitcore_proxy_protocol_rejected_total ")).map(str::to_string)
    };
    wait_until("21 refusals counted", DEADLINE, || rejected().as_deref() == Some("21"));
    let lines = access_lines(&log, 1);
    assert_eq!(lines, ["198.51.100.7 200"]);
}

#[test]
fn bad_observability_flags_are_refused_by_name() {
    for (args, flag) in [
        (&["--metrics-bind", "nope"][..], "--metrics-bind"),
        (&["--health-path", "healthz"][..], "--health-path"),
        (&["--health-path", "/"][..], "--health-path"),
        (&["--access-logformat", "%(h)d"][..], "--access-logformat"),
        (&["--access-logformat", "50% off"][..], "--access-logformat"),
        (&["--forwarded-allow-ips", "127.0.0.1,bogus"][..], "--forwarded-allow-ips"),
        (&["--proxy-allow-from", "10.0.0.0/8,bogus"][..], "--proxy-allow-from"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_hitcore")).args(args).env_remove("REDIS_URL").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
}

/// The metric families a real scrape declares.
fn exported_families() -> Vec<String> {
    let redis = TestRedis::start();
    let server = TestServer::start(&["-w", "1", "--redis", &redis.url(0), "--metrics-bind", "127.0.0.1:0"]);
    let (text, _) = scrape(metrics_addr(&server));
    text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).map(|l| l.split(' ').next().unwrap().to_string()).collect()
}

/// Every `hitcore_*` name in `text`, with a histogram's `_bucket`/`_sum`/`_count` taken off when
/// what is left is a family.
fn metric_names(text: &str, families: &[String]) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("hitcore_") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| families.iter().any(|f| f == b)))
            .unwrap_or(name);
        names.push(base.to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn the_dashboard_and_the_docs_name_exactly_the_exported_metrics() {
    let families = exported_families();
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../deploy/grafana/hitcore.json")).expect("the dashboard is JSON");
    fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match v {
                        serde_json::Value::String(s) if k == "expr" || k == "query" => out.push(s.clone()),
                        _ => exprs(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
            _ => {}
        }
    }
    let mut queries = Vec::new();
    exprs(&dashboard, &mut queries);
    assert!(queries.len() >= 10, "{queries:?}");
    let used = metric_names(&queries.join("\n"), &families);
    for name in &used {
        assert!(families.contains(name), "the dashboard queries {name}, which hitcore does not export");
    }
    for wanted in [
        "hitcore_http_requests_total",
        "hitcore_http_request_duration_seconds",
        "hitcore_redis_batch_increments",
        "hitcore_redis_up",
        "hitcore_shard_restarts_total",
    ] {
        assert!(used.iter().any(|u| u == wanted), "the dashboard has no panel over {wanted}");
    }
    let doc = include_str!("../../docs/observability.md");
    let documented = metric_names(doc, &families);
    for family in &families {
        assert!(doc.contains(&format!("| `{family}` |")), "docs/observability.md does not list {family}");
    }
    for name in &documented {
        assert!(families.contains(name), "docs/observability.md names {name}, which hitcore does not export");
    }
}

/// Kills what is left of a process group at the end of a test (after USR2 the new supervisor is
/// not the test's child, so no other guard reaches it).
struct Group(i32);

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: the process group the test's server was started in.
        unsafe { libc::killpg(self.0, libc::SIGKILL) };
    }
}

#[test]
fn the_metrics_address_is_exclusive_but_survives_usr2() {
    let redis = TestRedis::start();
    let bind = format!("127.0.0.1:{}", free_port());
    let url = redis.url(0);
    let mut server = TestServer::start(&["-w", "1", "--redis", &url, "--metrics-bind", &bind]);
    let _group = Group(server.pid());
    server.wait_ready(1);
    let metrics: SocketAddr = bind.parse().unwrap();
    assert_eq!(get_once(server.addr, GET).status, 200);

    // Another server on the same metrics address is refused at start, naming the flag.
    let mut second = TestServer::start(&["-w", "1", "--redis", &url, "--metrics-bind", &bind]);
    assert_eq!(second.wait_exit(DEADLINE).code(), Some(1));
    second.log.wait_for(&format!("cannot serve metrics at {bind} (--metrics-bind)"), DEADLINE);

    // USR2: the new supervisor binds the address beside the old one, then serves it alone. Sent
    // once the supervisor says its shards serve: before that it ignores USR2 (still starting).
    server.log.wait_for("Ready: 1 shards serving", DEADLINE);
    server.signal(libc::SIGUSR2);
    server.log.wait_for("Took over from the old supervisor", DEADLINE);
    assert!(server.wait_exit(DEADLINE).success());
    wait_until("the new supervisor's shard to serve", DEADLINE, || sample(&scrape(metrics).1, "hitcore_shards") == 1.0);
    assert_eq!(get_once(server.addr, GET).status, 200);
    let (_, s) = scrape(metrics);
    assert_eq!(sample(&s, "hitcore_http_requests_total{code=\"200\"}"), 1.0, "a new supervisor counts anew");
}
