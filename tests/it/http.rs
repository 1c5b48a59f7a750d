//! HTTP behaviour on real bytes: pipelining, split requests, ab's own requests, every status the
//! server gives, and where the connection must close.

use crate::common;

use std::time::{Duration, Instant};

use common::*;

fn server(extra: &[&str]) -> (TestRedis, TestServer) {
    let redis = TestRedis::start();
    let url = redis.url(0);
    let mut args = vec!["-w", "1", "--redis", &url];
    args.extend_from_slice(extra);
    let server = TestServer::start(&args);
    server.wait_ready(1);
    (redis, server)
}

#[test]
fn sixteen_pipelined_requests_in_one_write() {
    let (_redis, server) = server(&[]);
    let mut c = Client::connect(server.addr);
    c.send(GET.repeat(16).as_bytes());
    let values: Vec<i64> = (0..16).map(|_| c.read_response(false).value()).collect();
    assert_eq!(values, (1..=16).collect::<Vec<_>>(), "in order, increasing");
    // The connection is still usable afterwards.
    assert_eq!(c.request(GET).value(), 17);
}

#[test]
fn pipelined_mix_answers_in_order() {
    let (_redis, server) = server(&[]);
    let mut c = Client::connect(server.addr);
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\nHEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(c.read_response(false).value(), 1);
    assert_eq!(c.read_response(false).status, 404);
    assert_eq!(c.read_response(true).status, 200);
    assert_eq!(c.read_response(false).value(), 2);
}

#[test]
fn a_request_sent_one_byte_at_a_time() {
    let (_redis, server) = server(&[]);
    let mut c = Client::connect(server.addr);
    for &b in GET.as_bytes() {
        c.send(&[b]);
        // Paces the bytes so the server sees many partial reads; nothing waits on start-up here.
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(c.read_response(false).value(), 1);
}

const AB: &str = "GET / HTTP/1.0\r\nHost: 127.0.0.1:8000\r\nUser-Agent: ApacheBench/2.3\r\nAccept: */*\r\n\r\n";
const AB_KEEP_ALIVE: &str = "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: 127.0.0.1:8000\r\nUser-Agent: ApacheBench/2.3\r\nAccept: */*\r\n\r\n";

#[test]
fn ab_http10_request_closes() {
    let (_redis, server) = server(&[]);
    let mut c = Client::connect(server.addr);
    let r = c.request(AB);
    assert_eq!(r.value(), 1);
    assert_eq!(r.header("Connection"), Some("close"));
    c.assert_closed();
}

#[test]
fn ab_keep_alive_request_keeps_the_connection() {
    let (_redis, server) = server(&[]);
    let mut c = Client::connect(server.addr);
    for expected in 1..=3 {
        let r = c.request(AB_KEEP_ALIVE);
        assert_eq!(r.value(), expected);
        // ab -k reuses a connection only if the head says keep-alive and gives a length.
        assert_eq!(r.header("Connection"), Some("keep-alive"));
        assert_eq!(r.header("Content-Length"), Some(expected.to_string().len().to_string().as_str()));
    }
}

#[test]
fn get_root_headers() {
    let (_redis, server) = server(&[]);
    let r = get_once(server.addr, GET);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "1");
    assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("Content-Length"), Some("1"));
    let date = r.header("Date").expect("Date header");
    assert!(date.len() == 29 && date.ends_with(" GMT"), "IMF-fixdate: {date}");
    assert_eq!(r.header("Connection"), None, "HTTP/1.1 keep-alive is implicit");
    // Query strings and absolute-form targets name the same resource.
    assert_eq!(get_once(server.addr, "GET /?utm=x HTTP/1.1\r\nHost: a\r\n\r\n").value(), 2);
    assert_eq!(get_once(server.addr, "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n").value(), 3);
}

