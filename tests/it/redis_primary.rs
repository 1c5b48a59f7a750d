//! Following a single primary with real redis-server processes: pointed at a replica, hitcore
//! answers 503 (never 500) until the replica is promoted; a primary demoted under load costs 503s
//! (READONLY, then ROLE) and no 500, and no value is handed out twice once it is promoted again.

use crate::common;

use std::time::{Duration, Instant};

use common::*;

/// A replica of `primary`, with the same password, once its link is up.
fn replica_of(primary: &TestRedis) -> TestRedis {
    let replica = TestRedis::start_args(
        Some(PASSWORD),
        &["--replicaof", "127.0.0.1", &primary.port.to_string(), "--masterauth", PASSWORD],
    );
    wait_link_up(&replica);
    replica
}

fn wait_link_up(replica: &TestRedis) {
    wait_until("the replica's link to its primary is up", DEADLINE, || {
        replica.cmd(0, &["INFO", "replication"]).contains("master_link_status:up")
    });
}

fn info_field(redis: &TestRedis, field: &str) -> String {
    let info = redis.cmd(0, &["INFO", "replication"]);
    info.lines().find_map(|l| l.strip_prefix(&format!("{field}:"))).unwrap_or_default().trim().to_string()
}

fn statuses(outcomes: &[(Instant, Outcome)]) -> Vec<u16> {
    outcomes
        .iter()
        .filter_map(|(_, o)| if let Outcome::Answered { status, .. } = o { Some(*status) } else { None })
        .collect()
}

#[test]
fn pointed_at_a_replica_it_answers_503_until_the_replica_is_promoted() {
    let primary = TestRedis::start();
    let replica = replica_of(&primary);
    let server = TestServer::start(&["-w", "1", "--redis", &replica.url(0)]);
    let line = server.log.wait_for("is not a primary (ROLE: slave)", DEADLINE);
    assert!(line.contains("[ERROR]") && line.contains(&format!("127.0.0.1:{}", replica.port)), "{line}");
    for _ in 0..5 {
        let r = get_once(server.addr, GET);
        assert_eq!((r.status, r.header("Retry-After")), (503, Some("1")), "{r:?}");
    }
    assert_eq!(primary.cmd(0, &["GET", "hit"]), "(nil)", "nothing was written anywhere");

    let promoted = Instant::now();
    assert_eq!(replica.cmd(0, &["REPLICAOF", "NO", "ONE"]), "OK");
    let mut first = None;
    wait_until("hitcore serves from the promoted replica", DEADLINE, || {
        let r = get_once(server.addr, GET);
        assert_ne!(r.status, 500, "{r:?}");
        first = (r.status == 200).then(|| r.value());
        first.is_some()
    });
    println!("served again {:.2}s after REPLICAOF NO ONE", promoted.elapsed().as_secs_f64());
    assert_eq!(first, Some(1));
    server.log.wait_for("Reconnected to Redis", DEADLINE);
}

#[test]
fn a_primary_demoted_under_load_costs_503s_never_500s_and_no_value_twice() {
    // The primary knows the password for when it is made a replica itself.
    let a = TestRedis::start_args(Some(PASSWORD), &["--masterauth", PASSWORD]);
    let b = replica_of(&a);
    // A long --redis-timeout, so the paused INCRs below are answered by READONLY, not the deadline.
    let server = TestServer::start(&["-w", "1", "--redis", &a.url(0), "--redis-timeout", "30"]);
    server.wait_ready(1);
    let load = Load::start(server.addr, 4);
    wait_until("some 200s", DEADLINE, || a.cmd(0, &["GET", "hit"]).parse::<i64>().unwrap_or(0) > 50);

    // A managed switch-over: stop writes on A, let B catch up, promote B, make A its replica.
    assert_eq!(a.cmd(0, &["CLIENT", "PAUSE", "20000", "WRITE"]), "OK");
    wait_until("B has every write of A", DEADLINE, || {
        info_field(&a, "master_repl_offset") == info_field(&b, "master_repl_offset")
    });
    assert_eq!(b.cmd(0, &["REPLICAOF", "NO", "ONE"]), "OK");
    assert_eq!(a.cmd(0, &["REPLICAOF", "127.0.0.1", &b.port.to_string()]), "OK");
    assert_eq!(a.cmd(0, &["CLIENT", "UNPAUSE"]), "OK");
    let line = server.log.wait_for("refused a write: READONLY", DEADLINE);
    assert!(line.contains("[WARNING]"), "a try-again reply (docs/redis.md's error table): {line}");
    server.log.wait_for("is not a primary (ROLE: slave)", DEADLINE);
    wait_link_up(&a);
    let demoted_at = Instant::now();
    // Requests keep coming while A is a replica: every one is refused with 503.
    wait_until("503s while A is a replica", DEADLINE, || demoted_at.elapsed() > Duration::from_millis(500));

    // A is promoted back (as a DNS name would move back): service resumes.
    assert_eq!(a.cmd(0, &["REPLICAOF", "NO", "ONE"]), "OK");
    assert_eq!(b.cmd(0, &["REPLICAOF", "127.0.0.1", &a.port.to_string()]), "OK");
    server.log.wait_for("Reconnected to Redis", DEADLINE);
    let resumed = Instant::now();
    wait_until("200s after the promotion", DEADLINE, || resumed.elapsed() > Duration::from_millis(500));
    let outcomes = load.finish();
    let t = tally(&outcomes);
    println!("demotion under load: {}", t.summary());
    let statuses = statuses(&outcomes);
    assert!(!statuses.contains(&500), "a 500 was answered");
    assert!(statuses.contains(&503), "the demotion was seen");
    assert!(t.failed.is_empty(), "{:?}", t.failed);
    let after: Vec<_> = outcomes.iter().filter(|(at, _)| *at > resumed).collect();
    assert!(tally(after).ok > 0, "200s after the promotion");
    assert_unique(&t.values);
    let counter: i64 = a.cmd(0, &["GET", "hit"]).parse().unwrap();
    assert!(t.values.iter().all(|&v| v <= counter), "a value above the counter {counter}");
}
