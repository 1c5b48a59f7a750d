//! The counting API on the Redis topologies beyond one standalone node: behind Sentinel, per-key
//! values are exactly 1..N on the primary the sentinels name, and `/stream` works there too; in a
//! Cluster each key is counted on its slot's owner, through migrations and the loss of a primary.

use crate::common;

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

/// On a Redis Cluster each key goes to the primary that owns its slot: over 40 keys spread on
/// three primaries, hit through two shards, each key's values are 1..N and its owner holds N; a
/// key whose slot then moves follows it, through -ASK and then -MOVED, without a 503.
#[test]
fn cluster_routes_each_key_to_its_slots_owner() {
    use common::cluster::Cluster;
    let cluster = Cluster::start(3, 0);
    let server = TestServer::start(&["-w", "2", "--share-cpus", "--redis", &cluster.url(&[0])]);
    server.wait_ready(2);
    let addr = server.addr;
    let handles: Vec<_> = (0..4)
        .map(|t| {
            thread::spawn(move || {
                let mut c = Client::connect(addr);
                let mut got = Vec::new();
                for i in 0..50 {
                    let key = (i * 3 + t) % 40;
                    let batch = format!("GET /hit/clu/key{key:02} HTTP/1.1\r\nHost: t\r\n\r\n").repeat(2);
                    c.send(batch.as_bytes());
                    for _ in 0..2 {
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
    let mut owners = std::collections::BTreeSet::new();
    for (k, mut values) in by_key {
        values.sort_unstable();
        let n = values.len() as i64;
        assert_eq!(values, (1..=n).collect::<Vec<_>>(), "key{k:02}");
        let name = format!("K:clu:key{k:02}");
        let owner = cluster.owner(cluster.slot(&name), 0);
        owners.insert(owner);
        assert_eq!(cluster.nodes[owner].counter(&name), n, "{name} lives on its slot's owner");
        // Created by a hit on its owner, it got its TTL there (the default 180 days).
        let mut conn = Conn::open(cluster.nodes[owner].port, Some(DATA_PASSWORD)).unwrap();
        let ttl: i64 = conn.call(&["TTL", &name]).unwrap().text().parse().unwrap();
        assert!(ttl > 15_000_000, "{name}: TTL {ttl}");
    }
    assert_eq!(owners.len(), 3, "the keys spread over every primary");

    // Move one key's slot to another primary. While the key has moved and the slot has not, the old
    // owner answers -ASK and the hit is sent again, after ASKING, to the importing node; once the
    // slot has moved, -MOVED sends it to the new owner. No request is lost or counted twice.
    let name = "K:clu:key00";
    let slot = cluster.slot(name);
    let from = cluster.owner(slot, 0);
    let to = (0..3).find(|&i| i != from).unwrap();
    let before = cluster.nodes[from].counter(name);
    let hit = |c: &mut Client| -> i64 {
        let r = c.request("GET /hit/clu/key00 HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(r.status, 200, "{r:?}");
        serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["value"].as_i64().unwrap()
    };
    let mut c = Client::connect(addr);
    cluster.begin_migration(slot, from, to);
    assert_eq!(hit(&mut c), before + 1, "-ASK followed to the importing node");
    let mut asking = Conn::open(cluster.nodes[to].port, Some(DATA_PASSWORD)).unwrap();
    asking.call(&["ASKING"]).unwrap();
    assert_eq!(asking.call(&["GET", name]).unwrap().text(), (before + 1).to_string());
    cluster.finish_migration(slot, to);
    assert_eq!(hit(&mut c), before + 2, "-MOVED followed to the new owner");
    assert_eq!(hit(&mut c), before + 3);
    assert_eq!(cluster.nodes[to].counter(name), before + 3);
    let mut conn = Conn::open(cluster.nodes[to].port, Some(DATA_PASSWORD)).unwrap();
    let ttl: i64 = conn.call(&["TTL", name]).unwrap().text().parse().unwrap();
    assert!(ttl > 15_000_000, "{name} kept its TTL through the move: {ttl}");
}

/// With `cluster-require-full-coverage no` the primaries left serve their slots when one fails with
/// no replica. The API's router must keep routing the keys they own: it once kept only maps that
/// named an owner for the seed counter's slot ("hit"), so losing that one primary answered 503 for
/// every key of the API.
#[test]
fn cluster_keys_on_live_primaries_keep_counting_when_the_seed_keys_primary_is_lost() {
    use common::cluster::Cluster;
    let mut cluster = Cluster::start(3, 0);
    for node in &cluster.nodes {
        node.must(&["CONFIG", "SET", "cluster-require-full-coverage", "no"]);
    }
    let hit_slot = cluster.slot("hit");
    let lost = cluster.owner(hit_slot, 0);
    let live = (0..3).find(|&i| i != lost).unwrap();
    // One key on a primary that stays, one on the primary that goes.
    let owned_by = |want_lost: bool| {
        (0..200)
            .map(|i| format!("k{i:03}"))
            .find(|k| (cluster.owner(cluster.slot(&format!("K:cov:{k}")), live) == lost) == want_lost)
            .unwrap()
    };
    let (stays, goes) = (owned_by(false), owned_by(true));
    let stays_on = cluster.owner(cluster.slot(&format!("K:cov:{stays}")), live);
    let server = TestServer::start(&["-w", "1", "--redis", &cluster.url(&[0, 1, 2])]);
    server.wait_ready(1);
    // A fresh connection each: a 503 closes its connection.
    let hit = |key: &str| get_once(server.addr, &format!("GET /hit/cov/{key} HTTP/1.1\r\nHost: t\r\n\r\n"));
    assert_eq!(hit(&stays).status, 200);
    assert_eq!(hit(&goes).status, 200);

    cluster.nodes[lost].kill9();
    let others: Vec<usize> = (0..3).filter(|&i| i != lost).collect();
    poll("the live primaries flag the lost one as failed", common::DEADLINE, || {
        for &i in &others {
            let nodes = cluster.nodes[i].call(&["CLUSTER", "NODES"])?.text();
            if !nodes.lines().any(|l| l.contains("master,fail ") || l.contains("master,fail,")) {
                return Err(format!("node {i} has not flagged it yet:\n{nodes}"));
            }
        }
        Ok(())
    });
    // The lost key's owner is gone: 503 (and the router learns the map again); the key that stays
    // keeps counting, every time.
    for round in 0..5 {
        let r = hit(&goes);
        assert_eq!(r.status, 503, "round {round}: {}", r.text());
        let r = hit(&stays);
        assert_eq!(r.status, 200, "round {round}: {}", r.text());
        let value: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(value["value"], round + 2, "round {round}");
    }
    assert_eq!(cluster.nodes[stays_on].counter(&format!("K:cov:{stays}")), 6);
}

/// `rediss://`: the API's commands, its per-key coalescing and the `/stream` subscriber all go over
/// TLS verified against a private CA.
#[test]
fn tls_counts_keys_and_streams() {
    let certs = common::certs::Certs::make();
    let tls_port = free_port();
    let redis = TestRedis::start_args(
        Some(PASSWORD),
        &[
            "--tls-port",
            &tls_port.to_string(),
            "--tls-cert-file",
            &certs.files.cert,
            "--tls-key-file",
            &certs.files.key,
            "--tls-ca-cert-file",
            &certs.files.ca,
            "--tls-auth-clients",
            "no",
        ],
    );
    let url = format!("rediss://:{}@127.0.0.1:{tls_port}/0", percent(PASSWORD));
    let server = TestServer::start(&[
        "-w",
        "2",
        "--share-cpus",
        "--redis",
        &url,
        "--redis-tls-ca",
        &certs.files.ca,
        "--api-stream",
    ]);
    server.wait_ready(2);

    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(b"GET /stream/tls/page HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut seen = Vec::new();
    let mut read_until = |needle: &str, seen: &mut Vec<u8>| {
        while !String::from_utf8_lossy(seen).contains(needle) {
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).unwrap();
            assert!(n > 0, "closed before {needle:?}: {}", String::from_utf8_lossy(seen));
            seen.extend_from_slice(&chunk[..n]);
        }
    };
    read_until("\r\n\r\n", &mut seen);
    let mut c = Client::connect(server.addr);
    let batch = "GET /hit/tls/page HTTP/1.1\r\nHost: t\r\n\r\nGET /hit/tls/other HTTP/1.1\r\nHost: t\r\n\r\n".repeat(3);
    c.send(batch.as_bytes());
    let bodies: Vec<String> = (0..6).map(|_| c.read_response(false).text()).collect();
    assert_eq!(bodies.iter().filter(|b| b.as_str() == "{\"value\":3}").count(), 2, "{bodies:?}");
    assert_eq!(redis.cmd(0, &["GET", "K:tls:page"]), "3");
    assert_eq!(redis.cmd(0, &["GET", "K:tls:other"]), "3");
    read_until("data: {\"value\":3}\n\n", &mut seen);
}

/// On a Cluster with a replica per primary, `--wait-replicas 1` holds each key's answers until its
/// primary's replica has the write.
#[test]
fn cluster_wait_replicas_holds_answers_per_key() {
    use common::cluster::Cluster;
    let cluster = Cluster::start(3, 1);
    let url = cluster.url(&[0]);
    let server = TestServer::start(&["-w", "1", "--redis", &url, "--wait-replicas", "1", "--wait-timeout", "500"]);
    server.wait_ready(1);
    let mut c = Client::connect(server.addr);
    for k in 0..12 {
        let r = c.request(&format!("GET /hit/waited/key{k:02} HTTP/1.1\r\nHost: t\r\n\r\n"));
        assert_eq!((r.status, r.text()), (200, "{\"value\":1}".to_string()), "{r:?}");
        let name = format!("K:waited:key{k:02}");
        let owner = cluster.owner(cluster.slot(&name), 0);
        let replica = cluster.replica_of(owner);
        // Acknowledged before the answer: the replica already holds it (READONLY reads it there).
        let mut conn = Conn::open(cluster.nodes[replica].port, Some(DATA_PASSWORD)).unwrap();
        conn.call(&["READONLY"]).unwrap();
        assert_eq!(conn.call(&["GET", &name]).unwrap().text(), "1", "{name} on the replica of its owner");
    }
}
