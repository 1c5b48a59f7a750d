//! hitcore on a Redis Cluster: a seed that does not own the key's slot, the slot migrated to
//! another primary under load (`-ASK` while the key has moved and the slot has not, `-MOVED`
//! after), and a replica promoted with `CLUSTER FAILOVER` under load (with and without
//! `--wait-replicas 1`); a primary killed with `kill -9` under load with `--wait-replicas 1`;
//! `rediss+cluster://` through a seed and a migration. No 500, no value twice. Also: a cluster
//! with a primary down answers 503 (`-CLUSTERDOWN`), and `-ASK` connections are kept, bounded,
//! and send nothing after a refused login.
//!
//! Each test starts its own cluster and hitcore, bounds its load in time, and tears every process
//! down through the guards.

use crate::common;

use std::time::Duration;

use common::certs::Certs;
use common::cluster::*;
use common::failover_load::*;
use common::topology::*;
use common::*;

const LOAD_LIMIT: Duration = Duration::from_secs(90);

fn start_hitcore(url: &str) -> TestServer {
    let server = TestServer::start(&["-w", "2", "--share-cpus", "--redis", url]);
    server.wait_ready(2);
    server
}

/// Stops the load, reads the final counter (after the last answer, so no increment is missed),
/// and judges the run.
fn judge(what: &str, load: TimedLoad, final_counter: impl FnOnce() -> i64) -> Verdict {
    let started = load.started;
    let outcomes = load.finish();
    let verdict = Verdict::judge(started, &outcomes, final_counter());
    eprintln!("cluster {what}: {}", verdict.summary());
    assert!(!verdict.statuses.contains_key(&500), "no 500: {}", verdict.summary());
    assert!(verdict.failed.is_empty(), "every request got an answer: {:?}", verdict.failed);
    assert!(verdict.duplicates.is_empty(), "no value handed out twice: {}", verdict.summary());
    assert!(verdict.above_final.is_empty(), "no value above the final counter: {}", verdict.summary());
    verdict
}

#[test]
fn a_seed_that_does_not_own_the_slot() {
    let cluster = Cluster::start(3, 0);
    let slot = cluster.slot("hit");
    let owner = cluster.owner(slot, 0);
    let seed = (0..3).find(|&i| i != owner).unwrap();
    let server = start_hitcore(&cluster.url(&[seed]));
    assert!(server.log.lines().iter().all(|l| !l.contains(DATA_PASSWORD)), "password in log");
    let mut c = Client::connect(server.addr);
    let values: Vec<i64> = (0..20).map(|_| c.request(GET).value()).collect();
    assert_eq!(values, (1..=20).collect::<Vec<_>>());
    assert_eq!(cluster.nodes[owner].counter("hit"), 20, "the owner of the slot holds the counter");
    assert_eq!(cluster.nodes[seed].must(&["DBSIZE"]).text(), "0", "nothing was written to the seed");
}

#[test]
fn the_slot_migrated_under_load_ask_then_moved() {
    let cluster = Cluster::start(3, 0);
    let slot = cluster.slot("hit");
    let owner = cluster.owner(slot, 0);
    let target = (0..3).find(|&i| i != owner).unwrap();
    let server = start_hitcore(&cluster.url(&[0, 1, 2]));
    let load = TimedLoad::start(server.addr, 4, LOAD_LIMIT);
    load.wait_for_200s(200, DEADLINE);

    // The key moves; the slot stays with the old owner, which now answers -ASK.
    cluster.begin_migration(slot, owner, target);
    load.wait_for_200s(300, DEADLINE);
    // (A key command would be redirected; DBSIZE counts what the node holds.)
    assert_eq!(cluster.nodes[owner].must(&["DBSIZE"]).text(), "0", "the key left the old owner");
    // The importing node serves the key only after ASKING, until the slot is its own.
    let mut asking = Conn::open(cluster.nodes[target].port, Some(DATA_PASSWORD)).unwrap();
    asking.call(&["ASKING"]).unwrap();
    let during_ask: i64 = asking.call(&["GET", "hit"]).unwrap().text().parse().unwrap();
    assert!(during_ask >= 500, "the 300 answers during the migration came from the importing node ({during_ask})");

    // The slot moves too; the old owner now answers -MOVED.
    cluster.finish_migration(slot, target);
    load.wait_for_200s(300, DEADLINE);
    let verdict = judge("slot migration", load, || cluster.nodes[target].counter("hit"));
    assert!(server.log.count("slot moved to") >= 1, "-MOVED was followed:\n{}", server.log.lines().join("\n"));
    assert!(verdict.final_counter > during_ask, "increments went on after MOVED");
    assert_eq!(cluster.nodes[owner].must(&["DBSIZE"]).text(), "0", "nothing recreated the key on the old owner");
}

