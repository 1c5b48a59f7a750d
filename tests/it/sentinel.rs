//! hitcore behind Redis Sentinel (1 primary, 2 replicas, 3 sentinels that require their own
//! password), under load: a `SENTINEL FAILOVER` and a `kill -9` of the primary are followed to the
//! new primary with no 500, and service resumes. With `--wait-replicas 1` no value is handed out
//! twice and none is above the new primary's counter; without it, what happened (the duplicates
//! the flag exists for) is printed, not failed.
//!
//! `rediss+sentinel://` is followed through a failover too, with certificates made here; a
//! sentinel that stops answering without closing its connections is noticed.
//!
//! Each test starts its own topology and hitcore, bounds its load in time, and tears every process
//! down through the guards.

use crate::common;

use std::time::Duration;

use common::certs::Certs;
use common::failover_load::*;
use common::topology::*;
use common::*;

/// Longest a test's load may run, whatever happens.
const LOAD_LIMIT: Duration = Duration::from_secs(90);

fn start_hitcore(topo: &Sentinels, wait: bool) -> TestServer {
    let url = topo.url();
    let mut args = vec!["-w", "2", "--share-cpus", "--redis", &url, "--sentinel-password", SENTINEL_PASSWORD];
    if wait {
        args.extend(["--wait-replicas", "1", "--wait-timeout", "500"]);
    }
    let server = TestServer::start(&args);
    server.wait_ready(2);
    server
}

/// What to do to the primary.
#[derive(Clone, Copy, Debug)]
enum Action {
    SentinelFailover,
    Kill9,
}

fn failover_under_load(action: Action, wait: bool) {
    let mut topo = Sentinels::start(2, 3, true);
    let server = start_hitcore(&topo, wait);
    for line in server.log.lines() {
        assert!(!line.contains(DATA_PASSWORD) && !line.contains(SENTINEL_PASSWORD), "password in log: {line}");
    }
    let load = TimedLoad::start(server.addr, 4, LOAD_LIMIT);
    load.wait_for_200s(200, DEADLINE);

    let new = match action {
        Action::SentinelFailover => topo.failover(),
        Action::Kill9 => topo.kill_primary(),
    };
    // Both shards move to the new primary (the sentinels announce the end of the failover with
    // +switch-master some seconds after they start naming the new primary), and serve from it.
    let port = format!(":{})", topo.data[new].port);
    poll("both shards connect to the new primary", Duration::from_secs(60), || {
        let n = server.log.lines().iter().filter(|l| l.contains("onnected to Redis") && l.contains(&port)).count();
        if n >= 2 { Ok(()) } else { Err(format!("{n} of 2:\n{}", server.log.lines().join("\n"))) }
    });
    load.wait_for_200s(300, Duration::from_secs(60));
    let started = load.started;
    let outcomes = load.finish();
    // Read after the last answer, so no increment is missed.
    let verdict = Verdict::judge(started, &outcomes, topo.data[new].counter("hit"));
    let flag = if wait { "--wait-replicas 1" } else { "no --wait-replicas" };
    eprintln!("sentinel {action:?}, {flag}: {}", verdict.summary());

    assert!(!verdict.statuses.contains_key(&500), "no 500: {}", verdict.summary());
    assert!(verdict.failed.is_empty(), "every request got an answer: {:?}", verdict.failed);
    if wait {
        assert!(verdict.duplicates.is_empty(), "no value handed out twice: {}", verdict.summary());
        assert!(verdict.above_final.is_empty(), "no 200 value above the new primary's counter: {}", verdict.summary());
    } else if !verdict.duplicates.is_empty() || !verdict.above_final.is_empty() {
        eprintln!(
            "sentinel {action:?} without --wait-replicas: {} values were handed out twice and {} values above the \
             new primary's counter (acknowledged increments the promoted replica never had; --wait-replicas 1 \
             exists for this)",
            verdict.duplicates.len(),
            verdict.above_final.len()
        );
    }
}

#[test]
fn sentinel_failover_under_load_with_wait_replicas() {
    failover_under_load(Action::SentinelFailover, true);
}

#[test]
fn primary_killed_under_load_with_wait_replicas() {
    failover_under_load(Action::Kill9, true);
}

#[test]
fn sentinel_failover_under_load_without_wait_is_recorded() {
    failover_under_load(Action::SentinelFailover, false);
}

