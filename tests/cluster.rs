//! hitcore on a Redis Cluster: a seed that does not own the key's slot, the slot migrated to
//! another primary under load (`-ASK` while the key has moved and the slot has not, `-MOVED`
//! after), and a replica promoted with `CLUSTER FAILOVER` under load (with and without
//! `--wait-replicas 1`); `rediss+cluster://` through a seed and a migration. No 500, no value twice.
//!
//! Each test starts its own cluster and hitcore, bounds its load in time, and tears every process
//! down through the guards.

mod common;

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
    let server = TestServer::start(&["-w", "2", "--share-cpus", "--redis", &url, "--redis-tls-ca", &certs.files.ca]);
    server.wait_ready(2);
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
}
