//! The supervisor → shard hand-off across releases: the current binary, run as a shard with the
//! exact hand-off the previous release's supervisor sends (tests/fixtures/handoff-e5955ed.json, read
//! from a running shard of commit e5955ed), boots and serves; a hand-off it cannot understand is
//! refused with its reason in the error log and the boot-error status.

use crate::common;

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use std::sync::atomic::Ordering;

use common::*;
use hitcore::heartbeat::state;

const PREVIOUS_RELEASE: &str = include_str!("../fixtures/handoff-e5955ed.json");

/// Runs the binary as a shard with `handoff` in HITCORE_SHARD and `listen` and `heartbeats` as fds
/// 3 and 4 (the numbers the fixture names).
fn shard_command(handoff: &str, listen: RawFd, heartbeats: RawFd) -> Command {
    shard_command_with(handoff, listen, heartbeats, None)
}

/// [`shard_command`], with `spec` (a memfd holding the spec) as fd 5 for a hand-off that names it.
fn shard_command_with(handoff: &str, listen: RawFd, heartbeats: RawFd, spec: Option<RawFd>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hitcore"));
    cmd.env("HITCORE_SHARD", handoff).env_remove("REDIS_URL").stdin(Stdio::null()).process_group(0);
    // SAFETY: only fcntl and dup2, both async-signal-safe, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Out of the way first, so that placing one cannot close another.
            let mut fds = vec![listen, heartbeats];
            fds.extend(spec);
            let high: Vec<RawFd> = fds.iter().map(|&fd| libc::fcntl(fd, libc::F_DUPFD, 100)).collect();
            for (from, to) in high.into_iter().zip([3, 4, 5]) {
                if from < 0 || libc::dup2(from, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd
}

/// How the hand-off reaches the shard.
#[derive(Debug, Clone, Copy)]
enum Transport {
    /// The JSON itself in HITCORE_SHARD, as the previous release's supervisor sends it.
    Environment,
    /// A sealed memfd named by HITCORE_SHARD, as this release's supervisor sends it.
    Memfd,
}

#[test]
fn the_current_shard_serves_from_the_previous_release_hand_off() {
    let redis = TestRedis::start_with(None);
    let heartbeats = hitcore::heartbeat::Heartbeats::create().unwrap();
    // The same spec both ways: as the previous release's supervisor sent it (HUP onto this binary
    // under an old supervisor), and the way this release's supervisor sends it.
    for (round, transport) in [Transport::Environment, Transport::Memfd].into_iter().enumerate() {
        // A listener of its own: a shard that stops shuts its listener down.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        // Only what points at this test's own processes changes: Redis's port and the bound address.
        let mut handoff: serde_json::Value = serde_json::from_str(PREVIOUS_RELEASE).unwrap();
        handoff["config"]["redis"]["endpoint"]["Tcp"]["addr"] = format!("127.0.0.1:{}", redis.port).into();
        handoff["config"]["bind"] = addr.to_string().into();
        assert!(handoff.get("version").is_none() && handoff["config"].get("evict_after").is_none());
        let sealed;
        let child = match transport {
            Transport::Environment => shard_command(&handoff.to_string(), listener.as_raw_fd(), heartbeats.fd()),
            Transport::Memfd => {
                let spec = hitcore::handoff::decode(&handoff.to_string()).unwrap();
                sealed = hitcore::handoff::seal(&spec).unwrap();
                assert!(!sealed.env.contains("config"), "only the descriptor: {}", sealed.env);
                let envelope = format!(r#"{{"version":{},"spec_fd":5}}"#, hitcore::handoff::VERSION);
                let fd = Some(sealed.fd.as_raw_fd());
                shard_command_with(&envelope, listener.as_raw_fd(), heartbeats.fd(), fd)
            }
        }
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        let pid = child.id() as i32;
        // The listener queues the connections until the shard accepts them: no wait for start-up needed.
        let answers: Vec<Outcome> = (0..3).map(|_| one_request(addr)).collect();
        // SAFETY: the shard this test spawned.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let out = child.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        for (i, a) in answers.iter().enumerate() {
            let want = (round * 3 + i) as i64 + 1;
            assert!(
                matches!(a, Outcome::Answered { status: 200, value: Some(v) } if *v == want),
                "{transport:?}, request {i}: {a:?}; shard log:\n{log}"
            );
        }
        assert!(out.status.success(), "{transport:?}: {:?}; shard log:\n{log}", out.status);
        assert!(log.contains("Booting worker with pid") && log.contains("Worker exiting"), "{log}");
    }
    assert_eq!(redis.cmd(0, &["GET", "hit"]), "6");
    // Each wrote its own page of this release's region, where the supervisor reads it.
    let slot = heartbeats.slot(0);
    assert_eq!(slot.state.load(Ordering::Acquire), state::BOOTED);
    assert_eq!(slot.requests.load(Ordering::Relaxed), 3);
}

/// The previous release's supervisor made a region of its slots and metrics blocks only: the
/// current shard (a rollback's HUP, or an upgrade's first HUP) maps it whole and writes its slot
/// where that supervisor reads it.
#[test]
fn the_current_shard_writes_the_previous_release_region_layout() {
    let redis = TestRedis::start_with(None);
    let created = hitcore::heartbeat::Heartbeats::create().unwrap();
    const PREVIOUS_REGION: i64 = 1024 * 64 + 1024 * 128 * 8;
    // SAFETY: ftruncate of the memfd this test created; its pages beyond are not touched again.
    assert_eq!(unsafe { libc::ftruncate(created.fd(), PREVIOUS_REGION) }, 0);
    // SAFETY: a fresh descriptor of the same memfd, owned by the mapping made from it.
    let previous = unsafe { hitcore::heartbeat::Heartbeats::attach(libc::dup(created.fd())) }.unwrap();
    assert!(!previous.paged());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut handoff: serde_json::Value = serde_json::from_str(PREVIOUS_RELEASE).unwrap();
    handoff["config"]["redis"]["endpoint"]["Tcp"]["addr"] = format!("127.0.0.1:{}", redis.port).into();
    handoff["config"]["bind"] = addr.to_string().into();
    let child = shard_command(&handoff.to_string(), listener.as_raw_fd(), previous.fd())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let answers: Vec<Outcome> = (0..3).map(|_| one_request(addr)).collect();
    // SAFETY: the shard this test spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(answers.iter().all(|a| matches!(a, Outcome::Answered { status: 200, .. })), "{answers:?}\n{log}");
    assert!(out.status.success(), "{:?}\n{log}", out.status);
    let slot = previous.slot(0);
    assert_eq!(slot.state.load(Ordering::Acquire), state::BOOTED);
    assert_eq!(slot.requests.load(Ordering::Relaxed), 3);
}

#[test]
fn a_hand_off_from_a_newer_release_is_refused_in_the_error_log() {
    let dir = temp_path("hitcore-test-handoff", "");
    std::fs::create_dir_all(&dir).unwrap();
    let error_log = dir.join("error.log");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let heartbeats = hitcore::heartbeat::Heartbeats::create().unwrap();
    let mut handoff: serde_json::Value = serde_json::from_str(PREVIOUS_RELEASE).unwrap();
    handoff["version"] = 99.into();
    handoff["config"]["error_log"] = serde_json::json!({ "File": error_log });
    let out = shard_command(&handoff.to_string(), listener.as_raw_fd(), heartbeats.fd()).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "the boot-error status");
    let logged = std::fs::read_to_string(&error_log).unwrap_or_default();
    assert!(
        logged.contains("[ERROR] Worker failed to boot: the supervisor's hand-off (HITCORE_SHARD) has version 99"),
        "error log: {logged:?}, stderr: {:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Not JSON at all: nothing names an error log, so the reason goes to stderr.
    let out = shard_command("{not json", listener.as_raw_fd(), heartbeats.fd()).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("[ERROR] Worker failed to boot: cannot read the supervisor's hand-off"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A shard named a descriptor that is not open refuses to boot, saying which, with the boot-error
/// status (a supervisor of this release names a sealed memfd, never the spec itself).
#[test]
fn a_hand_off_naming_a_closed_descriptor_is_refused() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let heartbeats = hitcore::heartbeat::Heartbeats::create().unwrap();
    let envelope = format!(r#"{{"version":{},"spec_fd":77}}"#, hitcore::handoff::VERSION);
    let out = shard_command(&envelope, listener.as_raw_fd(), heartbeats.fd()).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "the boot-error status");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Worker failed to boot: cannot read the supervisor's hand-off from descriptor 77"),
        "{stderr}"
    );
}

/// Kills what is left of a process group at the end of a test (the supervisor started on USR2 is
/// not our child, so no other guard reaches it).
struct Group(i32);

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: the process group the test's server was started in.
        unsafe { libc::killpg(self.0, libc::SIGKILL) };
    }
}

