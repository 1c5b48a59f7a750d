//! Issue 18's findings, one regression test each, against the real binary and Redis. Shards that
//! die before they boot, or boot slowly, come from the test hook (src/testhook.rs, feature test-hooks:
//! a file read at every shard's start), which acts on every shard started while it says so,
//! whichever supervisor starts it, as a bad binary on disk would.
//!
//! - USR2 onto shards that die before READY: the port keeps answering, the new supervisor gives
//!   up at once, a later USR2 works.
//! - HUP while a USR2 is pending: queued, and the new supervisor serves without a failed request.
//! - A bind a HUP adds is not left listening when the reload's first new shard fails.
//! - An old shard that dies while its replacement boots, the replacement then failing: the index
//!   is restarted, not lost.
//! - After a USR2 whose new supervisor died by a signal, the pid file names the old one again.
//! - Each shard maps only its own heartbeat page, writable.
//! - A USR2 whose new supervisor does not serve within `--upgrade-timeout` is stopped.
//! - The only shard in a crash loop keeps its listener: clients wait for the restart, not refused.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

const BOOT_FILE_ENV: &str = "HITCORE_TEST_BOOT_FILE";

/// A scratch directory with the boot file and a pid file; removed at the end.
struct Scratch {
    dir: PathBuf,
    boot: PathBuf,
    pidfile: PathBuf,
}

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = temp_path(&format!("hitcore-lifecycle-{tag}"), "");
        std::fs::create_dir_all(&dir).unwrap();
        let boot = dir.join("boot");
        std::fs::write(&boot, "").unwrap();
        Scratch { pidfile: dir.join("hitcore.pid"), dir, boot }
    }

    fn boot(&self, how: &str) {
        std::fs::write(&self.boot, how).unwrap();
    }

    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(&self.pidfile).ok()?.trim().parse().ok()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Kills what is left of the server's process group (a supervisor started by USR2 is not our child).
struct Group(i32);

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: the process group the test's server was started in.
        unsafe { libc::killpg(self.0, libc::SIGKILL) };
    }
}

fn kill(pid: i32, sig: i32) {
    // SAFETY: every pid signalled here belongs to the server this test started.
    unsafe { libc::kill(pid, sig) };
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string()
}

/// Live children of `of` (zombies excluded).
fn children(of: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { return false };
            let rest: Vec<&str> =
                stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
            rest.first() != Some(&"Z") && rest.get(1).and_then(|pp| pp.parse::<i32>().ok()) == Some(of)
        })
        .collect()
}

fn start(scratch: &Scratch, redis: &TestRedis, workers: usize, extra: &[&str]) -> (TestServer, Group) {
    let url = redis.url(0);
    let w = workers.to_string();
    let mut args = vec!["-w", &w, "--share-cpus", "--redis", &url, "--pid", scratch.pidfile.to_str().unwrap()];
    args.extend_from_slice(extra);
    let server = TestServer::start_with(&args, |cmd| {
        cmd.env(BOOT_FILE_ENV, &scratch.boot);
    });
    let group = Group(server.pid());
    server.log.wait_for(&format!("Ready: {workers} shards serving"), DEADLINE);
    (server, group)
}

/// Every outcome of a load: all answered 200, values unique.
fn assert_all_answered(what: &str, outcomes: &[(Instant, Outcome)]) {
    let all = tally(outcomes);
    eprintln!("{what}: {}", all.summary());
    assert!(all.ok > 0, "{what}: nothing answered");
    assert_eq!((all.non_200, all.refused), (0, 0), "{what}: {}", all.summary());
    assert_eq!(all.failed, Vec::<String>::new(), "{what}");
    assert_unique(&all.values);
}

