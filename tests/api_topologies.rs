//! The counting API on the Redis topologies beyond one standalone node: behind Sentinel, per-key
//! values are exactly 1..N on the primary the sentinels name, and `/stream` works there too.
//! (Cluster per key is tested once the shard routes API keys by slot.)

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::thread;

use common::topology::*;
use common::*;

#[test]
fn sentinel_counts_every_key_exactly_and_streams() {
    let topo = Sentinels::start(1, 1, true);
    let url = topo.url();
    let server = TestServer::start(&[
        "-w",
        "2",
        "--share-cpus",
        "--redis",
        &url,
        "--sentinel-password",
        SENTINEL_PASSWORD,
        "--api-stream",
    ]);
    server.wait_ready(2);
    let addr = server.addr;

    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(b"GET /stream/sent/key00 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut seen = Vec::new();
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut chunk = [0u8; 1024];
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0);
        seen.extend_from_slice(&chunk[..n]);
    }
    assert!(seen.starts_with(b"HTTP/1.1 200 OK\r\n"), "{}", String::from_utf8_lossy(&seen));

    let handles: Vec<_> = (0..6)
        .map(|t| {
            thread::spawn(move || {
                let mut c = Client::connect(addr);
                let mut got = Vec::new();
                for i in 0..60 {
                    let key = (i * 7 + t) % 20;
                    let batch = format!("GET /hit/sent/key{key:02} HTTP/1.1\r\nHost: t\r\n\r\n").repeat(3);
                    c.send(batch.as_bytes());
                    for _ in 0..3 {
                        let r = c.read_response(false);
                        assert_eq!(r.status, 200, "{r:?}");
                        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                        got.push((key, v["value"].as_i64().unwrap()));
                    }
                }
                got
            })
        })
        .collect();
    let mut by_key: HashMap<usize, Vec<i64>> = HashMap::new();
    for h in handles {
        for (k, v) in h.join().unwrap() {
            by_key.entry(k).or_default().push(v);
        }
    }
    let primary = &topo.data[topo.primary()];
    for (k, mut values) in by_key.clone() {
        values.sort_unstable();
        let n = values.len() as i64;
        assert_eq!(values, (1..=n).collect::<Vec<_>>(), "key{k:02}");
        assert_eq!(primary.counter(&format!("K:sent:key{k:02}")), n);
    }
    // The stream saw key00's values rise to its final count.
    let last = by_key[&0].len();
    let want = format!("data: {{\"value\":{last}}}\n\n");
    while !String::from_utf8_lossy(&seen).contains(&want) {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "stream closed before {want:?}: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&chunk[..n]);
    }
}
