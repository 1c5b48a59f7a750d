//! The counting API against a real redis-server and the real binary: every route's status and JSON
//! shape, admin authorisation, names and bad input (answered 4xx with Redis untouched), CORS and
//! JSONP, Abacus's key layout read back, the TTL, closed mode, and per-key coalescing: hundreds of
//! keys hit concurrently through two shards, each key's values exactly 1..N.

use crate::common;

use std::collections::HashMap;
use std::io::Write;
use std::thread;

use common::*;
use serde_json::{Value, json};

fn start(redis: &TestRedis, extra: &[&str]) -> TestServer {
    let url = redis.url(0);
    let mut args = vec!["-w", "2", "--share-cpus", "--redis", &url];
    args.extend_from_slice(extra);
    let server = TestServer::start(&args);
    server.wait_ready(2);
    server
}

fn req(c: &mut Client, method: &str, target: &str, headers: &str) -> (u16, Value, Response) {
    let r = c.request(&format!("{method} {target} HTTP/1.1\r\nHost: t\r\n{headers}\r\n"));
    let body = if r.body.is_empty() { Value::Null } else { serde_json::from_slice(&r.body).unwrap_or(Value::Null) };
    (r.status, body, r)
}

#[test]
fn routes_statuses_and_json_shapes() {
    let redis = TestRedis::start();
    let server = start(&redis, &[]);
    let mut c = Client::connect(server.addr);

    // GET / is still the seed counter, on its own key.
    assert_eq!(c.request(GET).value(), 1);
    assert_eq!(redis.cmd(0, &["GET", "hit"]), "1");

    // /hit creates at 0 and counts; one segment is the namespace `default`.
    let (s, v, r) = req(&mut c, "GET", "/hit/site/page", "");
    assert_eq!((s, v), (200, json!({"value": 1})));
    assert_eq!(r.header("content-type"), Some("application/json; charset=utf-8"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(req(&mut c, "GET", "/hit/site/page", "").1, json!({"value": 2}));
    assert_eq!(req(&mut c, "GET", "/hit/lonely", "").1, json!({"value": 1}));
    assert_eq!(redis.cmd(0, &["GET", "K:site:page"]), "2");
    assert_eq!(redis.cmd(0, &["GET", "K:default:lonely"]), "1");

    // /get reads without counting; 404 when missing.
    assert_eq!(req(&mut c, "GET", "/get/site/page", "").1, json!({"value": 2}));
    let (s, v, _) = req(&mut c, "GET", "/get/site/missing", "");
    assert_eq!((s, v), (404, json!({"error": "Key not found"})));
    assert_eq!(redis.cmd(0, &["EXISTS", "K:site:missing"]), "0");

    // /create: 201 with an admin key, 409 when it exists, random names without any.
    let (s, created, _) = req(&mut c, "POST", "/create/site/made?initializer=40", "");
    assert_eq!(s, 201);
    assert_eq!(
        (&created["namespace"], &created["key"], &created["value"]),
        (&json!("site"), &json!("made"), &json!(40))
    );
    let admin = created["admin_key"].as_str().unwrap().to_string();
    assert_eq!(admin.len(), 36);
    assert_eq!(redis.cmd(0, &["GET", "A:site:made"]), admin);
    assert_eq!(redis.cmd(0, &["GET", "K:site:made"]), "40");
    let (s, v, _) = req(&mut c, "GET", "/create/site/made", "");
    assert_eq!((s, v), (409, json!({"error": "Key already exists, please use a different key."})));
    let (s, random, _) = req(&mut c, "GET", "/create/", "");
    assert_eq!(s, 201);
    let (ns, key) = (random["namespace"].as_str().unwrap(), random["key"].as_str().unwrap());
    assert_eq!((ns.len(), key.len(), &random["value"]), (16, 16, &json!(0)));
    assert_eq!(redis.cmd(0, &["GET", &format!("K:{ns}:{key}")]), "0");

    // /info as Abacus shapes it.
    let (s, info, _) = req(&mut c, "GET", "/info/site/made", "");
    assert_eq!(s, 200);
    assert_eq!((&info["value"], &info["full_key"], &info["exists"]), (&json!(40), &json!("K:site:made"), &json!(true)));
    assert_eq!(info["is_genuine"], json!(false), "it has an admin key");
    assert!(info["expires_in"].as_i64().unwrap() > 15_000_000);
    let (_, info, _) = req(&mut c, "GET", "/info/site/nothing", "");
    assert_eq!((&info["value"], &info["exists"], &info["expires_in"]), (&json!(-1), &json!(false), &json!(-2)));
    assert_eq!(req(&mut c, "GET", "/info/site/page", "").1["is_genuine"], json!(true));

    // Admin routes: 401 without a token, 403 with a wrong one, and nothing changes.
    let (s, _, _) = req(&mut c, "POST", "/set/site/made?value=5", "");
    assert_eq!(s, 401);
    let (s, _, _) = req(&mut c, "POST", "/set/site/made?value=5", "Authorization: Bearer wrong\r\n");
    assert_eq!(s, 403);
    let (s, _, _) = req(&mut c, "POST", "/delete/site/page?token=anything", "");
    assert_eq!(s, 403, "a counter made by a hit has no admin key");
    assert_eq!(redis.cmd(0, &["GET", "K:site:made"]), "40");
    assert_eq!(redis.cmd(0, &["GET", "K:site:page"]), "2");

    // With the counter's own key.
    let bearer = format!("Authorization: Bearer {admin}\r\n");
    assert_eq!(req(&mut c, "POST", "/set/site/made?value=7", &bearer).1, json!({"value": 7}));
    assert_eq!(req(&mut c, "POST", "/update/site/made?value=-3", &bearer).1, json!({"value": 4}));
    assert_eq!(
        req(&mut c, "POST", &format!("/update/site/made?value=%2B10&token={admin}"), "").1,
        json!({"value": 14})
    );
    assert_eq!(req(&mut c, "GET", "/hit/site/made", "").1, json!({"value": 15}));
    assert_eq!(req(&mut c, "POST", "/reset/site/made", &bearer).1, json!({"value": 0}));
    assert_eq!(redis.cmd(0, &["GET", "K:site:made"]), "0");
    let (s, v, _) = req(&mut c, "POST", "/delete/site/made", &bearer);
    assert_eq!((s, v), (200, json!({"status": "ok", "message": "Deleted key: K:site:made"})));
    assert_eq!(redis.cmd(0, &["EXISTS", "K:site:made"]), "0");
    assert_eq!(redis.cmd(0, &["EXISTS", "A:site:made"]), "0");
    assert_eq!(req(&mut c, "GET", "/get/site/made", "").0, 404);
}

#[test]
fn bad_input_is_a_4xx_and_touches_no_counter() {
    let redis = TestRedis::start();
    let server = start(&redis, &[]);
    let mut c = Client::connect(server.addr);
    let (s, v, _) = req(&mut c, "GET", "/hit/ab", "");
    assert_eq!((s, v), (400, json!({"error": "Invalid key: length must be between 3 and 64 characters inclusive"})));
    assert_eq!(req(&mut c, "GET", &format!("/hit/ns1/{}", "k".repeat(65)), "").0, 400);
    assert_eq!(req(&mut c, "GET", "/hit/ns1/bad*name", "").0, 400);
    assert_eq!(req(&mut c, "GET", "/hit/:HOST:/abc", "").0, 400, "no Origin");
    assert_eq!(req(&mut c, "GET", "/hit/:HOST:/abc", "Origin: javascript:alert(1)\r\n").0, 400);
    assert_eq!(req(&mut c, "GET", "/hit/abc?callback=alert(1)//", "").0, 400);
    assert_eq!(req(&mut c, "GET", "/create/abc/def?initializer=ten", "").0, 400);
    assert_eq!(req(&mut c, "POST", "/update/abc/def?value=0&token=x", "").0, 400);
    assert_eq!(req(&mut c, "POST", "/set/abc/def?value=1.5&token=x", "").0, 400);
    assert_eq!(req(&mut c, "POST", "/hit/abc/def", "Content-Length: 0\r\n").0, 405);
    assert_eq!(req(&mut c, "GET", "/hit/a/b/c/d", "").0, 404);
    assert_eq!(redis.cmd(0, &["DBSIZE"]), "0", "nothing reached Redis");
    // A path longer than --limit-request-line is refused by the parser: 414, connection closed.
    let r = get_once(server.addr, &format!("GET /hit/{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(5000)));
    assert_eq!(r.status, 414);
    assert_eq!(redis.cmd(0, &["DBSIZE"]), "0");
}

#[test]
fn cors_jsonp_reserved_names_and_abacus_keys() {
    let redis = TestRedis::start();
    // A counter an Abacus instance wrote.
    redis.cmd(0, &["SET", "K:blog:post-1", "41"]);
    let server = start(&redis, &["--cors-origins", "https://a.example,https://b.example"]);
    let mut c = Client::connect(server.addr);
    let (_, v, r) = req(&mut c, "GET", "/hit/blog/post-1", "Origin: https://b.example\r\n");
    assert_eq!(v, json!({"value": 42}), "Abacus's count goes on");
    assert_eq!(r.header("access-control-allow-origin"), Some("https://b.example"));
    assert_eq!(r.header("vary"), Some("Origin"));
    let (_, _, r) = req(&mut c, "GET", "/get/blog/post-1", "Origin: https://evil.example\r\n");
    assert_eq!(r.header("access-control-allow-origin"), None);

    // A 204 has no body and no Content-Length (RFC 9110 §8.6).
    c.send(b"OPTIONS /hit/blog/post-1 HTTP/1.1\r\nHost: t\r\nOrigin: https://a.example\r\n\r\n");
    let r = c.read_response(true);
    assert_eq!(r.status, 204);
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://a.example"));
    assert!(r.header("access-control-allow-methods").unwrap().contains("POST"));
    assert!(r.header("access-control-allow-headers").unwrap().contains("Authorization"));
    assert_eq!(redis.cmd(0, &["GET", "K:blog:post-1"]), "42", "a preflight counts nothing");

    let r = c.request("GET /get/blog/post-1?callback=show.count HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.header("content-type"), Some("application/javascript; charset=utf-8"));
    assert_eq!(r.text(), "show.count({\"value\":42});");

    let page = "Origin: https://site.example\r\nReferer: https://site.example/posts/one\r\n";
    assert_eq!(req(&mut c, "GET", "/hit/:HOST:/:PATH:", page).1, json!({"value": 1}));
    assert_eq!(redis.cmd(0, &["GET", "K:https://site.example:https://site.example/posts/one"]), "1");
}

#[test]
fn the_ttl_is_refreshed_per_key_and_zero_keeps_counters() {
    let redis = TestRedis::start();
    let server = start(&redis, &["--counter-ttl", "1000"]);
    let mut c = Client::connect(server.addr);
    req(&mut c, "GET", "/hit/ttl/one", "");
    let ttl: i64 = redis.cmd(0, &["TTL", "K:ttl:one"]).parse().unwrap();
    assert!((990..=1000).contains(&ttl), "{ttl}");
    // A counter this shard has not refreshed yet (its TTL cut short elsewhere): a read refreshes
    // it. (One the shard refreshed within the interval, ttl/64, is not refreshed again: api_ttl.)
    redis.cmd(0, &["SET", "K:ttl:read", "3", "EX", "5"]);
    req(&mut c, "GET", "/get/ttl/read", "");
    let ttl: i64 = redis.cmd(0, &["TTL", "K:ttl:read"]).parse().unwrap();
    assert!(ttl > 900, "a read refreshes it: {ttl}");
    drop(server);

    let server = start(&redis, &["--counter-ttl", "0"]);
    let mut c = Client::connect(server.addr);
    req(&mut c, "GET", "/hit/ttl/two", "");
    assert_eq!(redis.cmd(0, &["TTL", "K:ttl:two"]), "-1");
}

#[test]
fn closed_mode_counts_only_created_counters_and_the_global_token_works() {
    let redis = TestRedis::start();
    let dir = scratch_dir("api-token");
    let token_file = dir.join("token");
    let token = "global-token-0123456789";
    std::fs::File::create(&token_file).unwrap().write_all(format!("{token}\n").as_bytes()).unwrap();
    let server = start(&redis, &["--api-mode", "closed", "--admin-token-file", token_file.to_str().unwrap()]);
    let mut c = Client::connect(server.addr);
    let (s, v, _) = req(&mut c, "GET", "/hit/shop/unknown", "");
    assert_eq!((s, v), (404, json!({"error": "Key not found"})));
    assert_eq!(redis.cmd(0, &["EXISTS", "K:shop:unknown"]), "0");
    assert_eq!(req(&mut c, "GET", "/create/shop/known", "").0, 201);
    assert_eq!(req(&mut c, "GET", "/hit/shop/known", "").1, json!({"value": 1}));
    let bearer = format!("Authorization: Bearer {token}\r\n");
    assert_eq!(req(&mut c, "POST", "/set/shop/known?value=100", &bearer).1, json!({"value": 100}));
    assert_eq!(req(&mut c, "GET", "/hit/shop/known", "").1, json!({"value": 101}));
    assert_eq!(
        req(&mut c, "POST", "/set/shop/known?value=1", "Authorization: Bearer global-token-012345678\r\n").0,
        403
    );
    let _ = std::fs::remove_dir_all(&dir);
}

const KEYS: usize = 300;
const CLIENTS: usize = 12;
const ROUNDS: usize = 20;
const PIPELINE: usize = 10;

/// Hundreds of keys hit concurrently over two shards of each of two hitcore processes (two hosts
/// sharing one Redis), pipelined so that batches hold several hits of one key: every key's values
/// are exactly 1..N, and Redis holds N.
#[test]
fn values_of_every_key_are_exactly_one_to_n_across_shards_and_hosts() {
    let redis = TestRedis::start();
    let servers = [start(&redis, &[]), start(&redis, &[])];
    let addrs = [servers[0].addr, servers[1].addr];
    let seed =
        std::env::var("HITCORE_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    eprintln!("seed {seed} (HITCORE_TEST_SEED={seed} reproduces the key order)");
    let handles: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let addr = addrs[i % 2];
            thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(seed.wrapping_add(i as u64));
                let mut c = Client::connect(addr);
                let mut seen = Vec::new();
                for _ in 0..ROUNDS {
                    // Few hot keys and a long tail, so batches repeat keys.
                    let keys: Vec<usize> =
                        (0..PIPELINE).map(|_| if rng.bool() { rng.usize(..5) } else { rng.usize(..KEYS) }).collect();
                    let mut batch = String::new();
                    for k in &keys {
                        batch.push_str(&format!("GET /hit/load/key{k:03} HTTP/1.1\r\nHost: t\r\n\r\n"));
                    }
                    c.send(batch.as_bytes());
                    for k in keys {
                        let r = c.read_response(false);
                        assert_eq!(r.status, 200, "{r:?}");
                        let v: Value = serde_json::from_slice(&r.body).unwrap();
                        seen.push((k, v["value"].as_i64().unwrap()));
                    }
                }
                seen
            })
        })
        .collect();
    let mut by_key: HashMap<usize, Vec<i64>> = HashMap::new();
    for h in handles {
        for (k, v) in h.join().unwrap() {
            by_key.entry(k).or_default().push(v);
        }
    }
    assert!(by_key.len() > 100, "hundreds of keys: {}", by_key.len());
    for (k, mut values) in by_key {
        values.sort_unstable();
        let n = values.len() as i64;
        assert_eq!(values, (1..=n).collect::<Vec<_>>(), "seed {seed}: key{k:03} got each of 1..={n} once");
        assert_eq!(redis.cmd(0, &["GET", &format!("K:load:key{k:03}")]), n.to_string());
    }
}

/// `--rate-limit` holds for the whole host: requests of one client spread over connections (and so
/// over both shards) share one count in Redis; another client (named by a trusted proxy's
/// `X-Forwarded-For`) has its own; refused requests count nothing.
#[test]
fn the_rate_limit_holds_across_shards_per_client() {
    let redis = TestRedis::start();
    // A day's window: the test cannot straddle two of them unless it runs across midnight UTC.
    let mut server = start(&redis, &["--rate-limit", "5/86400"]);
    let as_client = |ip: &str| {
        let statuses: Vec<(u16, Option<String>)> = (0..12)
            .map(|_| {
                let r = get_once(
                    server.addr,
                    &format!("GET /hit/limited/page HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: {ip}\r\n\r\n"),
                );
                (r.status, r.header("retry-after").map(str::to_string))
            })
            .collect();
        let ok = statuses.iter().filter(|(s, _)| *s == 200).count();
        let limited: Vec<_> = statuses.iter().filter(|(s, _)| *s == 429).collect();
        assert_eq!((ok, limited.len()), (5, 7), "{statuses:?}");
        for (_, retry) in limited {
            let secs: u64 = retry.as_deref().expect("Retry-After on 429").parse().unwrap();
            assert!((1..=86400).contains(&secs), "{secs}");
        }
    };
    as_client("203.0.113.1");
    assert_eq!(redis.cmd(0, &["GET", "K:limited:page"]), "5", "a 429 counts nothing");
    as_client("203.0.113.2");
    assert_eq!(redis.cmd(0, &["GET", "K:limited:page"]), "10");
    // GET / is not the API's and is not limited.
    for _ in 0..8 {
        assert_eq!(get_once(server.addr, GET).status, 200);
    }
    let served = server.stop();
    assert!(served.iter().all(|&s| s > 0), "both shards served: {served:?}");
}

/// The API's metrics: requests by route (the admin routes as one), 429s, the API's statuses; no
/// label names a counter.
#[test]
fn metrics_count_api_requests_by_route_without_per_key_labels() {
    let redis = TestRedis::start();
    let server = start(&redis, &["--metrics-bind", "127.0.0.1:0", "--rate-limit", "6/86400"]);
    let line = server.log.wait_for("Serving metrics at: http://", DEADLINE);
    let metrics: std::net::SocketAddr =
        line.split("http://").nth(1).unwrap().trim_end_matches("/metrics").parse().unwrap();
    let mut c = Client::connect(server.addr);
    for target in ["/hit/mtr/aaa", "/hit/mtr/bbb", "/get/mtr/aaa", "/info/mtr/aaa"] {
        assert_eq!(req(&mut c, "GET", target, "").0, 200);
    }
    assert_eq!(req(&mut c, "POST", "/create/mtr/ccc", "").0, 201);
    assert_eq!(req(&mut c, "POST", "/reset/mtr/ccc?token=wrong", "").0, 403);
    assert_eq!(req(&mut c, "GET", "/hit/mtr/aaa", "").0, 429);
    let sample = |text: &str, key: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(key) && l[key.len()..].starts_with(' '));
        line.unwrap_or_else(|| panic!("no {key} in\n{text}")).rsplit_once(' ').unwrap().1.parse().unwrap()
    };
    let expected = [
        ("hitcore_api_requests_total{route=\"hit\"}", 3.0),
        ("hitcore_api_requests_total{route=\"get\"}", 1.0),
        ("hitcore_api_requests_total{route=\"info\"}", 1.0),
        ("hitcore_api_requests_total{route=\"create\"}", 1.0),
        ("hitcore_api_requests_total{route=\"admin\"}", 1.0),
        ("hitcore_api_rate_limited_total", 1.0),
        ("hitcore_http_requests_total{code=\"201\"}", 1.0),
        ("hitcore_http_requests_total{code=\"403\"}", 1.0),
        ("hitcore_http_requests_total{code=\"429\"}", 1.0),
        ("hitcore_http_requests_total{code=\"200\"}", 4.0),
        ("hitcore_api_stream_clients", 0.0),
    ];
    // The shards publish their counters as they answer; the scrape may come a moment before.
    let mut text = String::new();
    wait_until("the API's metrics", DEADLINE, || {
        text = get_once(metrics, "GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n").text();
        expected.iter().all(|(k, v)| text.lines().any(|l| l.starts_with(k)) && sample(&text, k) == *v)
    });
    assert!(!text.contains("mtr") && !text.contains("aaa"), "no per-key label:\n{text}");
}