fn shard_pid(server: &TestServer, index: usize) -> i32 {
    let needle = format!("(shard {index},");
    let line =
        server.log.lines().into_iter().rev().find(|l| l.contains("Booting worker with pid: ") && l.contains(&needle));
    line.unwrap().split("Booting worker with pid: ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn usr2_onto_shards_that_die_before_ready_keeps_the_port_answering() {
    let redis = TestRedis::start();
    let scratch = Scratch::new("usr2-crash");
    let (mut server, _group) = start(&scratch, &redis, 2, &[]);
    let old = server.pid();
    let load = Load::start(server.addr, 2);
    // A release whose shards are killed (as by the OOM killer) before they boot.
    scratch.boot("kill");
    server.signal(libc::SIGUSR2);
    // The old shards keep serving well past the point where the crash loop used to eject the
    // shared listener (the 6th quick death, about 1.5 s).
    std::thread::sleep(Duration::from_secs(4));
    assert_all_answered("USR2 onto shards that die before READY", &load.finish());
    let gave_up = server.log.wait_for("USR2 take-over abandoned", DEADLINE);
    assert!(gave_up.contains("[ERROR]") && gave_up.contains("was sent SIGKILL before it booted"), "{gave_up}");
    let failed = server.log.wait_for("USR2 failed", DEADLINE);
    assert!(failed.contains("this one carries on"), "{failed}");
    wait_until("the new supervisor exits", DEADLINE, || {
        !children(old).into_iter().any(|p| comm(p) == "hitcore-master")
    });
    assert_eq!(scratch.pid(), Some(old), "the pid file names the old supervisor");

    // A later USR2 with a good release works.
    scratch.boot("");
    server.signal(libc::SIGUSR2);
    server.log.wait_for("Took over from the old supervisor", DEADLINE);
    assert!(server.wait_exit(DEADLINE).success());
    let new = scratch.pid().unwrap();
    assert_ne!(new, old);
    assert_eq!(get_once(server.addr, GET).status, 200);
}

#[test]
fn hup_while_a_usr2_is_pending_is_queued_and_nothing_fails() {
    let redis = TestRedis::start();
    let scratch = Scratch::new("usr2-hup");
    let (mut server, _group) = start(&scratch, &redis, 2, &["--timeout", "10"]);
    let old = server.pid();
    let load = Load::start(server.addr, 4);
    // The new supervisor's shards take 2 s to boot; a HUP (systemctl reload) comes meanwhile, and
    // the replacements it would start boot at once.
    scratch.boot("sleep 2");
    server.signal(libc::SIGUSR2);
    wait_until("the new supervisor's shards are booting", DEADLINE, || {
        let new = children(old).into_iter().find(|&p| comm(p) == "hitcore-master");
        new.is_some_and(|new| children(new).into_iter().filter(|&p| comm(p) == "hitcore").count() == 2)
    });
    scratch.boot("");
    server.signal(libc::SIGHUP);
    server.log.wait_for("Took over from the old supervisor", DEADLINE);
    scratch.boot("");
    assert!(server.wait_exit(DEADLINE).success(), "the old supervisor exits 0 after handing over");
    let new = scratch.pid().unwrap();
    assert_ne!(new, old);
    // The new supervisor's shards keep answering once the old ones are gone.
    std::thread::sleep(Duration::from_secs(3));
    assert_all_answered("HUP while a USR2 is pending", &load.finish());
    // The HUP waited for the upgrade, then went on to the new supervisor, which reloaded.
    let queued = server.log.wait_for("HUP queued", DEADLINE);
    assert!(queued.contains(&format!("[{old}]")), "{queued}");
    server.log.wait_for("Passing the queued HUP to the new supervisor", DEADLINE);
    server.log.wait_for(&format!("[{new}] [INFO] Reload complete"), DEADLINE);
    kill(new, libc::SIGTERM);
    wait_until("the new supervisor stops", DEADLINE, || !alive(new));
}

#[test]
fn a_bind_added_by_hup_is_not_left_listening_when_its_first_shard_fails() {
    let redis = TestRedis::start();
    let scratch = Scratch::new("hup-bind");
    let file = scratch.dir.join("hitcore.toml");
    let added = format!("127.0.0.1:{}", free_port());
    let settings = |binds: &str| format!("workers = 1\nredis = \"{}\"\nbind = [{binds}]\n", redis.url(0));
    std::fs::write(&file, settings("\"127.0.0.1:0\"")).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hitcore"));
    cmd.arg("-c").arg(&file).env(BOOT_FILE_ENV, &scratch.boot);
    let server = TestServer::from_command(cmd, "Ready: 1 shards serving");
    let _group = Group(server.pid());

    std::fs::write(&file, settings(&format!("\"127.0.0.1:0\", \"{added}\""))).unwrap();
    scratch.boot("exit 1");
    server.signal(libc::SIGHUP);
    server.log.wait_for("Reload failed", DEADLINE);
    // Nobody serves the added address: a client is refused at once instead of hanging.
    let outcome = one_request(added.parse().unwrap());
    assert!(matches!(outcome, Outcome::Refused), "{outcome:?}");
    assert_eq!(get_once(server.addr, GET).status, 200, "the first bind still serves");

    // Once a shard serving it boots, it listens.
    scratch.boot("");
    server.signal(libc::SIGHUP);
    server.log.wait_for("Reload complete", DEADLINE);
    assert_eq!(get_once(added.parse().unwrap(), GET).status, 200);
}

#[test]
fn an_index_survives_its_old_shard_dying_while_the_replacement_fails() {
    let redis = TestRedis::start();
    let scratch = Scratch::new("index");
    let (server, _group) = start(&scratch, &redis, 2, &["--timeout", "10"]);
    let sup = server.pid();
    let old0 = shard_pid(&server, 0);
    // The replacement boots slowly: while it does, the old shard 0 crashes, then the replacement
    // fails too.
    scratch.boot("sleep 5");
    server.signal(libc::SIGHUP);
    let mut replacement = 0;
    wait_until("the replacement starts", DEADLINE, || {
        replacement = children(sup).into_iter().find(|&p| comm(p) == "hitcore").unwrap_or(0);
        replacement != 0
    });
    kill(old0, libc::SIGKILL);
    server.log.wait_for(&format!("Worker (pid:{old0}) was sent SIGKILL"), DEADLINE);
    scratch.boot("");
    kill(replacement, libc::SIGKILL);
    wait_until("shard 0 is back: two shards serve", DEADLINE, || {
        children(sup).into_iter().filter(|&p| comm(p).starts_with("hitcore-shard")).count() == 2
    });
    let line = server.log.wait_for("Reload failed", DEADLINE);
    assert!(line.contains("exited meanwhile and is restarted"), "{line}");
    server.log.wait_for_count("Connected to Redis", 3, DEADLINE);
    assert!(
        server
            .log
            .lines()
            .iter()
            .any(|l| l.contains("Booting worker") && l.contains("(shard 0,") && !l.contains(&old0.to_string()))
    );
}

#[test]
fn the_pid_file_names_the_old_supervisor_after_its_successor_is_killed() {
    let redis = TestRedis::start();
    let scratch = Scratch::new("pidfile");
    let (server, _group) = start(&scratch, &redis, 2, &["--timeout", "10"]);
    let old = server.pid();
    let load = Load::start(server.addr, 2);
    scratch.boot("sleep 3");
    server.signal(libc::SIGUSR2);
    let mut new = 0;
    wait_until("the new supervisor runs and has taken the pid file", DEADLINE, || {
        new = children(old).into_iter().find(|&p| comm(p) == "hitcore-master").unwrap_or(0);
        new != 0 && scratch.pid() == Some(new)
    });
    kill(new, libc::SIGKILL);
    server.log.wait_for("USR2 failed", DEADLINE);
    wait_until("the pid file names the old supervisor", DEADLINE, || scratch.pid() == Some(old));
    scratch.boot("");
    // Its shards stopped without taking the shared listeners from the old shards.
    std::thread::sleep(Duration::from_secs(4));
    assert_all_answered("USR2 whose new supervisor was killed", &load.finish());
    assert!(alive(old));
}

/// The heartbeat region's mappings of `pid`: (size in bytes, permissions).
fn heartbeat_maps(pid: i32) -> Vec<(u64, String)> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("memfd:hitcore-heartbeats"))
        .map(|l| {
            let mut parts = l.split_whitespace();
            let (from, to) = parts.next().unwrap().split_once('-').unwrap();
            let size = u64::from_str_radix(to, 16).unwrap() - u64::from_str_radix(from, 16).unwrap();
            (size, parts.next().unwrap().to_string())
        })
        .collect()
}

