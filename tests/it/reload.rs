//! Reloads onto a binary that cannot boot, as an upgrade that went wrong would: the supervisor runs
//! a copy of hitcore from a directory of the test's own, the test renames a script that exits 3
//! over it (as a package upgrade replaces a file) and sends HUP under load. The old shards keep
//! serving without a failed request, the supervisor stays up and quotes the script's message, and
//! once the good binary is back the next HUP replaces every shard.

use crate::common;
use crate::install;
use crate::notify_socket;

use std::time::Instant;

use common::*;
use install::{BROKEN, Install};
use notify_socket::NotifySocket;

/// Waits until the load has produced `n` more answers than it had.
fn wait_for_answers(redis: &TestRedis, n: usize) {
    let counter = || redis.cmd(0, &["GET", "hit"]).parse::<usize>().unwrap_or(0);
    let start = counter();
    wait_until("the load gets answers", DEADLINE, || counter() >= start + n);
}

#[test]
fn a_reload_onto_a_binary_that_cannot_boot_keeps_the_old_shards_serving() {
    let redis = TestRedis::start();
    let install = Install::new();
    let url = redis.url(0);
    let notify = NotifySocket::bind();
    let server = TestServer::start_exe(&install.exe, &["-w", "2", "--share-cpus", "--redis", &url], |cmd| {
        cmd.env("NOTIFY_SOCKET", &notify.path);
    });
    server.wait_ready(2);
    let old = server.shard_pids();
    let load = Load::start(server.addr, 4);
    wait_for_answers(&redis, 200);

    install.replace(BROKEN);
    let hup_at = Instant::now();
    server.signal(libc::SIGHUP);
    let line = server.log.wait_for("Reload failed", DEADLINE);
    assert!(line.contains("[ERROR]") && line.contains("broken build: cannot start (exit 3)"), "{line}");
    assert!(line.contains("exited with code 3"), "{line}");
    wait_for_answers(&redis, 200);
    let failed_reload_done = Instant::now();
    assert!(alive(server.pid()), "the supervisor is still up");
    assert!(old.iter().all(|&p| alive(p)), "the old shards still serve");
    assert_eq!(server.log.count("Reload failed"), 1, "one ERROR line");
    assert_eq!(server.log.count("Shutting down"), 0);
    // systemd hears the reload end (READY=1 again: still serving) and why it failed.
    let ready = notify.wait_for("READY=1 after the failed reload", |m| m.contains("last reload failed"));
    assert!(ready.starts_with("READY=1\nSTATUS=2 shards serving"), "{ready:?}");
    assert!(ready.contains("exited with code 3 before it booted: broken build: cannot start (exit 3)"), "{ready:?}");

    install.replace_with_file(env!("CARGO_BIN_EXE_hitcore").as_ref());
    server.signal(libc::SIGHUP);
    server.log.wait_for("Reload complete", DEADLINE);
    wait_until("the old shards exit", DEADLINE, || old.iter().all(|&p| !alive(p)));
    wait_for_answers(&redis, 200);
    let outcomes = load.finish();

    let new: Vec<i32> = server.shard_pids().into_iter().filter(|p| !old.contains(p)).collect();
    assert_eq!(new.len(), 2, "served by new shard pids: old {old:?}, all {:?}", server.shard_pids());
    assert!(new.iter().all(|&p| alive(p)));
    let states = notify.states();
    let kinds: Vec<&str> = states.iter().map(|m| m.lines().next().unwrap()).collect();
    assert_eq!(kinds, ["READY=1", "RELOADING=1", "READY=1", "RELOADING=1", "READY=1"], "{states:?}");
    assert!(!states[4].contains("failed"), "a good reload clears the error: {:?}", states[4]);
    assert_eq!(get_once(server.addr, GET).status, 200);
    let during = tally(outcomes.iter().filter(|(t, _)| *t >= hup_at && *t <= failed_reload_done));
    eprintln!("failed reload under load: {}", during.summary());
    assert!(during.ok > 0);
    assert_eq!(during.failed, Vec::<String>::new(), "failed requests during the failed reload");
    assert_eq!(during.non_200 + during.refused, 0, "{}", during.summary());
    let all = tally(&outcomes);
    eprintln!("whole test (failed reload, then a good one): {}", all.summary());
    assert_eq!(all.non_200 + all.refused, 0, "{}", all.summary());
    assert_unique(&all.values);
}

#[test]
fn ttin_and_crash_restarts_onto_a_binary_that_cannot_boot_never_stop_the_server() {
    let redis = TestRedis::start();
    let install = Install::new();
    let url = redis.url(0);
    let server = TestServer::start_exe(&install.exe, &["-w", "2", "--share-cpus", "--redis", &url], |_| {});
    server.wait_ready(2);
    server.log.wait_for("Ready: 2 shards serving", DEADLINE);
    let shards = server.shard_pids();
    install.replace(BROKEN);

    // TTIN: one ERROR with the reason, no retry.
    server.signal(libc::SIGTTIN);
    let line = server.log.wait_for("TTIN failed", DEADLINE);
    assert!(line.contains("broken build: cannot start (exit 3)"), "{line}");

    // A crash: its restarts cannot boot either; they back off, and the other shard serves.
    // SAFETY: a shard of the server this test started.
    unsafe { libc::kill(shards[0], libc::SIGKILL) };
    let lines = server.log.wait_for_count("before it booted: broken build", 4, DEADLINE);
    assert!(lines[1..].iter().all(|l| l.contains("] [ERROR] Shard ")), "{lines:?}");
    assert!(alive(server.pid()) && alive(shards[1]));
    assert_eq!(server.log.count("Shutting down"), 0);
    assert_eq!(server.log.count("TTIN failed"), 1, "TTIN is not retried");
    for _ in 0..5 {
        assert_eq!(get_once(server.addr, GET).status, 200);
    }

    // The good binary back: the next restart boots.
    install.replace_with_file(env!("CARGO_BIN_EXE_hitcore").as_ref());
    server.wait_ready(3);
    assert_eq!(server.shard_pids().len(), 3);
}