/// The variables that hold secrets, which no child may have.
const SECRET_VARS: [&str; 3] = ["REDIS_URL=", "HITCORE_REDIS=", "HITCORE_SENTINEL_PASSWORD="];

/// Asserts that `pid` holds no hand-off memfd: a shard and a USR2 supervisor close theirs once
/// read, a supervisor once the child it wrote one for has started.
fn assert_no_handoff_memfd(pid: i32, what: &str) {
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        let target = std::fs::read_link(fd.path()).map(|t| t.display().to_string()).unwrap_or_default();
        let secret = target.contains("memfd:hitcore-shard-spec") || target.contains("memfd:hitcore-secrets");
        assert!(!secret, "{what} {pid} still holds {target}");
    }
}

/// `pid`'s environment as `/proc/PID/environ` shows it to any process of its user; asserts that it
/// holds no secret, nor a hand-off memfd.
fn assert_no_secret_in_environ(pid: i32, what: &str) -> Vec<String> {
    assert_no_handoff_memfd(pid, what);
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let vars: Vec<String> = raw.split(|&b| b == 0).map(|v| String::from_utf8_lossy(v).into_owned()).collect();
    for v in &vars {
        assert!(!SECRET_VARS.iter().any(|s| v.starts_with(s)), "{what} {pid} has {v}");
        assert!(!v.contains(PASSWORD) && !v.contains(&percent(PASSWORD)), "{what} {pid}: the password in {v}");
    }
    vars
}