fn fd_targets(pid: i32) -> Vec<String> {
    let dir = Path::new("/proc").join(pid.to_string()).join("fd");
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok()).map(|p| p.display().to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn each_shard_maps_only_its_own_heartbeat_page_writable() {
    let redis = TestRedis::start();
    let scratch = Scratch::new("heartbeat");
    let (server, _group) = start(&scratch, &redis, 2, &[]);
    server.wait_ready(2);
    for shard in server.shard_pids() {
        let maps = heartbeat_maps(shard);
        assert_eq!(maps, [(4096, "rw-s".to_string())], "shard {shard} maps only its own page");
        assert!(!fd_targets(shard).iter().any(|t| t.contains("hitcore-heartbeats")), "shard {shard} keeps no fd");
    }
    // The supervisor maps all of it, and sees both shards serving.
    let whole = heartbeat_maps(server.pid());
    assert!(whole.iter().any(|(size, perms)| *size > 4 * 1024 * 1024 && perms == "rw-s"), "{whole:?}");
    assert_eq!(get_once(server.addr, GET).status, 200);
}

#[test]
fn a_usr2_that_does_not_serve_within_the_upgrade_timeout_is_stopped() {
    let redis = TestRedis::start();
    let scratch = Scratch::new("deadline");
    let (server, _group) = start(&scratch, &redis, 1, &["--timeout", "20", "--upgrade-timeout", "1"]);
    let old = server.pid();
    let load = Load::start(server.addr, 2);
    // The new supervisor's shard takes 6 s to boot: past the deadline.
    scratch.boot("sleep 6");
    server.signal(libc::SIGUSR2);
    let line = server.log.wait_for("did not serve within", DEADLINE);
    assert!(
        line.contains("[ERROR]") && line.contains("(--upgrade-timeout); stopping it, this one carries on"),
        "{line}"
    );
    scratch.boot("");
    wait_until("the new supervisor is gone and the pid file names the old one", DEADLINE, || {
        scratch.pid() == Some(old) && !children(old).into_iter().any(|p| comm(p) == "hitcore-master")
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_all_answered("USR2 past --upgrade-timeout", &load.finish());
    // A later USR2 with a good release works.
    server.signal(libc::SIGUSR2);
    server.log.wait_for("Took over from the old supervisor", DEADLINE);
}

#[test]
fn the_only_shard_in_a_crash_loop_keeps_its_listener_so_clients_wait_instead_of_being_refused() {
    let redis = TestRedis::start();
    let scratch = Scratch::new("crashloop");
    let (server, _group) = start(&scratch, &redis, 1, &[]);
    // Six quick deaths in a row (as the OOM killer or a poison request would) put the one shard
    // into a crash loop: the sixth restart waits 1.6 s.
    for death in 1..=6 {
        let pid = shard_pid(&server, 0);
        kill(pid, libc::SIGKILL);
        server.log.wait_for(&format!("Worker (pid:{pid}) was sent SIGKILL"), DEADLINE);
        if death < 6 {
            server.log.wait_for_count("Booting worker with pid", death + 1, DEADLINE);
        }
    }
    let line = server.log.wait_for("keeps crashing (6 times in a row)", DEADLINE);
    assert!(line.contains("restarting it in 1.6s"), "{line}");
    // Taking the listener out of the group would refuse every client until the restart (what the
    // fault schedule's long run found); it stays, so a client connects now and is answered once
    // the replacement serves.
    server.log.wait_for("No other shard serves: shard 0's listener stays for its restart", DEADLINE);
    let asked = Instant::now();
    let response = get_once(server.addr, GET);
    assert_eq!(response.status, 200, "answered after the restart, {:?} later", asked.elapsed());
    assert!(!server.log.lines().iter().any(|l| l.contains("accept failed")), "no shard saw its listener shut");
}
