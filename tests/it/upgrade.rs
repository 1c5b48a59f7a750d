//! USR2: the supervisor re-executes the binary on disk with its listeners inherited; the new one
//! starts its shards, the old one hands over once they serve (MAINPID=, the pid file) and drains
//! its own. Under load, with a real Redis: no failed request, the new pid serves, the old pid is
//! gone. A USR2 onto a binary that cannot start leaves the old supervisor serving.

use crate::common;
use crate::install;
use crate::notify_socket;

use std::time::Instant;

use common::*;
use install::{BROKEN, Install};
use notify_socket::NotifySocket;

/// Kills what is left of a process group at the end of a test (the new supervisor is not our
/// child, so no other guard reaches it).
struct Group(i32);

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: the process group the test's server was started in.
        unsafe { libc::killpg(self.0, libc::SIGKILL) };
    }
}

fn wait_for_answers(redis: &TestRedis, n: usize) {
    let counter = || redis.cmd(0, &["GET", "hit"]).parse::<usize>().unwrap_or(0);
    let start = counter();
    wait_until("the load gets answers", DEADLINE, || counter() >= start + n);
}

fn pidfile_path(tag: &str) -> std::path::PathBuf {
    temp_path(&format!("hitcore-test-{tag}"), ".pid")
}

fn read_pid(path: &std::path::Path) -> i32 {
    std::fs::read_to_string(path).unwrap().trim().parse().unwrap()
}

#[test]
fn usr2_replaces_the_supervisor_under_load_without_a_failed_request() {
    let redis = TestRedis::start();
    let notify = NotifySocket::bind();
    let pidfile = pidfile_path("usr2");
    let url = redis.url(0);
    let args = ["-w", "2", "--share-cpus", "--redis", &url, "--pid", pidfile.to_str().unwrap()];
    let mut server = TestServer::start_with(&args, |cmd| {
        cmd.env("NOTIFY_SOCKET", &notify.path);
    });
    let _group = Group(server.pid());
    server.wait_ready(2);
    server.log.wait_for("Ready: 2 shards serving", DEADLINE);
    let old_pid = server.pid();
    let old_shards = server.shard_pids();
    assert_eq!(read_pid(&pidfile), old_pid);
    let load = Load::start(server.addr, 4);
    wait_for_answers(&redis, 200);

    let usr2_at = Instant::now();
    server.signal(libc::SIGUSR2);
    server.log.wait_for("Took over from the old supervisor", DEADLINE);
    assert!(server.wait_exit(DEADLINE).success(), "the old supervisor exits 0 after handing over");
    wait_until("the old shards exit", DEADLINE, || old_shards.iter().all(|&p| !alive(p)));
    let new_pid = read_pid(&pidfile);
    assert_ne!(new_pid, old_pid, "the pid file names the new supervisor");
    assert!(alive(new_pid) && !alive(old_pid));
    let new_shards: Vec<i32> = server.shard_pids().into_iter().filter(|p| !old_shards.contains(p)).collect();
    assert_eq!(new_shards.len(), 2, "{:?}", server.shard_pids());
    wait_for_answers(&redis, 200);
    let outcomes = load.finish();
    let upgraded_at = Instant::now();
    assert!(new_shards.iter().all(|&p| alive(p)), "the new supervisor's shards serve");
    assert_eq!(get_once(server.addr, GET).status, 200);

    let during = tally(outcomes.iter().filter(|(t, _)| *t >= usr2_at && *t <= upgraded_at));
    let all = tally(&outcomes);
    eprintln!("USR2 under load: {} (during the upgrade: {})", all.summary(), during.summary());
    assert!(during.ok > 0);
    assert_eq!(all.non_200 + all.refused, 0, "{}", all.summary());
    assert_eq!(all.failed, Vec::<String>::new(), "failed requests during USR2");
    assert_unique(&all.values);

    // systemd hears the new main pid, then READY=1 from it; the old one never says STOPPING=1.
    let messages = notify.all();
    let main_pid = format!("MAINPID={new_pid}");
    let told = messages.iter().position(|m| m.contains(&main_pid)).expect("MAINPID= sent");
    assert!(messages[told..].iter().any(|m| m.starts_with("READY=1")), "{messages:?}");
    assert!(!messages.iter().any(|m| m.contains("STOPPING=1")), "{messages:?}");

    // SAFETY: the new supervisor this test caused to be started.
    unsafe { libc::kill(new_pid, libc::SIGTERM) };
    wait_until("the new supervisor stops", DEADLINE, || !alive(new_pid));
    wait_until("its shards stop", DEADLINE, || new_shards.iter().all(|&p| !alive(p)));
    wait_until("it removes the pid file", DEADLINE, || !pidfile.exists());
}

