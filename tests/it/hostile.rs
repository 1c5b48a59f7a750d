//! Hostile clients and a hostile Redis: slowloris and idle floods beyond the connection cap, a
//! client that pipelines and never reads, a stalled Redis, a Redis that answers garbage, and
//! privilege dropping. Normal clients must keep being answered, memory must stay bounded, and
//! nothing may hang past its deadline.

use crate::common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::*;

/// Resident memory of a process, in KiB.
fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn slow_and_idle_clients_beyond_the_cap_do_not_keep_real_ones_out() {
    let redis = TestRedis::start();
    let url = redis.url(0);
    // Without eviction at the cap, the slow clients would hold every slot for 30 s.
    let server = TestServer::start(&[
        "-w",
        "2",
        "--share-cpus",
        "--redis",
        &url,
        "--worker-connections",
        "50",
        "--header-timeout",
        "30",
        "--keep-alive",
        "30",
        "--evict-after",
        "0.05",
    ]);
    server.wait_ready(2);
    let shards = server.shard_pids();
    let before: u64 = shards.iter().map(|&p| rss_kib(p)).sum();

    let mut hostile = Vec::new();
    for i in 0..600 {
        let mut s = TcpStream::connect(server.addr).unwrap();
        if i % 2 == 0 {
            // Slowloris: a head that never ends.
            s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ").unwrap();
        }
        hostile.push(s);
    }
    let mut answered = 0;
    let started = Instant::now();
    for _ in 0..40 {
        let mut c = Client::connect(server.addr);
        c.stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(c.request(GET).status, 200, "a real client was kept out");
        answered += 1;
    }
    let peak: u64 = shards.iter().map(|&p| rss_kib(p)).sum();
    server.log.wait_for("closed", DEADLINE);
    assert!(server.log.lines().iter().any(|l| l.contains("that were idle or slow to send a request")));
    eprintln!(
        "slowloris: {answered} real requests answered in {:?} beside 600 hostile connections; shard RSS {before} KiB -> {peak} KiB",
        started.elapsed()
    );
    // Bounded: 100 connection slots, whatever the number of hostile clients.
    assert!(peak < before + 16 * 1024, "RSS grew from {before} KiB to {peak} KiB");
    drop(hostile);
}

#[test]
fn a_client_that_pipelines_and_never_reads_is_bounded_and_disconnected() {
    let redis = TestRedis::start();
    let url = redis.url(0);
    let server = TestServer::start(&["-w", "1", "--redis", &url, "--write-timeout", "1"]);
    server.wait_ready(1);
    let shard = server.shard_pids()[0];
    let before = rss_kib(shard);

    let mut flood = TcpStream::connect(server.addr).unwrap();
    flood.set_nonblocking(true).unwrap();
    let chunk = GET.repeat(1000);
    let (mut sent, mut peak, mut closed, mut normal) = (0usize, before, false, 0usize);
    let deadline = Instant::now() + DEADLINE;
    // Write until the server gives up on us, never reading a response: both socket buffers fill,
    // the server stops reading, and after --write-timeout (1 s here) it closes the connection.
    while Instant::now() < deadline && !closed {
        match flood.write(chunk.as_bytes()) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                peak = peak.max(rss_kib(shard));
                // Meanwhile other clients are served.
                assert_eq!(get_once(server.addr, GET).status, 200);
                normal += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe) => {
                closed = true;
            }
            Err(e) => panic!("flood write: {e}"),
        }
    }
    let counted = redis.cmd(0, &["GET", "hit"]).parse::<usize>().unwrap() - normal;
    eprintln!(
        "pipelining flood: {} requests sent, {counted} answered into unread buffers; shard RSS {before} -> {peak} KiB",
        sent / GET.len()
    );
    assert!(closed, "a client that never reads was not disconnected");
    assert!(counted < sent / GET.len(), "the server stopped reading once its answers went unread");
    assert!(peak < before + 8 * 1024, "RSS grew from {before} KiB to {peak} KiB");
}

#[test]
fn a_stalled_redis_gets_503_at_the_deadline_not_a_hang() {
    let redis = TestRedis::start();
    let url = redis.url(0);
    let server = TestServer::start(&["-w", "1", "--redis", &url, "--redis-timeout", "0.5"]);
    server.wait_ready(1);
    assert_eq!(get_once(server.addr, GET).value(), 1);
    // SAFETY: signalling the redis-server this test started.
    unsafe { libc::kill(redis.pid(), libc::SIGSTOP) };
    let started = Instant::now();
    let r = get_once(server.addr, GET);
    let waited = started.elapsed();
    unsafe { libc::kill(redis.pid(), libc::SIGCONT) };
    assert_eq!((r.status, r.header("Retry-After")), (503, Some("1")));
    assert!(waited < Duration::from_secs(5), "waited {waited:?} on a stalled Redis");
    server.log.wait_for("no reply within", DEADLINE);
    server.log.wait_for("Reconnected to Redis", DEADLINE);
    let v = get_once(server.addr, GET).value();
    // The stalled INCR ran when Redis resumed, so its value is skipped, never handed out twice.
    assert!(v >= 2, "{v}");
}