/// `CLUSTER FAILOVER` on the key owner's replica under load, with or without `--wait-replicas 1`.
fn replica_promoted_under_load(wait: bool) {
    let cluster = Cluster::start(3, 1);
    let slot = cluster.slot("hit");
    let owner = cluster.owner(slot, 0);
    let url = cluster.url(&[owner]);
    let mut args = vec!["-w", "2", "--share-cpus", "--redis", &url];
    if wait {
        args.extend(["--wait-replicas", "1", "--wait-timeout", "500"]);
    }
    let server = TestServer::start(&args);
    server.wait_ready(2);
    let load = TimedLoad::start(server.addr, 4, LOAD_LIMIT);
    load.wait_for_200s(200, DEADLINE);

    let promoted = cluster.failover(owner, slot);
    load.wait_for_200s(300, Duration::from_secs(60));
    let what = if wait {
        "replica promotion (CLUSTER FAILOVER), --wait-replicas 1"
    } else {
        "replica promotion (CLUSTER FAILOVER)"
    };
    judge(what, load, || cluster.nodes[promoted].counter("hit"));
    let port = cluster.nodes[promoted].port.to_string();
    assert!(
        server.log.lines().iter().any(|l| l.contains("onnected to Redis") && l.contains(&port)),
        "the shards moved to the promoted replica:\n{}",
        server.log.lines().join("\n")
    );
}

#[test]
fn a_replica_promoted_with_cluster_failover_under_load() {
    replica_promoted_under_load(false);
}

#[test]
fn a_replica_promoted_with_cluster_failover_under_load_with_wait_replicas() {
    replica_promoted_under_load(true);
}

/// `rediss+cluster://`: TLS to every node (bus, replication and MIGRATE over TLS too), verified
/// against a private CA: a seed that does not own the slot, then the slot migrated under load.
#[test]
fn tls_cluster_seed_and_migration() {
    let certs = Certs::make();
    let cluster = Cluster::start_with(3, 0, Some(&certs.files));
    let slot = cluster.slot("hit");
    let owner = cluster.owner(slot, 0);
    let target = (0..3).find(|&i| i != owner).unwrap();
    let url = cluster.tls_url(&[target]);
    // hitcore's own copy of the CA, spoilt once the shards run: a shard reads it once and every
    // connection (-ASK ones included) shares that configuration, so nothing reads it again.
    let ca = std::path::Path::new(&certs.files.ca).with_file_name("hitcore-ca.pem");
    std::fs::copy(&certs.files.ca, &ca).unwrap();
    let ca = ca.to_str().unwrap();
    let server = TestServer::start(&["-w", "2", "--share-cpus", "--redis", &url, "--redis-tls-ca", ca]);
    server.wait_ready(2);
    std::fs::write(ca, "not a certificate").unwrap();
    let owner_tls = format!(":{})", cluster.nodes[owner].announced());
    assert!(
        server.log.lines().iter().any(|l| l.contains("rediss+cluster://") && l.contains(&owner_tls)),
        "connected to the owner's TLS port:\n{}",
        server.log.lines().join("\n")
    );
    let load = TimedLoad::start(server.addr, 4, LOAD_LIMIT);
    load.wait_for_200s(100, DEADLINE);
    cluster.begin_migration(slot, owner, target);
    load.wait_for_200s(100, DEADLINE);
    cluster.finish_migration(slot, target);
    load.wait_for_200s(100, DEADLINE);
    judge("over TLS, slot migration", load, || cluster.nodes[target].counter("hit"));
    assert!(server.log.count("slot moved to") >= 1, "-MOVED was followed:\n{}", server.log.lines().join("\n"));
    assert_eq!(server.log.count("--redis-tls-ca"), 0, "the CA was not read again:\n{}", server.log.lines().join("\n"));
}

/// `INFO stats`' count of connections a node has accepted (the one asking included).
fn connections_received(node: &Node) -> i64 {
    node.info("stats").unwrap()["total_connections_received"].parse().unwrap()
}

/// The counter on the importing node during a migration (it serves the key only after ASKING).
fn counter_after_asking(port: u16, password: Option<&str>) -> String {
    let mut c = Conn::open(port, password).unwrap();
    c.call(&["ASKING"]).unwrap();
    c.call(&["GET", "hit"]).unwrap().text()
}

