//! Redis from hitcore's side: authentication forms, databases, unix sockets, a Redis that dies
//! mid-request and comes back, a Redis that is down at boot, and error replies.

use crate::common;

use std::thread;
use std::time::{Duration, Instant};

use common::*;

fn assert_no_secret(server: &TestServer) {
    for line in server.log.lines() {
        assert!(!line.contains(PASSWORD) && !line.contains("p%40ss"), "password in log: {line}");
    }
}

#[test]
fn password_and_database() {
    let redis = TestRedis::start();
    let server = TestServer::start(&["-w", "1", "--redis", &redis.url(3)]);
    server.wait_ready(1);
    assert_eq!(get_once(server.addr, GET).value(), 1);
    assert_eq!(redis.cmd(3, &["GET", "hit"]), "1");
    assert_eq!(redis.cmd(0, &["GET", "hit"]), "(nil)");
    assert_no_secret(&server);
}

#[test]
fn url_from_the_environment() {
    let redis = TestRedis::start();
    let url = redis.url(0);
    let server = TestServer::start_with(&["-w", "1"], |cmd| {
        cmd.env("REDIS_URL", &url);
    });
    server.wait_ready(1);
    assert_eq!(get_once(server.addr, GET).value(), 1);
}

#[test]
fn acl_user_and_unix_socket() {
    let redis = TestRedis::start();
    assert_eq!(
        redis.cmd(
            0,
            &["ACL", "SETUSER", "counter", "on", ">s3cr3t", "~hit", "+incrby", "+incr", "+ping", "+client", "+select"]
        ),
        "OK"
    );
    let server =
        TestServer::start(&["-w", "1", "--redis", &format!("redis://counter:s3cr3t@127.0.0.1:{}/0", redis.port)]);
    server.wait_ready(1);
    assert_eq!(get_once(server.addr, GET).value(), 1);
    assert!(server.log.lines().iter().all(|l| !l.contains("s3cr3t")));

    let unix = format!("unix://{}?db=2&password=p%40ss%20word%2F%C3%A9", redis.socket().display());
    let server = TestServer::start(&["-w", "1", "--redis", &unix]);
    server.wait_ready(1);
    assert_eq!(get_once(server.addr, GET).value(), 1);
    assert_eq!(redis.cmd(2, &["GET", "hit"]), "1");
    assert_no_secret(&server);
}

#[test]
fn wrong_password_gives_503_and_a_clear_error_not_a_crash() {
    let redis = TestRedis::start();
    let url = format!("redis://:{}@127.0.0.1:{}/0", percent(&format!("wrong-{PASSWORD}")), redis.port);
    let server = TestServer::start(&["-w", "2", "--share-cpus", "--redis", &url]);
    server.log.wait_for_count("AUTH failed: WRONGPASS", 2, DEADLINE);
    let r = get_once(server.addr, GET);
    assert_eq!(r.status, 503);
    assert_eq!(r.header("Retry-After"), Some("1"));
    let pids = server.shard_pids();
    assert_eq!(get_once(server.addr, GET).status, 503);
    assert_eq!(server.shard_pids(), pids, "no shard restarted");
    assert!(server.log.lines().iter().all(|l| !l.contains("wrong-")), "password in log");
}

#[test]
fn missing_password_and_unknown_database_are_reported() {
    let redis = TestRedis::start();
    let server = TestServer::start(&["-w", "1", "--redis", &format!("redis://127.0.0.1:{}/0", redis.port)]);
    server.log.wait_for("NOAUTH", DEADLINE);
    assert_eq!(get_once(server.addr, GET).status, 503);
    let server = TestServer::start(&["-w", "1", "--redis", &redis.url(999)]);
    server.log.wait_for("SELECT 999 failed", DEADLINE);
    assert_eq!(get_once(server.addr, GET).status, 503);
}

#[test]
fn error_reply_gives_500_and_the_connection_stays_in_step() {
    let redis = TestRedis::start();
    let server = TestServer::start(&["-w", "1", "--redis", &redis.url(0)]);
    server.wait_ready(1);
    assert_eq!(redis.cmd(0, &["SET", "hit", "not a number"]), "OK");
    let mut c = Client::connect(server.addr);
    c.send(GET.repeat(3).as_bytes());
    for _ in 0..3 {
        assert_eq!(c.read_response(false).status, 500);
    }
    server.log.wait_for("with an error", DEADLINE);
    assert_eq!(redis.cmd(0, &["SET", "hit", "41"]), "OK");
    assert_eq!(c.request(GET).value(), 42, "replies still match their requests");
}

