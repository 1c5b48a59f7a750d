//! The read path through glommio patch 10 (a multishot `recv` per connection, and one for the
//! shard's Redis connection, bytes in the executor's provided buffer ring) and its fallback
//! (`HITCORE_TEST_NO_MULTISHOT`: the shard reads as where the kernel refuses, with a poll and a
//! `recv` per read), on the same real bytes: each check runs against both, and the Redis counter
//! must equal the answers.

use crate::common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::*;

/// How a shard reads.
#[derive(Debug, Clone, Copy)]
enum Reads {
    Multishot,
    Fallback,
}

fn server(reads: Reads, extra: &[&str]) -> (TestRedis, TestServer) {
    let redis = TestRedis::start();
    let url = redis.url(0);
    let mut args = vec!["-w", "1", "--redis", &url];
    args.extend_from_slice(extra);
    let server = TestServer::start_with(&args, |cmd| {
        if let Reads::Fallback = reads {
            cmd.env("HITCORE_TEST_NO_MULTISHOT", "1");
        }
    });
    server.wait_ready(1);
    (redis, server)
}

fn counter(redis: &TestRedis) -> i64 {
    redis.cmd(0, &["GET", "hit"]).trim().parse().unwrap_or(0)
}

/// Keep-alive requests on one connection: after each answer the read waits (the armed receive),
/// then a request split over two writes, then one larger than a ring buffer (4 KiB), then 16
/// pipelined in one write.
fn one_connection(reads: Reads) {
    let (redis, server) = server(reads, &[]);
    let mut c = Client::connect(server.addr);
    let mut expected = 0;
    for _ in 0..50 {
        expected += 1;
        assert_eq!(c.request(GET).value(), expected, "{reads:?}");
    }

    let (head, tail) = GET.split_at(9);
    c.send(head.as_bytes());
    // Lets the first half arrive alone, so the server reads a partial head and waits again.
    std::thread::sleep(Duration::from_millis(20));
    c.send(tail.as_bytes());
    expected += 1;
    assert_eq!(c.read_response(false).value(), expected, "{reads:?}: split request");

    let pad = "x".repeat(3000);
    let big = format!("GET / HTTP/1.1\r\nHost: test\r\nX-A: {pad}\r\nX-B: {pad}\r\nX-C: {pad}\r\n\r\n");
    assert!(big.len() > 2 * 4096);
    expected += 1;
    assert_eq!(c.request(&big).value(), expected, "{reads:?}: a 9 KB head");

    c.send(GET.repeat(16).as_bytes());
    for _ in 0..16 {
        expected += 1;
        assert_eq!(c.read_response(false).value(), expected, "{reads:?}: pipelined");
    }
    assert_eq!(counter(&redis), expected);
}

#[test]
fn one_connection_reads_every_shape_through_multishot() {
    one_connection(Reads::Multishot);
}

#[test]
fn one_connection_reads_every_shape_through_the_fallback() {
    one_connection(Reads::Fallback);
}

/// More connections than the ring has buffers, all waiting, then all sending at once: the
/// receives that find no free buffer end with `ENOBUFS` and are armed again; every request is
/// answered once, and connections that close (EOF through the receive) harm no other. With
/// `--worker-connections 500` the shard's ring has 256 buffers (`executor::for_connections`), so
/// 400 connections outnumber them.
fn many_connections(reads: Reads) {
    assert_eq!(hitcore::executor::for_connections(500).buffers, 256);
    let (redis, server) = server(reads, &["--worker-connections", "500"]);
    let mut clients: Vec<Client> = (0..400).map(|_| Client::connect(server.addr)).collect();
    for c in &mut clients {
        c.request(GET);
    }
    // Every connection's read is now waiting; one write each, as fast as the test can.
    let all = GET.repeat(3);
    for c in &mut clients {
        c.stream.write_all(all.as_bytes()).unwrap();
    }
    for c in &mut clients {
        for _ in 0..3 {
            assert_eq!(c.read_response(false).status, 200, "{reads:?}");
        }
    }
    // Half of them close; the rest go on.
    let kept: Vec<Client> = clients.into_iter().enumerate().filter(|(i, _)| i % 2 == 0).map(|(_, c)| c).collect();
    for mut c in kept {
        assert_eq!(c.request(GET).status, 200, "{reads:?}");
    }
    assert_eq!(counter(&redis), 400 * 4 + 200);
}