#[test]
fn usr2_onto_a_binary_that_cannot_start_keeps_the_old_supervisor() {
    let redis = TestRedis::start();
    let install = Install::new();
    let pidfile = pidfile_path("usr2-broken");
    let url = redis.url(0);
    let args = ["-w", "1", "--redis", &url, "--pid", pidfile.to_str().unwrap()];
    let mut server = TestServer::start_exe(&install.exe, &args, |_| {});
    let _group = Group(server.pid());
    server.wait_ready(1);
    server.log.wait_for("Ready: 1 shards serving", DEADLINE);
    install.replace(BROKEN);
    server.signal(libc::SIGUSR2);
    let line = server.log.wait_for("USR2 failed", DEADLINE);
    assert!(line.contains("[ERROR]") && line.contains("this one carries on"), "{line}");
    server.log.wait_for("broken build: cannot start (exit 3)", DEADLINE);
    assert!(alive(server.pid()));
    assert_eq!(read_pid(&pidfile), server.pid());
    assert_eq!(get_once(server.addr, GET).value(), 1);
    // Once the good binary is back, the next USR2 succeeds.
    install.replace_with_file(env!("CARGO_BIN_EXE_hitcore").as_ref());
    server.signal(libc::SIGUSR2);
    server.log.wait_for("Took over from the old supervisor", DEADLINE);
    assert!(server.wait_exit(DEADLINE).success());
    let new_pid = read_pid(&pidfile);
    assert_eq!(get_once(server.addr, GET).value(), 2);
    // SAFETY: the new supervisor this test caused to be started.
    unsafe { libc::kill(new_pid, libc::SIGTERM) };
    wait_until("the new supervisor stops", DEADLINE, || !alive(new_pid));
}

#[test]
fn usr2_whose_new_shards_cannot_boot_gives_the_pid_file_back() {
    let redis = TestRedis::start();
    let install = Install::new();
    let pidfile = pidfile_path("usr2-noboot");
    let url = redis.url(0);
    // Shards open the access log themselves: once its directory is gone, a new shard cannot boot
    // while the running ones keep their open file. (A too-small locked-memory limit no longer does
    // for this: the new supervisor would refuse to start at once, saying why: src/uring.rs.)
    let logs = install.dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let access = logs.join("access.log");
    let args =
        ["-w", "1", "--redis", &url, "--pid", pidfile.to_str().unwrap(), "--access-logfile", access.to_str().unwrap()];
    let mut server = TestServer::start_exe(&install.exe, &args, |_| {});
    let _group = Group(server.pid());
    server.wait_ready(1);
    server.log.wait_for("Ready: 1 shards serving", DEADLINE);
    // The same hitcore, whose new shards cannot open their access log: the new supervisor starts,
    // takes the pid file, and halts.
    std::fs::remove_dir_all(&logs).unwrap();
    server.signal(libc::SIGUSR2);
    let line = server.log.wait_for("USR2 failed", DEADLINE);
    assert!(
        line.contains("could not start: its shard 0") && line.contains("exited with code 3 before it booted"),
        "{line}"
    );
    // The new supervisor gives up at once, in one ERROR line, and the pid file names the old one again.
    let gave_up = server.log.wait_for("USR2 take-over abandoned", DEADLINE);
    assert!(gave_up.contains("[ERROR]") && gave_up.contains("cannot open the access log"), "{gave_up}");
    wait_until("the pid file names the old supervisor again", DEADLINE, || read_pid(&pidfile) == server.pid());
    assert!(alive(server.pid()));
    assert_eq!(get_once(server.addr, GET).value(), 1);
    server.stop();
    assert!(!pidfile.exists());
}