#[test]
fn a_shard_boots_with_redis_down_and_serves_once_it_is_up() {
    let mut redis = TestRedis::start();
    redis.kill();
    let server = TestServer::start(&["-w", "1", "--redis", &redis.url(0)]);
    server.log.wait_for("Cannot reach Redis", DEADLINE);
    let r = get_once(server.addr, GET);
    assert_eq!((r.status, r.header("Retry-After")), (503, Some("1")));
    redis.restart();
    server.log.wait_for("Reconnected to Redis", DEADLINE);
    assert_eq!(get_once(server.addr, GET).value(), 1);
}

#[test]
fn redis_killed_mid_request_gives_503_then_service_resumes_without_repeating_a_value() {
    let mut redis = TestRedis::start_durable();
    // A long --redis-timeout, so the 503s below come from the broken connection, not the deadline.
    let server = TestServer::start(&["-w", "2", "--share-cpus", "--redis", &redis.url(0), "--redis-timeout", "30"]);
    server.wait_ready(2);
    let addr = server.addr;
    let mut seen: Vec<i64> = (0..20).map(|_| get_once(addr, GET).value()).collect();

    // Freeze Redis, put requests in flight, then kill it.
    // SAFETY: signalling the redis-server this test started.
    unsafe { libc::kill(redis.pid(), libc::SIGSTOP) };
    let in_flight: Vec<_> = (0..16)
        .map(|_| {
            thread::spawn(move || {
                let started = Instant::now();
                let r = get_once(addr, GET);
                (r.status, r.header("Retry-After").map(str::to_string), started.elapsed())
            })
        })
        .collect();
    // Gives the requests time to reach Redis's socket; the assertions hold either way (a request
    // that had not been written yet is refused with the same 503).
    thread::sleep(Duration::from_millis(300));
    redis.kill();
    for h in in_flight {
        let (status, retry, took) = h.join().unwrap();
        assert_eq!((status, retry.as_deref()), (503, Some("1")));
        assert!(took < Duration::from_secs(10), "an in-flight request waited {took:?}");
    }
    let started = Instant::now();
    let r = get_once(addr, GET);
    assert_eq!(r.status, 503);
    assert!(started.elapsed() < Duration::from_secs(1), "503 at once while Redis is down");

    redis.restart();
    server.log.wait_for_count("Reconnected to Redis", 2, DEADLINE);
    seen.extend((0..20).map(|_| get_once(addr, GET).value()));
    let mut unique = seen.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "a value was returned twice: {seen:?}");
    assert_eq!(server.log.count("Booting worker"), 2, "no shard restarted");
}

#[test]
fn a_host_name_is_resolved_by_the_shard_and_every_address_is_tried() {
    let redis = TestRedis::start();
    // localhost may resolve to ::1 first, where this redis-server does not listen.
    let url = format!("redis://:{}@localhost:{}/0", percent(PASSWORD), redis.port);
    let server = TestServer::start(&["-w", "1", "--redis", &url]);
    server.wait_ready(1);
    assert_eq!(get_once(server.addr, GET).value(), 1);
    let line = server.log.wait_for("Connected to Redis", DEADLINE);
    assert!(line.contains("localhost (127.0.0.1:"), "names the address it reached: {line}");
}

#[test]
fn a_name_that_does_not_resolve_is_an_error_line_and_503s_not_an_exit() {
    let server = TestServer::start(&["-w", "1", "--redis", "redis://no-such-host.invalid:6379/0"]);
    let line = server.log.wait_for("cannot resolve Redis host 'no-such-host.invalid'", DEADLINE);
    assert!(line.contains("[ERROR]"), "{line}");
    let r = get_once(server.addr, GET);
    assert_eq!((r.status, r.header("Retry-After")), (503, Some("1")));
    assert_eq!(server.log.count("cannot resolve"), 1, "logged once, not once per retry");
}