#[test]
fn head_has_headers_only_and_does_not_count() {
    let (redis, server) = server(&[]);
    let mut c = Client::connect(server.addr);
    assert_eq!(c.request(GET).value(), 1);
    let r = c.request("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("Content-Length"), None);
    // The next bytes on the wire are the next response: HEAD sent no body.
    assert_eq!(c.request(GET).value(), 2);
    assert_eq!(redis.cmd(0, &["GET", "hit"]), "2");
}

#[test]
fn options_answers_allow() {
    let (_redis, server) = server(&[]);
    let mut c = Client::connect(server.addr);
    for raw in ["OPTIONS / HTTP/1.1\r\nHost: a\r\n\r\n", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"] {
        let r = c.request(raw);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Allow"), Some("GET, HEAD, OPTIONS"));
        assert_eq!(r.header("Content-Length"), Some("0"));
    }
}

#[test]
fn not_found_and_method_not_allowed_keep_the_connection() {
    let (redis, server) = server(&[]);
    let mut c = Client::connect(server.addr);
    let r = c.request("GET /favicon.ico HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (404, "Not Found\n"));
    for method in ["POST", "PUT", "DELETE", "PATCH", "BREW"] {
        let r = c.request(&format!("{method} / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"));
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("Allow"), Some("GET, HEAD, OPTIONS"));
    }
    let r = c.request("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n");
    assert_eq!(r.status, 405);
    assert_eq!(c.request(GET).value(), 1, "none of these counted, and the connection is still open");
    assert_eq!(redis.cmd(0, &["GET", "hit"]), "1");
}

/// Sends `raw`, expects `status` and then the connection closed.
fn rejected(server: &TestServer, raw: &[u8], status: u16) {
    let mut c = Client::connect(server.addr);
    c.send(raw);
    let r = c.read_response(false);
    assert_eq!(r.status, status, "for {:?}", String::from_utf8_lossy(&raw[..raw.len().min(80)]));
    assert_eq!(r.header("Connection"), Some("close"));
    c.assert_closed();
}

#[test]
fn malformed_and_oversized_requests_get_their_status_and_a_close() {
    let (redis, server) = server(&[]);
    let long_line = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(5000));
    rejected(&server, long_line.as_bytes(), 414);
    let many = format!("GET / HTTP/1.1\r\nHost: a\r\n{}\r\n", "X-A: 1\r\n".repeat(101));
    rejected(&server, many.as_bytes(), 431);
    let big = format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n", "b".repeat(9000));
    rejected(&server, big.as_bytes(), 431);
    rejected(&server, b"GARBAGE\r\n\r\n", 400);
    rejected(&server, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400);
    rejected(&server, b"GET / HTTP/1.1\r\n\r\n", 400);
    rejected(&server, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
    rejected(&server, b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
    rejected(&server, b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400);
    rejected(&server, b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400);
    rejected(&server, b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501);
    rejected(&server, b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\n", 400);
    assert_eq!(redis.cmd(0, &["GET", "hit"]), "(nil)", "no rejected request counted");
}

#[test]
fn request_bodies_are_skipped_not_parsed() {
    let (_redis, server) = server(&[]);
    let mut c = Client::connect(server.addr);
    // The body looks like a request; it must not be answered as one.
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 28\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(c.read_response(false).value(), 1);
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nGET \r\n0\r\n\r\n");
    assert_eq!(c.read_response(false).value(), 2);
    assert_eq!(c.request(GET).value(), 3);
}

#[test]
fn connection_close_is_honoured() {
    let (_redis, server) = server(&[]);
    let mut c = Client::connect(server.addr);
    let r = c.request("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert_eq!(r.value(), 1);
    assert_eq!(r.header("Connection"), Some("close"));
    c.assert_closed();
}

#[test]
fn idle_keep_alive_connections_close_after_keep_alive_seconds() {
    let (_redis, server) = server(&["--keep-alive", "1"]);
    let mut c = Client::connect(server.addr);
    assert_eq!(c.request(GET).value(), 1);
    let idle = Instant::now();
    c.assert_closed();
    let waited = idle.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(10), "closed after {waited:?}");
}

#[test]
fn an_incomplete_head_is_closed_at_the_header_timeout() {
    let (_redis, server) = server(&["--header-timeout", "1"]);
    let mut c = Client::connect(server.addr);
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n");
    let started = Instant::now();
    c.assert_closed();
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn keep_alive_zero_closes_after_each_response() {
    let (_redis, server) = server(&["--keep-alive", "0"]);
    let mut c = Client::connect(server.addr);
    let r = c.request(GET);
    assert_eq!(r.header("Connection"), Some("close"));
    c.assert_closed();
}

/// The request-smuggling and framing table of docs/security.md, on real bytes.
#[test]
fn smuggling_and_framing_probes() {
    let (redis, server) = server(&[]);
    rejected(&server, b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx", 400);
    rejected(&server, b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", 400);
    rejected(&server, b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400);
    rejected(&server, b"GET / HTTP/1.1\r\nHost: a\rX-Smuggle: 1\r\n\r\n", 400);
    rejected(&server, b"GET / HTTP/1.1\r\nHost: a\r\nX-Nul: a\0b\r\n\r\n", 400);
    rejected(&server, b"GET / HTTP/1.1\r\nHost: a\r\nX-Fold: a\r\n b\r\n\r\n", 400);
    rejected(&server, b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400);
    rejected(&server, b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
    rejected(
        &server,
        b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
    );
    rejected(&server, b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    rejected(&server, b"GET / HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\n\r\n", 417);
    rejected(&server, b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n", 413);
    // A request is answered when its head is complete; a broken chunked body after it then gets a
    // 400 and the connection closes, so the bytes are never read as a next request.
    let mut c = Client::connect(server.addr);
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(c.read_response(false).value(), 1);
    let r = c.read_response(false);
    assert_eq!((r.status, r.header("Connection")), (400, Some("close")));
    c.assert_closed();

    // Expect: 100-continue needs no interim answer: the final one comes at once, and a body the
    // client sends anyway is skipped by its framing.
    let mut c = Client::connect(server.addr);
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
    assert_eq!(c.read_response(false).value(), 2);
    c.send(b"bodyGET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(c.read_response(false).value(), 3);
    assert_eq!(redis.cmd(0, &["GET", "hit"]), "3");
}

#[test]
fn a_partial_head_that_turns_invalid_still_gets_its_error() {
    let (_redis, server) = server(&["--header-timeout", "1"]);
    let mut c = Client::connect(server.addr);
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\nX-Bad: a");
    // Paces the pieces into separate reads. The second one ends no line, so the server does not
    // re-parse the head for it; the error is found at the latest when the head's deadline expires.
    std::thread::sleep(Duration::from_millis(50));
    c.send(b"\x01b");
    let r = c.read_response(false);
    assert_eq!((r.status, r.header("Connection")), (400, Some("close")));
    c.assert_closed();
}
