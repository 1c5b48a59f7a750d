//! `--counter-ttl` against a real redis-server: a counter created by `/hit` has its TTL, one
//! deleted (`/delete`, or by anyone in Redis) and hit again gets it again, and a shard refreshes a
//! key's TTL once per refresh interval, not once per batch: counted with `INFO commandstats`.
//! The scripted hit (`--api-stream`) does the same inside its script. `--counter-ttl 0` sends no
//! `EXPIRE` at all. A read (`/get`) refreshes through the same table as a hit.

use crate::common;

use std::io::Write;

use common::*;
use serde_json::{Value, json};

fn req(c: &mut Client, method: &str, target: &str, headers: &str) -> (u16, Value) {
    let r = c.request(&format!("{method} {target} HTTP/1.1\r\nHost: t\r\n{headers}\r\n"));
    (r.status, serde_json::from_slice(&r.body).unwrap_or(Value::Null))
}

/// Calls of `command` Redis has served since the last `CONFIG RESETSTAT`.
fn calls(redis: &TestRedis, command: &str) -> u64 {
    let info = redis.cmd(0, &["INFO", "commandstats"]);
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

/// The counter's TTL in Redis, in seconds (-1: none, -2: no key).
fn ttl(redis: &TestRedis, key: &str) -> i64 {
    redis.cmd(0, &["TTL", key]).parse().unwrap()
}

/// One shard (one connection's hits all go through its table), the default TTL (180 days: a
/// refresh interval of a day) and a global admin token for `/delete`.
#[test]
fn a_hit_sets_the_ttl_once_per_interval_and_again_on_a_counter_it_created() {
    let redis = TestRedis::start();
    let dir = scratch_dir("api-ttl");
    let token_file = dir.join("token");
    let token = "ttl-token-0123456789";
    std::fs::File::create(&token_file).unwrap().write_all(token.as_bytes()).unwrap();
    let url = redis.url(0);
    let server = TestServer::start(&["-w", "1", "--redis", &url, "--admin-token-file", token_file.to_str().unwrap()]);
    server.wait_ready(1);
    let mut c = Client::connect(server.addr);
    const DEFAULT_TTL: i64 = 180 * 24 * 3600;
    redis.cmd(0, &["CONFIG", "RESETSTAT"]);

    // Created by a hit: INCRBY, then EXPIRE.
    assert_eq!(req(&mut c, "GET", "/hit/ttl/page", ""), (200, json!({"value": 1})));
    let t = ttl(&redis, "K:ttl:page");
    assert!(t > DEFAULT_TTL - 60 && t <= DEFAULT_TTL, "{t}");
    assert_eq!((calls(&redis, "incrby"), calls(&redis, "expire")), (1, 1));

    // Hit again within the interval: no EXPIRE.
    for v in 2..=5 {
        assert_eq!(req(&mut c, "GET", "/hit/ttl/page", "").1, json!({"value": v}));
    }
    assert_eq!((calls(&redis, "incrby"), calls(&redis, "expire")), (5, 1));

    // Deleted, then hit: the INCRBY's reply (1) says it created the key, so an EXPIRE follows in
    // the shard's next write, before the /info that reads the TTL.
    let bearer = format!("Authorization: Bearer {token}\r\n");
    assert_eq!(req(&mut c, "POST", "/delete/ttl/page", &bearer).0, 200);
    assert_eq!(ttl(&redis, "K:ttl:page"), -2);
    assert_eq!(req(&mut c, "GET", "/hit/ttl/page", ""), (200, json!({"value": 1})));
    let (_, info) = req(&mut c, "GET", "/info/ttl/page", "");
    let expires_in = info["expires_in"].as_i64().unwrap();
    assert!(expires_in > DEFAULT_TTL - 60 && expires_in <= DEFAULT_TTL, "{info}");
    let t = ttl(&redis, "K:ttl:page");
    assert!(t > DEFAULT_TTL - 60 && t <= DEFAULT_TTL, "{t}");
    assert_eq!(calls(&redis, "expire"), 2);

    // Deleted behind hitcore's back (another host, an operator) and hit: the same.
    redis.cmd(0, &["DEL", "K:ttl:page"]);
    assert_eq!(req(&mut c, "GET", "/hit/ttl/page", ""), (200, json!({"value": 1})));
    assert!(req(&mut c, "GET", "/info/ttl/page", "").1["expires_in"].as_i64().unwrap() > DEFAULT_TTL - 60);
    assert_eq!(calls(&redis, "expire"), 3);

    // An existing counter whose TTL was cut short is not refreshed again within the interval:
    // the documented price (it expires at most one interval early).
    redis.cmd(0, &["EXPIRE", "K:ttl:page", "5000"]);
    assert_eq!(req(&mut c, "GET", "/hit/ttl/page", "").1, json!({"value": 2}));
    assert!(ttl(&redis, "K:ttl:page") <= 5000);
    assert_eq!(calls(&redis, "expire"), 4, "3 from hitcore, 1 from the test");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `/get` keeps a counter as a hit does (Abacus refreshes on reads), through the same table: the
/// first read of a key sets its TTL, the next reads within the interval send `GET` alone.
#[test]
fn a_read_sets_the_ttl_once_per_interval_not_once_per_read() {
    let redis = TestRedis::start();
    let url = redis.url(0);
    let server = TestServer::start(&["-w", "1", "--redis", &url]);
    server.wait_ready(1);
    let mut c = Client::connect(server.addr);
    const DEFAULT_TTL: i64 = 180 * 24 * 3600;
    // A counter with no TTL (made by an operator, or by a release before TTLs).
    redis.cmd(0, &["SET", "K:ttl:read", "7"]);
    redis.cmd(0, &["CONFIG", "RESETSTAT"]);

    assert_eq!(req(&mut c, "GET", "/get/ttl/read", ""), (200, json!({"value": 7})));
    let t = ttl(&redis, "K:ttl:read");
    assert!(t > DEFAULT_TTL - 60 && t <= DEFAULT_TTL, "the first read set the TTL: {t}");
    assert_eq!((calls(&redis, "get"), calls(&redis, "expire")), (1, 1));

    for _ in 0..5 {
        assert_eq!(req(&mut c, "GET", "/get/ttl/read", ""), (200, json!({"value": 7})));
    }
    assert_eq!((calls(&redis, "get"), calls(&redis, "expire")), (6, 1), "reads within the interval: GET alone");

    // A hit on the key it read: the refresh is recorded for hits too, so no EXPIRE either.
    assert_eq!(req(&mut c, "GET", "/hit/ttl/read", ""), (200, json!({"value": 8})));
    assert_eq!(calls(&redis, "expire"), 1);
    // A missing counter: 404, nothing created.
    assert_eq!(req(&mut c, "GET", "/get/ttl/none", "").0, 404);
    assert_eq!(redis.cmd(0, &["EXISTS", "K:ttl:none"]), "0");
}

/// A TTL under 64 s has a refresh interval of zero: every batch refreshes, as before.
#[test]
fn a_short_ttl_is_refreshed_by_every_batch_and_zero_sends_no_expire() {
    let redis = TestRedis::start();
    let url = redis.url(0);
    let server = TestServer::start(&["-w", "1", "--redis", &url, "--counter-ttl", "60"]);
    server.wait_ready(1);
    let mut c = Client::connect(server.addr);
    redis.cmd(0, &["CONFIG", "RESETSTAT"]);
    for v in 1..=3 {
        assert_eq!(req(&mut c, "GET", "/hit/ttl/short", "").1, json!({"value": v}));
    }
    assert_eq!((calls(&redis, "incrby"), calls(&redis, "expire")), (3, 3));
    let t = ttl(&redis, "K:ttl:short");
    assert!((50..=60).contains(&t), "{t}");
    drop(server);

    let server = TestServer::start(&["-w", "1", "--redis", &url, "--counter-ttl", "0"]);
    server.wait_ready(1);
    let mut c = Client::connect(server.addr);
    redis.cmd(0, &["CONFIG", "RESETSTAT"]);
    for v in 1..=3 {
        assert_eq!(req(&mut c, "GET", "/hit/ttl/forever", "").1, json!({"value": v}));
    }
    redis.cmd(0, &["DEL", "K:ttl:forever"]);
    assert_eq!(req(&mut c, "GET", "/hit/ttl/forever", "").1, json!({"value": 1}));
    assert_eq!(req(&mut c, "GET", "/info/ttl/forever", "").1["expires_in"], json!(-1));
    assert_eq!((calls(&redis, "incrby"), calls(&redis, "expire")), (4, 0));
    assert_eq!(ttl(&redis, "K:ttl:forever"), -1);
}

/// The scripted hit (`--api-stream`, closed mode): the script refreshes the TTL when due, and
/// otherwise only on a counter the add created. Redis counts the script's own `EXPIRE`s in
/// `cmdstat_expire`.
#[test]
fn the_scripted_hit_sets_the_ttl_when_due_or_when_it_created_the_counter() {
    let redis = TestRedis::start();
    let url = redis.url(0);
    let server = TestServer::start(&["-w", "1", "--redis", &url, "--api-stream", "--counter-ttl", "6400"]);
    server.wait_ready(1);
    let mut c = Client::connect(server.addr);
    redis.cmd(0, &["CONFIG", "RESETSTAT"]);
    assert_eq!(req(&mut c, "GET", "/hit/ttl/streamed", "").1, json!({"value": 1}));
    assert!((6300..=6400).contains(&ttl(&redis, "K:ttl:streamed")));
    assert_eq!(req(&mut c, "GET", "/hit/ttl/streamed", "").1, json!({"value": 2}));
    assert_eq!((calls(&redis, "eval"), calls(&redis, "expire")), (2, 1), "not due: no EXPIRE");
    redis.cmd(0, &["DEL", "K:ttl:streamed"]);
    assert_eq!(req(&mut c, "GET", "/hit/ttl/streamed", "").1, json!({"value": 1}));
    assert!((6300..=6400).contains(&ttl(&redis, "K:ttl:streamed")), "the script set it: it created the counter");
    assert_eq!((calls(&redis, "eval"), calls(&redis, "expire")), (3, 2));
}