#[test]
fn primary_killed_under_load_without_wait_is_recorded() {
    failover_under_load(Action::Kill9, false);
}

#[test]
fn unreachable_sentinels_and_unknown_service_give_503_and_say_why() {
    let topo = Sentinels::start(1, 1, false);
    // The first sentinel listed is not there: it is skipped, the next one answers.
    let dead = free_port();
    let url =
        format!("redis+sentinel://:{DATA_PASSWORD}@127.0.0.1:{dead},127.0.0.1:{}/{SERVICE}", topo.sentinels[0].port);
    let server = TestServer::start(&["-w", "1", "--redis", &url]);
    server.wait_ready(1);
    assert_eq!(get_once(server.addr, GET).value(), 1);

    let url = format!("redis+sentinel://:{DATA_PASSWORD}@127.0.0.1:{}/no-such-service", topo.sentinels[0].port);
    let server = TestServer::start(&["-w", "1", "--redis", &url]);
    server.log.wait_for("no-such-service", DEADLINE);
    let r = get_once(server.addr, GET);
    assert_eq!((r.status, r.header("Retry-After")), (503, Some("1")));
}

/// The sentinels' password reaches hitcore from a file, from systemd's credential or from
/// `HITCORE_SENTINEL_PASSWORD`, and a shard's environment never carries it.
#[test]
fn the_sentinel_password_from_a_file_a_credential_or_the_environment() {
    let topo = Sentinels::start(0, 1, true);
    let url = topo.url();
    let dir = temp_path("hitcore-test-sentinel-pw", "");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sentinel-password");
    std::fs::write(&file, format!("{SENTINEL_PASSWORD}\n")).unwrap();
    let file = file.to_str().unwrap().to_string();
    let serves = |server: &TestServer| {
        server.wait_ready(1);
        assert_eq!(get_once(server.addr, GET).status, 200);
        for pid in server.shard_pids() {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
            let environ = String::from_utf8_lossy(&environ);
            assert!(!environ.contains(SENTINEL_PASSWORD) && !environ.contains(DATA_PASSWORD), "{environ}");
        }
    };
    serves(&TestServer::start(&["-w", "1", "--redis", &url, "--sentinel-password-file", &file]));
    let creds = dir.to_str().unwrap().to_string();
    serves(&TestServer::start_with(&["-w", "1", "--redis", &url], |cmd| {
        cmd.env("CREDENTIALS_DIRECTORY", &creds);
    }));
    serves(&TestServer::start_with(&["-w", "1"], |cmd| {
        cmd.env("HITCORE_REDIS", &url).env("HITCORE_SENTINEL_PASSWORD", SENTINEL_PASSWORD);
    }));
    // Without Sentinel, or together with --sentinel-password, the file is refused.
    for (args, what) in [
        (vec!["--redis", "redis://127.0.0.1/0", "--sentinel-password-file", &file], "only a redis+sentinel://"),
        (vec!["--redis", &url, "--sentinel-password-file", &file, "--sentinel-password", "x"], "cannot be used with"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hitcore"))
            .args(&args)
            .env_remove("REDIS_URL")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("--sentinel-password-file") && stderr.contains(what), "{args:?}: {stderr}");
        assert!(!stderr.contains(SENTINEL_PASSWORD), "{stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A bad Sentinel or Cluster URL, or `--sentinel-password` without Sentinel, is refused at start:
/// exit 2, a message that names the flag and what is wrong, and no password echoed.
#[test]
fn bad_sentinel_and_cluster_urls_exit_2_naming_what_is_wrong() {
    let cases = [
        (vec!["--redis", "redis+sentinel://:hunter2@127.0.0.1:26379"], "missing the service name"),
        (
            vec!["--redis", "redis+sentinel://:hunter2@127.0.0.1:26379,127.0.0.1:x/svc"],
            "bad port in address 2 of the list",
        ),
        (vec!["--redis", "redis+sentinel://:hunter2@/svc"], "no sentinel addresses"),
        (vec!["--redis", "redis+cluster://:hunter2@127.0.0.1:99999"], "bad port in address 1 of the list"),
        (vec!["--redis", "redis+cluster://:hunter2@127.0.0.1:7000/3"], "only database 0"),
        // An unencoded '/' in the password: refused without quoting the pieces (issue 19).
        (vec!["--redis", "redis+cluster://app:Zx9/Qk@10.0.0.1:7000"], "must percent-encode"),
        (vec!["--redis", "redis://127.0.0.1/0", "--sentinel-password", "hunter2"], "--sentinel-password"),
    ];
    for (args, what) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hitcore"))
            .args(&args)
            .env_remove("REDIS_URL")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(what), "{args:?} should say {what:?}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{args:?} echoed the password: {stderr}");
    }
}

/// `rediss+sentinel://`: TLS to the sentinels and to the data nodes they name, verified against
/// a private CA, through a `SENTINEL FAILOVER` under load.
#[test]
fn tls_sentinels_and_data_nodes_through_a_failover() {
    let certs = Certs::make();
    let topo = Sentinels::start_with(2, 3, false, Some(&certs.files));
    let url = topo.tls_url();
    let server = TestServer::start(&["-w", "2", "--share-cpus", "--redis", &url, "--redis-tls-ca", &certs.files.ca]);
    server.wait_ready(2);
    let primary_tls = topo.data[0].announced();
    assert!(
        server
            .log
            .lines()
            .iter()
            .any(|l| l.contains("Connected to Redis at rediss+sentinel://") && l.contains(&format!(":{primary_tls})"))),
        "connected to the primary's TLS port:\n{}",
        server.log.lines().join("\n")
    );
    let load = TimedLoad::start(server.addr, 4, LOAD_LIMIT);
    load.wait_for_200s(100, DEADLINE);
    let new = topo.failover();
    let port = format!(":{})", topo.data[new].announced());
    poll("both shards connect to the new primary over TLS", Duration::from_secs(60), || {
        let n = server.log.lines().iter().filter(|l| l.contains("onnected to Redis") && l.contains(&port)).count();
        if n >= 2 { Ok(()) } else { Err(format!("{n} of 2:\n{}", server.log.lines().join("\n"))) }
    });
    load.wait_for_200s(100, Duration::from_secs(60));
    let started = load.started;
    let outcomes = load.finish();
    let verdict = Verdict::judge(started, &outcomes, topo.data[new].counter("hit"));
    eprintln!("sentinel over TLS, SentinelFailover: {}", verdict.summary());
    assert!(!verdict.statuses.contains_key(&500), "no 500: {}", verdict.summary());
    assert!(verdict.duplicates.is_empty() && verdict.above_final.is_empty(), "{}", verdict.summary());
}

/// A sentinel that vanishes without closing its connections (here: SIGSTOP) is noticed by the
/// PING on each shard's subscription, and subscribed to again once it is back.
#[test]
fn a_sentinel_that_stops_answering_is_noticed() {
    let topo = Sentinels::start(0, 3, true);
    let server = start_hitcore(&topo, false);
    let sentinel = &topo.sentinels[0];
    let lost = format!("Lost the failover subscription to sentinel 127.0.0.1:{}: no answer to PING", sentinel.port);
    // The ids of the pattern subscribers (subscribing is a DEBUG line: ask the sentinel instead),
    // once there are two (one per shard) that are not among `before`.
    let subscribed = |before: &[String]| {
        poll("every shard has subscribed", DEADLINE, || {
            let ids: Vec<String> = sentinel
                .call(&["CLIENT", "LIST"])?
                .text()
                .lines()
                .filter(|l| l.contains(" psub=1 "))
                .filter_map(|l| l.split(' ').next().map(str::to_string))
                .filter(|id| !before.contains(id))
                .collect();
            if ids.len() >= 2 { Ok(ids) } else { Err(format!("{ids:?}")) }
        })
    };
    // Twice: once it is back and subscribed to again, losing it again is worth a WARNING again.
    let mut before = Vec::new();
    for outage in 1..=2 {
        before = subscribed(&before);
        // SAFETY: signalling a redis-server this test started.
        unsafe { libc::kill(sentinel.pid(), libc::SIGSTOP) };
        let lines = server.log.wait_for_count(&lost, 2 * outage, DEADLINE);
        // SAFETY: as above.
        unsafe { libc::kill(sentinel.pid(), libc::SIGCONT) };
        assert!(lines.iter().all(|l| l.contains("WARNING")), "{lines:?}");
    }
    assert_eq!(get_once(server.addr, GET).value(), 1, "the primary was never in doubt");
}
