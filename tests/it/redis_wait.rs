//! `--wait-replicas`: each batch's INCRBY is followed by one WAIT; 200 only when enough replicas
//! acknowledged. A real primary and replica: served while the replica is up, 503 (and a
//! rate-limited WARNING) while it is stopped, served again when it resumes.

use crate::common;

use std::process::Command;
use std::time::Instant;

use common::*;

fn replica_of(primary: &TestRedis) -> TestRedis {
    let replica = TestRedis::start_args(
        Some(PASSWORD),
        &["--replicaof", "127.0.0.1", &primary.port.to_string(), "--masterauth", PASSWORD],
    );
    wait_until("the replica's link is up", DEADLINE, || {
        replica.cmd(0, &["INFO", "replication"]).contains("master_link_status:up")
    });
    replica
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: signalling a redis-server this test started.
    unsafe { libc::kill(pid, sig) };
}

#[test]
fn a_batch_is_served_only_when_the_replica_acknowledged_it() {
    let primary = TestRedis::start();
    let replica = replica_of(&primary);
    let server = TestServer::start(&["-w", "1", "--redis", &primary.url(0), "--wait-replicas", "1"]);
    server.wait_ready(1);
    let mut c = Client::connect(server.addr);
    c.send(GET.repeat(5).as_bytes());
    let values: Vec<i64> = (0..5).map(|_| c.read_response(false).value()).collect();
    assert_eq!(values, [1, 2, 3, 4, 5]);
    wait_until("the replica has the counter", DEADLINE, || replica.cmd(0, &["GET", "hit"]) == "5");

    // A stopped replica acknowledges nothing: every batch waits --wait-timeout and gets 503.
    signal(replica.pid(), libc::SIGSTOP);
    for _ in 0..3 {
        let r = c.request(GET);
        assert_eq!((r.status, r.header("Retry-After")), (503, Some("1")), "{r:?}");
    }
    let warning = server.log.wait_for("Only 0 of 1 replicas acknowledged", DEADLINE);
    assert!(warning.contains("[WARNING]") && warning.contains("50 ms"), "{warning}");
    // The increments ran on the primary (WAIT does not undo them); they were not handed out.
    let counter: i64 = primary.cmd(0, &["GET", "hit"]).parse().unwrap();
    assert!(counter > 5, "counter {counter}");

    signal(replica.pid(), libc::SIGCONT);
    let mut next = None;
    wait_until("200s once the replica is back", DEADLINE, || {
        let r = get_once(server.addr, GET);
        assert_ne!(r.status, 500, "{r:?}");
        next = (r.status == 200).then(|| r.value());
        next.is_some()
    });
    assert!(next.unwrap() > counter, "no value handed out twice: {next:?} after {counter}");
}

#[test]
fn more_replicas_than_there_are_is_503_and_no_coalesce_waits_once_per_write() {
    let primary = TestRedis::start();
    let _replica = replica_of(&primary);
    let server = TestServer::start(&["-w", "1", "--redis", &primary.url(0), "--wait-replicas", "2"]);
    server.wait_ready(1);
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(get_once(server.addr, GET).status, 503);
    }
    // Rate-limited: one line a second at most, however many batches fell short. The log is read
    // from the server's stderr by another thread: wait for the first line rather than race it.
    server.log.wait_for("Only 1 of 2 replicas acknowledged", DEADLINE);
    let lines = server.log.count("Only 1 of 2 replicas acknowledged");
    assert!(lines >= 1 && lines as u64 <= started.elapsed().as_secs() + 1, "{lines} warnings");
    // Each shortfall looks the primary up again, quietly: no line per reconnect.
    assert_eq!(server.log.count("Reconnected to Redis"), 0);
    assert_eq!(server.log.count("[ERROR]"), 0);

    let server = TestServer::start(&[
        "-w",
        "1",
        "--redis",
        &primary.url(0),
        "--wait-replicas",
        "1",
        "--wait-timeout",
        "500",
        "--no-coalesce",
    ]);
    server.wait_ready(1);
    let before: i64 = primary.cmd(0, &["GET", "hit"]).parse().unwrap();
    let mut c = Client::connect(server.addr);
    c.send(GET.repeat(4).as_bytes());
    let values: Vec<i64> = (0..4).map(|_| c.read_response(false).value()).collect();
    assert_eq!(values, (before + 1..=before + 4).collect::<Vec<_>>());
}

#[test]
fn wait_flags_are_checked_at_start() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_hitcore")).args(args).env_remove("REDIS_URL").output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, stderr) = run(&["--wait-replicas", "1", "--wait-timeout", "0"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--wait-timeout"), "{stderr}");
    let (code, stderr) = run(&["--wait-replicas", "1", "--wait-timeout", "1000", "--redis-timeout", "1"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--wait-timeout") && stderr.contains("--redis-timeout"), "{stderr}");
    let (code, stderr) = run(&["--wait-replicas", "-1"]);
    assert_eq!(code, Some(2), "{stderr}");
}
