//! The topology harness itself, against raw Redis (no hitcore): a sentinel topology forms and
//! fails over, and a cluster answers `-MOVED` from a non-owner, `-ASK` mid-migration and `-MOVED`
//! after it, and promotes a replica with `CLUSTER FAILOVER`. These are the facts hitcore's Sentinel
//! and Cluster support is built on; if a Redis upgrade changes one, this file says which.

use crate::common;

use common::cluster::*;
use common::topology::*;

#[test]
fn sentinels_form_and_fail_over() {
    let topo = Sentinels::start(2, 3, true);
    assert_eq!(topo.primary(), 0);
    // A sentinel with requirepass refuses a client that has not logged in.
    let refused = call(topo.sentinels[0].port, None, &["SENTINEL", "get-master-addr-by-name", SERVICE]).unwrap();
    assert!(matches!(&refused, V::Error(e) if e.starts_with("NOAUTH")), "{refused:?}");
    topo.data[0].must(&["SET", "before", "1"]);
    let mut sub = Conn::open(topo.sentinels[0].port, Some(SENTINEL_PASSWORD)).unwrap();
    sub.send(&["SUBSCRIBE", "+switch-master"]).unwrap();
    assert_eq!(sub.read().unwrap().items()[0].text(), "subscribe");
    let new = topo.failover();
    // +switch-master comes when the failover ends, after the sentinels already name the new primary.
    let event = sub.read().unwrap().items();
    let new_port = topo.data[new].port;
    assert_eq!(event[1].text(), "+switch-master");
    assert!(event[2].text().ends_with(&format!(" 127.0.0.1:{new_port}").replace(':', " ")), "{event:?}");
    assert_ne!(new, 0);
    assert_eq!(topo.data[new].must(&["GET", "before"]).text(), "1", "the promoted replica had the data");
}

#[test]
fn cluster_redirects_moved_then_ask_then_moved_and_fails_over() {
    let cluster = Cluster::start(3, 1);
    let slot = cluster.slot("hit");
    let owner = cluster.owner(slot, 0);
    let other = cluster.primaries().into_iter().find(|&i| i != owner).unwrap();
    cluster.nodes[owner].must(&["INCRBY", "hit", "5"]);

    let moved = cluster.nodes[other].call(&["INCRBY", "hit", "1"]).unwrap();
    let expect = format!("MOVED {slot} 127.0.0.1:{}", cluster.nodes[owner].port);
    assert_eq!(moved, V::Error(expect));

    cluster.begin_migration(slot, owner, other);
    let ask = cluster.nodes[owner].call(&["INCRBY", "hit", "1"]).unwrap();
    assert_eq!(ask, V::Error(format!("ASK {slot} 127.0.0.1:{}", cluster.nodes[other].port)));
    // Without ASKING the importing node redirects back to the owner; with it, it executes.
    let back = cluster.nodes[other].call(&["INCRBY", "hit", "1"]).unwrap();
    assert!(matches!(&back, V::Error(e) if e.starts_with("MOVED")), "{back:?}");
    let mut conn = Conn::open(cluster.nodes[other].port, Some(DATA_PASSWORD)).unwrap();
    assert_eq!(conn.call(&["ASKING"]).unwrap(), V::Status("OK".into()));
    assert_eq!(conn.call(&["INCRBY", "hit", "1"]).unwrap(), V::Int(6));

    cluster.finish_migration(slot, other);
    let moved = cluster.nodes[owner].call(&["INCRBY", "hit", "1"]).unwrap();
    assert_eq!(moved, V::Error(format!("MOVED {slot} 127.0.0.1:{}", cluster.nodes[other].port)));

    let promoted = cluster.failover(other, slot);
    assert_eq!(cluster.nodes[promoted].counter("hit"), 6);
    let moved = cluster.nodes[other].call(&["INCRBY", "hit", "1"]).unwrap();
    assert_eq!(moved, V::Error(format!("MOVED {slot} 127.0.0.1:{}", cluster.nodes[promoted].port)));
}

/// A node whose process dies under a test says so, with the signal and its last log lines, instead
/// of a bare "connection refused" (what a CI failure once left to go on).
#[test]
fn a_node_that_died_says_how_when_it_refuses() {
    let node = Node::start("died", Some(DATA_PASSWORD), common::free_port, "Ready to accept connections", data_args);
    node.must(&["PING"]);
    // SAFETY: the redis-server this test started, unreaped until `node` is dropped.
    unsafe { libc::kill(node.pid(), libc::SIGKILL) };
    let why = poll("the node refuses connections", common::DEADLINE, || match node.call(&["PING"]) {
        Err(e) if e.starts_with("connect") => Ok(e),
        other => Err(format!("not refused yet: {other:?}")),
    });
    assert!(why.contains("Connection refused") && why.contains("has exited (signal 9)"), "{why}");
    assert!(why.contains("Ready to accept connections"), "the last log lines come with it: {why}");
}

/// Every scratch name a test run hands out is its own, however many threads ask at once. Names
/// once ended in a `free_port()`, which the kernel hands out again once released: two live
/// cluster nodes shared a directory, the first test to end deleted it, and the other node died
/// at its next config save (CI, twice). 4 × 5,000 names would repeat a port many times over
/// (about 28,000 ephemeral ports); here none may repeat, and a node's directory outlives the
/// drop of another node with the same tag.
#[test]
fn scratch_names_never_repeat_and_a_node_keeps_its_directory() {
    let names: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(|| (0..5_000).map(|_| common::temp_path("hitcore-name", "")).collect::<Vec<_>>()))
        .flat_map(|t| t.join().unwrap())
        .collect();
    let distinct: std::collections::HashSet<_> = names.iter().collect();
    assert_eq!(distinct.len(), names.len(), "a scratch name was handed out twice");

    let start =
        || Node::start("shared-tag", Some(DATA_PASSWORD), common::free_port, "Ready to accept connections", data_args);
    let (kept, dropped) = (start(), start());
    assert_ne!(kept.dir, dropped.dir);
    drop(dropped);
    assert_eq!(kept.must(&["SAVE"]), V::Status("OK".into()), "the kept node can still write in its directory");
    assert!(kept.dir.join("dump.rdb").is_file());
}