/// Sends GETs, each answered 503 with `Retry-After: 1`, until the log has `needle` (the WARNING is
/// rate-limited to one a second, so a reply that follows another may need a few requests).
fn answers_503_until_logged(server: &TestServer, needle: &str) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let r = get_once(server.addr, GET);
        assert_eq!((r.status, r.header("Retry-After")), (503, Some("1")), "a try-again reply is a 503: {}", r.text());
        if let Some(line) = server.log.lines().into_iter().find(|l| l.contains(needle)) {
            return line;
        }
        assert!(Instant::now() < deadline, "no log line with {needle:?}:\n{}", server.log.lines().join("\n"));
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn try_again_replies_answer_503_with_retry_after_and_count_nothing() {
    let redis = TestRedis::start();
    let server = TestServer::start(&["-w", "1", "--redis", &redis.url(0)]);
    server.wait_ready(1);
    assert_eq!(get_once(server.addr, GET).value(), 1);

    // -NOREPLICAS: the server wants a replica that is not there.
    assert_eq!(redis.cmd(0, &["CONFIG", "SET", "min-replicas-to-write", "1"]), "OK");
    let line = answers_503_until_logged(&server, "NOREPLICAS");
    assert!(line.contains("WARNING") && line.contains("min-replicas-to-write"), "{line}");
    assert_eq!(redis.cmd(0, &["CONFIG", "SET", "min-replicas-to-write", "0"]), "OK");
    assert_eq!(get_once(server.addr, GET).value(), 2, "nothing was counted, and the connection stayed in step");

    // -OOM: maxmemory reached with noeviction.
    assert_eq!(redis.cmd(0, &["CONFIG", "SET", "maxmemory-policy", "noeviction"]), "OK");
    assert_eq!(redis.cmd(0, &["CONFIG", "SET", "maxmemory", "1"]), "OK");
    let line = answers_503_until_logged(&server, "OOM");
    assert!(line.contains("maxmemory"), "{line}");
    assert_eq!(redis.cmd(0, &["CONFIG", "SET", "maxmemory", "0"]), "OK");
    assert_eq!(get_once(server.addr, GET).value(), 3);

    // -BUSY: a script that runs past the busy threshold.
    assert_eq!(redis.cmd(0, &["CONFIG", "SET", "busy-reply-threshold", "50"]), "OK");
    let port = redis.port;
    let script = thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut out = Vec::new();
        for args in [&["AUTH", PASSWORD][..], &["EVAL", "while true do end", "0"]] {
            out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
            for a in args {
                out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
            }
        }
        std::io::Write::write_all(&mut s, &out).unwrap();
        // Until SCRIPT KILL: the script's error reply (or the server closing) ends it.
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut buf = [0u8; 512];
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains("-") {
            match std::io::Read::read(&mut s, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    });
    // Once the script has run past the threshold, Redis answers other clients -BUSY.
    wait_until("the script makes Redis busy", DEADLINE, || redis.cmd(0, &["PING"]).starts_with("-BUSY"));
    let line = answers_503_until_logged(&server, "BUSY");
    assert!(line.contains("script"), "{line}");
    // SCRIPT KILL is one of the few commands a busy server runs (the harness's SELECT is refused).
    assert_eq!(redis.cmd(0, &["SCRIPT", "KILL"]), "OK");
    script.join().unwrap();
    assert_eq!(get_once(server.addr, GET).value(), 4);
    assert_eq!(redis.cmd(0, &["GET", "hit"]), "4", "no 503 was counted");
}

#[test]
fn a_misconfiguration_reply_answers_500_and_says_what_to_fix() {
    let redis = TestRedis::start();
    let server = TestServer::start(&["-w", "1", "--redis", &redis.url(0)]);
    server.wait_ready(1);
    assert_eq!(redis.cmd(0, &["LPUSH", "hit", "x"]), "1");
    assert_eq!(get_once(server.addr, GET).status, 500);
    let line = server.log.wait_for("WRONGTYPE", DEADLINE);
    assert!(line.contains("ERROR") && line.contains("choose another --key or delete that key"), "{line}");
    assert_eq!(redis.cmd(0, &["DEL", "hit"]), "1");
    assert_eq!(get_once(server.addr, GET).value(), 1, "the connection stayed in step");
}