/// Reads from `stream` until `buf` holds `needle`; returns everything up to and including it.
fn read_until(stream: &mut std::net::TcpStream, buf: &mut Vec<u8>, needle: &[u8]) -> String {
    use std::io::Read;
    loop {
        if let Some(i) = buf.windows(needle.len()).position(|w| w == needle) {
            let taken: Vec<u8> = buf.drain(..i + needle.len()).collect();
            return String::from_utf8(taken).unwrap();
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).expect("read the stream");
        assert!(n > 0, "the stream closed; have {:?}", String::from_utf8_lossy(buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `/stream` sends the current value, then every change made through any process sharing the
/// Redis: hits on another hitcore, an admin set, an update.
#[test]
fn stream_sends_each_change_from_another_process() {
    let redis = TestRedis::start();
    let a = start(&redis, &["--api-stream"]);
    let b = start(&redis, &["--api-stream"]);
    let mut cb = Client::connect(b.addr);
    assert_eq!(req(&mut cb, "GET", "/hit/live/page", "").1, json!({"value": 1}));

    let mut s = std::net::TcpStream::connect(a.addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(b"GET /stream/live/page HTTP/1.1\r\nHost: t\r\nOrigin: https://x.example\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let head = read_until(&mut s, &mut buf, b"\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("\r\nContent-Type: text/event-stream\r\n"), "{head}");
    assert!(head.contains("\r\nAccess-Control-Allow-Origin: *\r\n"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("content-length"), "{head}");
    assert_eq!(read_until(&mut s, &mut buf, b"\n\n"), "data: {\"value\":1}\n\n");

    // The subscription is made before the first event is sent, so every later change arrives.
    for expected in 2..=4 {
        assert_eq!(req(&mut cb, "GET", "/hit/live/page", "").1, json!({"value": expected}));
        assert_eq!(read_until(&mut s, &mut buf, b"\n\n"), format!("data: {{\"value\":{expected}}}\n\n"));
    }
    // A stream of a counter that does not exist yet sends nothing until /create publishes it.
    let mut s2 = std::net::TcpStream::connect(a.addr).unwrap();
    s2.set_read_timeout(Some(DEADLINE)).unwrap();
    s2.write_all(b"GET /stream/live/owned HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut buf2 = Vec::new();
    read_until(&mut s2, &mut buf2, b"\r\n\r\n");
    let (_, created, _) = req(&mut cb, "POST", "/create/live/owned?initializer=7", "");
    let admin = created["admin_key"].as_str().unwrap().to_string();
    assert_eq!(read_until(&mut s2, &mut buf2, b"\n\n"), "data: {\"value\":7}\n\n");
    let bearer = format!("Authorization: Bearer {admin}\r\n");
    req(&mut cb, "POST", "/set/live/owned?value=50", &bearer);
    assert_eq!(read_until(&mut s2, &mut buf2, b"\n\n"), "data: {\"value\":50}\n\n");
    req(&mut cb, "POST", "/update/live/owned?value=-8", &bearer);
    assert_eq!(read_until(&mut s2, &mut buf2, b"\n\n"), "data: {\"value\":42}\n\n");
    // The first stream saw none of the other counter's changes.
    req(&mut cb, "GET", "/hit/live/page", "");
    assert_eq!(read_until(&mut s, &mut buf, b"\n\n"), "data: {\"value\":5}\n\n");
}

#[test]
fn stream_is_404_unless_enabled() {
    let redis = TestRedis::start();
    let server = start(&redis, &[]);
    let mut c = Client::connect(server.addr);
    let (s, v, _) = req(&mut c, "GET", "/stream/live/page", "");
    assert_eq!((s, v), (404, json!({"error": "Streaming is off: start hitcore with --api-stream"})));
}

/// `/hit/.../shield` counts and draws the value; `/get/.../shield` draws without counting; a bad
/// badge query is a 400 that touches no counter.
#[test]
fn shields_are_svg_badges_of_the_value() {
    let redis = TestRedis::start();
    let server = start(&redis, &[]);
    let mut c = Client::connect(server.addr);
    for expected in 1..=2 {
        let (s, _, r) = req(&mut c, "GET", "/hit/badges/readme/shield?text=views&bgcolor=brightgreen", "");
        assert_eq!(s, 200);
        assert_eq!(r.header("content-type"), Some("image/svg+xml;charset=utf-8"));
        assert_eq!(r.header("cache-control"), Some("no-cache"));
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        let svg = r.text();
        assert!(svg.starts_with("<svg "), "{svg}");
        assert!(svg.contains(&format!(">{expected}</text>")) && svg.contains(">views</text>"), "{svg}");
    }
    let (_, _, r) = req(&mut c, "GET", "/get/badges/readme/shield?style=flat-square-simple", "");
    assert!(r.text().contains(">2</text>") && !r.text().contains(">counter</text>"), "{}", r.text());
    assert_eq!(redis.cmd(0, &["GET", "K:badges:readme"]), "2", "reads do not count");
    let (s, v, _) = req(&mut c, "GET", "/hit/badges/other/shield?style=3d", "");
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().starts_with("style must be"), "{v}");
    assert_eq!(redis.cmd(0, &["EXISTS", "K:badges:other"]), "0");
    let (s, v, _) = req(&mut c, "GET", "/get/badges/missing/shield", "");
    assert_eq!((s, v), (404, json!({"error": "Key not found"})));
}

/// A bad API flag is refused naming the flag, exit 2; the admin token is never echoed.
#[test]
fn bad_api_flags_are_refused_by_name_without_the_token() {
    let refused = |args: &[&str], flag: &str| -> String {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hitcore"))
            .args(args)
            .arg("--check-config")
            .env_remove("REDIS_URL")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?} names {flag}: {stderr}");
        stderr
    };
    refused(&["--rate-limit", "30"], "--rate-limit");
    refused(&["--rate-limit", "0/3"], "--rate-limit");
    refused(&["--cors-origins", "example.com"], "--cors-origins");
    refused(&["--api-mode", "shut"], "--api-mode");
    refused(&["--admin-token-file", "/nonexistent/token"], "--admin-token-file");
    let dir = scratch_dir("api-flags");
    let file = dir.join("token");
    std::fs::write(&file, "short secret\n").unwrap();
    let stderr = refused(&["--admin-token-file", file.to_str().unwrap()], "--admin-token-file");
    assert!(!stderr.contains("short secret"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--wait-replicas` holds the API's answers until the write's WAIT says enough replicas have
/// them, as it does `GET /`'s: served while the replica is up, 503 while it is stopped.
#[test]
fn wait_replicas_holds_api_answers_until_the_replica_acknowledged() {
    let primary = TestRedis::start();
    let replica = TestRedis::start_args(
        Some(PASSWORD),
        &["--replicaof", "127.0.0.1", &primary.port.to_string(), "--masterauth", PASSWORD],
    );
    wait_until("the replica's link is up", DEADLINE, || {
        replica.cmd(0, &["INFO", "replication"]).contains("master_link_status:up")
    });
    // A wait far longer than an acknowledgement takes: CI, running the whole suite on two CPUs,
    // saw the first hit's WAIT time out at 50 ms and, in a later run, at 500 ms. 3 s (under a
    // --redis-timeout raised to match) only makes the stopped replica's 503 below take 3 s.
    let server = start(&primary, &["--wait-replicas", "1", "--wait-timeout", "3000", "--redis-timeout", "10"]);
    let mut c = Client::connect(server.addr);
    for expected in 1..=3 {
        assert_eq!(req(&mut c, "GET", "/hit/durable/page", "").1, json!({"value": expected}));
    }
    assert_eq!(replica.cmd(0, &["GET", "K:durable:page"]), "3", "answered only once the replica had it");
    // SAFETY: stopping (and below resuming) a redis-server this test started.
    unsafe { libc::kill(replica.pid(), libc::SIGSTOP) };
    let (s, _, r) = req(&mut c, "GET", "/hit/durable/page", "");
    assert_eq!((s, r.header("retry-after")), (503, Some("1")), "{r:?}");
    // SAFETY: as above.
    unsafe { libc::kill(replica.pid(), libc::SIGCONT) };
}