#[test]
fn no_child_has_a_secret_in_its_environment_and_usr2_still_gets_them() {
    let redis = TestRedis::start();
    let url = redis.url(0);
    let pidfile = temp_path("hitcore-test-environ", ".pid");
    let pidfile = pidfile.to_str().unwrap().to_string();
    // The password reaches the supervisor in both variables that can carry it.
    let mut server = TestServer::start_with(&["-w", "1", "--pid", &pidfile], |cmd| {
        cmd.env("HITCORE_REDIS", &url).env("REDIS_URL", &url);
    });
    let _group = Group(server.pid());
    server.wait_ready(1);
    assert_eq!(get_once(server.addr, GET).value(), 1, "the shard logged in: its hand-off had the password");
    let old_shards = server.shard_pids();
    for &pid in &old_shards {
        let vars = assert_no_secret_in_environ(pid, "shard");
        let handoff = vars.iter().find_map(|v| v.strip_prefix("HITCORE_SHARD=")).unwrap();
        assert!(handoff.contains("\"spec_fd\":") && handoff.len() < 64, "only a descriptor: {handoff}");
    }

    // USR2: the new supervisor gets the secrets through a memfd, not its environment.
    server.log.wait_for("Ready: 1 shards serving", DEADLINE);
    assert_no_handoff_memfd(server.pid(), "the supervisor");
    server.signal(libc::SIGUSR2);
    server.log.wait_for("Took over from the old supervisor", DEADLINE);
    assert!(server.wait_exit(DEADLINE).success());
    let new_pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert_no_secret_in_environ(new_pid, "the new supervisor");
    let new_shards: Vec<i32> = server.shard_pids().into_iter().filter(|p| !old_shards.contains(p)).collect();
    assert_eq!(new_shards.len(), 1);
    assert_no_secret_in_environ(new_shards[0], "the new supervisor's shard");
    assert_eq!(get_once(server.addr, GET).value(), 2, "the new shard logged in");

    // HUP in the new supervisor loads the configuration again, the secret variables included.
    server.log.wait_for_count("Ready: 1 shards serving", 2, DEADLINE);
    // SAFETY: signalling the supervisor this test started (through USR2).
    unsafe { libc::kill(new_pid, libc::SIGHUP) };
    server.log.wait_for("Reload complete", DEADLINE);
    // A shard's lines are relayed by a thread of the supervisor's, so they may trail its own.
    wait_until("the HUP replacement's boot line", DEADLINE, || server.shard_pids().len() == 3);
    let replaced = *server.shard_pids().last().unwrap();
    assert_no_secret_in_environ(replaced, "a shard after HUP");
    assert_eq!(get_once(server.addr, GET).value(), 3);
    let _ = std::fs::remove_file(&pidfile);
}