#[test]
fn ask_connections_are_kept_and_a_refused_login_sends_nothing() {
    let cluster = Cluster::start(3, 0);
    let slot = cluster.slot("hit");
    let owner = cluster.owner(slot, 0);
    let target = (0..3).find(|&i| i != owner).unwrap();
    let port = cluster.nodes[target].port;
    let server = TestServer::start(&["-w", "1", "--redis", &cluster.url(&[owner])]);
    server.wait_ready(1);
    let mut c = Client::connect(server.addr);
    for v in 1..=3 {
        assert_eq!(c.request(GET).value(), v);
    }
    cluster.begin_migration(slot, owner, target);
    // The importing node stops wanting a password: AUTH with one fails there, and a command
    // written after it would run as the default user. The batch must not be written at all.
    cluster.nodes[target].must(&["CONFIG", "SET", "requirepass", ""]);
    assert_eq!(c.request(GET).status, 503);
    server.log.wait_for("AUTH failed", DEADLINE);
    assert_eq!(counter_after_asking(port, None), "3", "nothing of the batch ran after the refused AUTH");
    Conn::open(port, None).unwrap().call(&["CONFIG", "SET", "requirepass", DATA_PASSWORD]).unwrap();

    // 30 -ASK batches, one connection.
    let before = connections_received(&cluster.nodes[target]);
    for v in 4..=33 {
        assert_eq!(c.request(GET).value(), v);
    }
    let opened = connections_received(&cluster.nodes[target]) - before - 1;
    assert!(opened <= 1, "{opened} connections for 30 -ASK batches");
    assert_eq!(counter_after_asking(port, Some(DATA_PASSWORD)), "33");
    cluster.finish_migration(slot, target);
    assert_eq!(c.request(GET).value(), 34);
}

#[test]
fn a_cluster_with_a_primary_down_answers_503_with_retry_after() {
    let mut cluster = Cluster::start(3, 0);
    let slot = cluster.slot("hit");
    let owner = cluster.owner(slot, 0);
    let other = (0..3).find(|&i| i != owner).unwrap();
    let server = TestServer::start(&["-w", "1", "--redis", &cluster.url(&[owner])]);
    server.wait_ready(1);
    assert_eq!(get_once(server.addr, GET).value(), 1);
    cluster.nodes[other].kill9();
    poll("the key's owner says the cluster is down", Duration::from_secs(30), || {
        let text = cluster.nodes[owner].call(&["CLUSTER", "INFO"])?.text();
        if text.contains("cluster_state:fail") { Ok(()) } else { Err(text) }
    });
    let r = get_once(server.addr, GET);
    assert_eq!((r.status, r.header("Retry-After")), (503, Some("1")), "{}", r.text());
    let line = server.log.wait_for("CLUSTERDOWN", DEADLINE);
    assert!(line.contains("WARNING") && line.contains("the cluster is down"), "{line}");
    let r = get_once(server.addr, GET);
    assert_eq!(r.status, 503, "the connection stays and answers the same: {}", r.text());
}

/// `kill -9` of the key's primary (it has two replicas) under load with `--wait-replicas 1`: the
/// cluster promotes a replica by itself, the other replica follows it, and the shards follow.
#[test]
fn a_primary_killed_under_load_with_wait_replicas_fails_over_automatically() {
    let mut cluster = Cluster::start(3, 2);
    let slot = cluster.slot("hit");
    let owner = cluster.owner(slot, 0);
    let owner_port = cluster.nodes[owner].port.to_string();
    let replicas: Vec<usize> = (0..cluster.nodes.len())
        .filter(|&j| cluster.nodes[j].info("replication").unwrap().get("master_port") == Some(&owner_port))
        .collect();
    assert_eq!(replicas.len(), 2, "the key's primary has two replicas");
    let seeds: Vec<usize> = (0..cluster.nodes.len()).collect();
    let url = cluster.url(&seeds);
    let args = ["-w", "2", "--share-cpus", "--redis", &url, "--wait-replicas", "1", "--wait-timeout", "500"];
    let server = TestServer::start(&args);
    server.wait_ready(2);
    let load = TimedLoad::start(server.addr, 4, LOAD_LIMIT);
    load.wait_for_200s(200, DEADLINE);

    cluster.nodes[owner].kill9();
    let promoted = poll("a replica is promoted and every live node names it", Duration::from_secs(60), || {
        for &r in &replicas {
            if cluster.nodes[r].info("replication")?["role"] != "master" {
                continue;
            }
            for i in (0..cluster.nodes.len()).filter(|&i| !cluster.nodes[i].is_dead()) {
                if cluster.owner_seen(slot, i)? != r {
                    return Err(format!("node {i} does not name {r} yet"));
                }
            }
            return Ok(r);
        }
        Err("no replica promoted yet".into())
    });
    load.wait_for_200s(300, Duration::from_secs(60));
    judge("automatic failover (kill -9 of the key's primary), --wait-replicas 1", load, || {
        cluster.nodes[promoted].counter("hit")
    });
}
