//! The supervisor → shard hand-off across releases (and the heartbeat region's layout, in both
//! directions): the current binary, run as a shard with the
//! exact hand-off the previous release's supervisor sends (tests/fixtures/handoff-e5955ed.json, read
//! from a running shard of commit e5955ed), boots and serves; a hand-off it cannot understand is
//! refused with its reason in the error log and the boot-error status.

mod common;

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use std::sync::atomic::Ordering;

use common::*;
use hitcore::heartbeat::state;

const PREVIOUS_RELEASE: &str = include_str!("fixtures/handoff-e5955ed.json");

/// Runs the binary as a shard with `handoff` in HITCORE_SHARD and `listen` and `heartbeats` as fds
/// 3 and 4 (the numbers the fixture names).
fn shard_command(handoff: &str, listen: RawFd, heartbeats: RawFd) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hitcore"));
    cmd.env("HITCORE_SHARD", handoff).env_remove("REDIS_URL").stdin(Stdio::null()).process_group(0);
    // SAFETY: only fcntl and dup2, both async-signal-safe, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Out of the way first, so that placing one cannot close the other.
            let high = [libc::fcntl(listen, libc::F_DUPFD, 100), libc::fcntl(heartbeats, libc::F_DUPFD, 100)];
            for (from, to) in high.into_iter().zip([3, 4]) {
                if from < 0 || libc::dup2(from, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd
}

/// Runs the current binary as shard 0 from the previous release's hand-off, with `heartbeats` as its
/// region; three requests are answered, and the shard exits 0 on TERM.
fn serve_from_the_previous_release_hand_off(heartbeats: &hitcore::heartbeat::Heartbeats) {
    let redis = TestRedis::start_with(None);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    // Only what points at this test's own processes changes: Redis's port and the bound address.
    let mut handoff: serde_json::Value = serde_json::from_str(PREVIOUS_RELEASE).unwrap();
    handoff["config"]["redis"]["endpoint"]["Tcp"]["addr"] = format!("127.0.0.1:{}", redis.port).into();
    handoff["config"]["bind"] = addr.to_string().into();
    assert!(handoff.get("version").is_none() && handoff["config"].get("evict_after").is_none());
    let child = shard_command(&handoff.to_string(), listener.as_raw_fd(), heartbeats.fd())
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
        assert!(
            matches!(a, Outcome::Answered { status: 200, value: Some(v) } if *v == i as i64 + 1),
            "request {i}: {a:?}; shard log:\n{log}"
        );
    }
    assert_eq!(redis.cmd(0, &["GET", "hit"]), "3");
    assert!(out.status.success(), "{:?}; shard log:\n{log}", out.status);
    assert!(log.contains("Booting worker with pid") && log.contains("Worker exiting"), "{log}");
}

#[test]
fn the_current_shard_serves_from_the_previous_release_hand_off() {
    let heartbeats = hitcore::heartbeat::Heartbeats::create().unwrap();
    serve_from_the_previous_release_hand_off(&heartbeats);
    // It wrote its own page of this release's region, where the supervisor reads it.
    let slot = heartbeats.slot(0);
    assert_eq!(slot.state.load(Ordering::Acquire), state::BOOTED);
    assert_eq!(slot.requests.load(Ordering::Relaxed), 3);
}

/// The previous release's supervisor made a region of its slots and metrics blocks only: the
/// current shard (a rollback's HUP, or an upgrade's first HUP) maps it whole and writes its slot
/// where that supervisor reads it.
#[test]
fn the_current_shard_writes_the_previous_release_region_layout() {
    let created = hitcore::heartbeat::Heartbeats::create().unwrap();
    const PREVIOUS_REGION: i64 = 1024 * 64 + 1024 * 128 * 8;
    // SAFETY: ftruncate of the memfd this test created; its pages beyond are not touched again.
    assert_eq!(unsafe { libc::ftruncate(created.fd(), PREVIOUS_REGION) }, 0);
    // SAFETY: a fresh descriptor of the same memfd, owned by the mapping made from it.
    let previous = unsafe { hitcore::heartbeat::Heartbeats::attach(libc::dup(created.fd())) }.unwrap();
    assert!(!previous.paged());
    serve_from_the_previous_release_hand_off(&previous);
    let slot = previous.slot(0);
    assert_eq!(slot.state.load(Ordering::Acquire), state::BOOTED);
    assert_eq!(slot.requests.load(Ordering::Relaxed), 3);
}

#[test]
fn a_hand_off_from_a_newer_release_is_refused_in_the_error_log() {
    let dir = std::env::temp_dir().join(format!("hitcore-test-handoff-{}-{}", std::process::id(), free_port()));
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
