//! The counter's central promise: N requests over many concurrent connections, spread over several
//! shards, get exactly the values 1..=N, each once, and Redis holds N afterwards; with coalescing
//! (one INCRBY per batch) and without (one INCR per request).

use crate::common;

use std::thread;

use common::*;

const KEEP_ALIVE_CLIENTS: usize = 24;
const REQUESTS_PER_CLIENT: usize = 100;
const SHORT_CLIENTS: usize = 8;
const SHORT_REQUESTS: usize = 50;

fn run(extra: &[&str]) {
    let redis = TestRedis::start();
    let url = redis.url(0);
    let mut args = vec!["-w", "2", "--share-cpus", "--redis", &url];
    args.extend_from_slice(extra);
    let mut server = TestServer::start(&args);
    server.wait_ready(2);
    let addr = server.addr;

    let mut handles = Vec::new();
    for _ in 0..KEEP_ALIVE_CLIENTS {
        handles.push(thread::spawn(move || {
            let mut c = Client::connect(addr);
            (0..REQUESTS_PER_CLIENT).map(|_| c.request(GET).value()).collect::<Vec<_>>()
        }));
    }
    for _ in 0..SHORT_CLIENTS {
        // As ab does it: HTTP/1.0, one connection per request.
        handles.push(thread::spawn(move || {
            (0..SHORT_REQUESTS).map(|_| get_once(addr, "GET / HTTP/1.0\r\n\r\n").value()).collect::<Vec<_>>()
        }));
    }
    let mut values: Vec<i64> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let n = (KEEP_ALIVE_CLIENTS * REQUESTS_PER_CLIENT + SHORT_CLIENTS * SHORT_REQUESTS) as i64;
    values.sort_unstable();
    assert_eq!(values, (1..=n).collect::<Vec<_>>(), "every value from 1 to {n}, each exactly once");
    assert_eq!(redis.cmd(0, &["GET", "hit"]), n.to_string());

    let served = server.stop();
    assert_eq!(served.len(), 2, "both shards report at exit");
    assert!(served.iter().all(|&s| s > 0), "both shards served requests: {served:?}");
    assert_eq!(served.iter().sum::<u64>(), n as u64);
}

#[test]
fn values_are_exactly_one_to_n_with_coalescing() {
    run(&[]);
}

#[test]
fn values_are_exactly_one_to_n_without_coalescing() {
    run(&["--no-coalesce"]);
}

#[test]
fn custom_key() {
    let redis = TestRedis::start();
    let server = TestServer::start(&["-w", "1", "--redis", &redis.url(0), "--key", "visits:home"]);
    server.wait_ready(1);
    assert_eq!(get_once(server.addr, GET).value(), 1);
    assert_eq!(redis.cmd(0, &["GET", "visits:home"]), "1");
    assert_eq!(redis.cmd(0, &["EXISTS", "hit"]), "0");
}