/// A fake Redis that completes the handshake, then answers every command with `reply`.
fn fake_redis(reply: &'static [u8]) -> (u16, std::sync::mpsc::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let _ = tx.send(());
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                // CLIENT SETNAME, PING and ROLE arrive first, in one write: answer them properly.
                let mut seen = Vec::new();
                while seen.windows(4).filter(|w| w == b"ROLE").count() == 0 {
                    let Ok(n) = conn.read(&mut buf) else { return };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                }
                let _ = conn.write_all(b"+OK\r\n+PONG\r\n*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n");
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(reply).is_err() {
                        break;
                    }
                }
                drop(tx);
            });
        }
    });
    (port, rx)
}

#[test]
fn a_redis_that_answers_garbage_gets_503_and_a_new_connection() {
    for (reply, log) in [
        (&b"?garbage\r\n"[..], "undecodable reply"),
        (b"+OK\r\n", "expected an integer reply"),
        // A value that INCRBY 2 cannot have produced: handing out v-1 would leave i64.
        (b":-9223372036854775808\r\n", "INCRBY 2 answered with"),
    ] {
        let (port, connections) = fake_redis(reply);
        let url = format!("redis://127.0.0.1:{port}/0");
        let server = TestServer::start(&["-w", "1", "--redis", &url]);
        server.wait_ready(1);
        connections.recv_timeout(DEADLINE).unwrap();
        // Two pipelined requests: one INCRBY 2.
        let mut c = Client::connect(server.addr);
        c.send(GET.repeat(2).as_bytes());
        for _ in 0..2 {
            let r = c.read_response(false);
            assert_eq!(r.status, 503, "a reply that cannot be matched to the request is not a value");
        }
        server.log.wait_for(log, DEADLINE);
        // Resynchronised by reconnecting, never by guessing which reply belongs to whom.
        connections.recv_timeout(DEADLINE).expect("hitcore reconnects");
        server.log.wait_for("Reconnected to Redis", DEADLINE);
    }
}

#[test]
fn shards_run_as_the_given_user_while_the_supervisor_keeps_its_own() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: dropping privileges needs root");
        return;
    }
    let redis = TestRedis::start();
    let url = redis.url(0);
    let server = TestServer::start(&["-w", "1", "--redis", &url, "--user", "nobody"]);
    server.wait_ready(1);
    assert_eq!(get_once(server.addr, GET).value(), 1);
    let uid = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("Uid:").map(|u| u.split_whitespace().next().unwrap().to_string()))
            .unwrap()
    };
    assert_eq!(uid(server.pid()), "0");
    assert_eq!(uid(server.shard_pids()[0]), "65534");
}

/// A connection task that panics must leave nothing behind in the shard's registry: before the
/// registry's entries were removed by a guard, the panicked connection's entry stayed, with the
/// oldest wait, and the connection cap's eviction picked it and shut down whatever socket had since
/// reused its descriptor: here the next client's. (Test builds only: the hook panics the shard's
/// second connection.)
#[test]
fn a_panicking_connection_leaves_no_entry_that_harms_the_next_ones() {
    let redis = TestRedis::start();
    let url = redis.url(0);
    let args = ["-w", "1", "--worker-connections", "2", "--evict-after", "0", "--redis", &url];
    let mut server = TestServer::start_with(&args, |cmd| {
        cmd.env("HITCORE_TEST_PANIC_CONNECTION", "2");
    });
    server.wait_ready(1);

    let mut first = Client::connect(server.addr);
    let mut panicking = Client::connect(server.addr);
    server.log.wait_for("connection task panicked", DEADLINE);
    panicking.assert_closed();
    // The first connection is answered after the panic, so it has waited for less time than the
    // panicked connection would have, had its entry been left behind.
    assert_eq!(first.request(GET).value(), 1);
    // The next connection takes the panicked one's descriptor number; at the cap of two, the shard
    // makes room by evicting the longest waiter, which must be the first connection.
    let mut next = Client::connect(server.addr);
    assert_eq!(next.request(GET).value(), 2);
    first.assert_closed();
    assert_eq!(next.request(GET).value(), 3, "the connection after the panic is unharmed");

    drop(next);
    let served = server.stop();
    assert_eq!(served, vec![2 + 1]);
    let stopping = server.log.wait_for("stopping: finishing", DEADLINE);
    assert!(stopping.contains("finishing 0 open connections"), "no stale entry is counted: {stopping}");
}