#[test]
fn more_waiting_connections_than_ring_buffers_through_multishot() {
    many_connections(Reads::Multishot);
}

#[test]
fn more_waiting_connections_than_ring_buffers_through_the_fallback() {
    many_connections(Reads::Fallback);
}

/// The keep-alive deadline (checked by the shard's tick) still closes a connection whose read
/// waits on an armed receive; the client that closes first is seen too (end of stream).
#[test]
fn the_keep_alive_deadline_closes_an_armed_read() {
    for reads in [Reads::Multishot, Reads::Fallback] {
        let (redis, server) = server(reads, &["--keep-alive", "1"]);
        let mut idle = Client::connect(server.addr);
        assert_eq!(idle.request(GET).value(), 1);
        let gone = TcpStream::connect(server.addr).unwrap();
        drop(gone);
        // Blocks until the server closes it: about a second, well inside the client's deadline.
        idle.assert_closed();
        assert_eq!(get_once(server.addr, GET).value(), 2, "{reads:?}");
        assert_eq!(counter(&redis), 2);
    }
}

/// The shard's Redis connection reads its replies through a multishot receive too (armed when its
/// session starts): replies to batches of one and of many match their requests, and after Redis
/// restarts the new session's receive (the old one cancelled with its stream) reads the new
/// server's replies. Against both read paths.
#[test]
fn the_redis_connection_reads_its_replies_through_the_armed_receive() {
    for reads in [Reads::Multishot, Reads::Fallback] {
        let (mut redis, server) = server(reads, &[]);
        let mut c = Client::connect(server.addr);
        for expected in 1..=20 {
            assert_eq!(c.request(GET).value(), expected, "{reads:?}");
        }
        // One write of 16 requests: one batch, one reply for all of them.
        c.send(GET.repeat(16).as_bytes());
        for expected in 21..=36 {
            assert_eq!(c.read_response(false).value(), expected, "{reads:?}: pipelined");
        }
        assert_eq!(counter(&redis), 36);

        redis.restart();
        // Until the shard has reconnected, requests are answered 503 (and count nothing).
        wait_until("a 200 from the restarted Redis", DEADLINE, || get_once(server.addr, GET).status == 200);
        // The restarted server has no persistence: the counter started again at 1 (the request
        // that saw the reconnect above).
        let mut c = Client::connect(server.addr);
        for expected in 2..=21 {
            assert_eq!(c.request(GET).value(), expected, "{reads:?}: after the restart");
        }
        assert_eq!(counter(&redis), 21, "{reads:?}");
    }
}

/// Where the kernel refuses rings as deep as `--worker-connections` asks for (ring memory under a
/// small `RLIMIT_MEMLOCK`, before Linux 5.12; modelled by a test hook), the shard says so once and
/// boots with glommio's default depth, and its connections read through the multishot receive.
#[test]
fn a_shard_refused_deep_rings_warns_and_serves_with_the_default_depth() {
    let redis = TestRedis::start();
    let url = redis.url(0);
    let server = TestServer::start_with(&["-w", "1", "--redis", &url], |cmd| {
        cmd.env(hitcore::testhook::REFUSE_DEEP_RINGS_ENV, "1");
    });
    server.wait_ready(1);
    server.log.wait_for("io_uring rings 4096 deep were refused", DEADLINE);
    assert!(
        server.log.lines().iter().any(|l| l.contains("[WARNING]") && l.contains("using 128")),
        "{:?}",
        server.log.lines()
    );
    let mut c = Client::connect(server.addr);
    for expected in 1..=5 {
        assert_eq!(c.request(GET).value(), expected);
    }
    assert_eq!(counter(&redis), 5);
}
