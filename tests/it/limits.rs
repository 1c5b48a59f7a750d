//! The open-files limit follows `--worker-connections`: the supervisor raises its soft limit so each
//! shard can hold its connections (shards inherit it), and says so in a WARNING when the hard limit
//! is too low, still serving. Read from the shards' real /proc/PID/limits.

use crate::common;

use std::os::unix::process::CommandExt;
use std::process::Command;

use common::*;

/// "Max open files  SOFT  HARD  files" from /proc/PID/limits.
fn open_files(pid: i32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("read /proc/PID/limits");
    let line = text.lines().find(|l| l.starts_with("Max open files")).expect("Max open files");
    let nums: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    (nums[0], nums[1])
}

/// Starts hitcore with the open-files limit set to `soft`/`hard` (capped by this test's own hard
/// limit, which an unprivileged process cannot exceed).
fn start_with_limit(soft: u64, hard: u64, extra: &[&str], redis: &TestRedis) -> TestServer {
    let url = redis.url(0);
    let mut args = vec!["-w", "1", "--redis", &url];
    args.extend_from_slice(extra);
    let server = TestServer::start_with(&args, |cmd: &mut Command| {
        // SAFETY: setrlimit is async-signal-safe, and the closure touches nothing else of the parent.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit { rlim_cur: soft, rlim_max: hard };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    server.wait_ready(1);
    server
}

#[test]
fn a_low_soft_limit_is_raised_for_the_default_worker_connections() {
    let (_, own_hard) = open_files(std::process::id() as i32);
    if own_hard < 10_064 {
        eprintln!("skipped: this test's own hard limit ({own_hard}) is below what the default needs");
        return;
    }
    let redis = TestRedis::start();
    let mut server = start_with_limit(1024, own_hard, &[], &redis);
    let shard = server.shard_pids()[0];
    let (soft, hard) = open_files(shard);
    assert!(soft >= 10_064, "the shard's soft limit {soft} fits 10000 connections + 64");
    assert_eq!(hard, own_hard, "the hard limit is never changed");
    assert_eq!(server.log.count("open-files limit"), 0, "no warning when it fits: {:?}", server.log.lines());
    assert_eq!(get_once(server.addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").value(), 1);
    server.stop();
}

#[test]
fn a_hard_limit_too_low_is_named_in_a_warning_and_the_server_still_serves() {
    let redis = TestRedis::start();
    let mut server = start_with_limit(256, 512, &["--worker-connections", "5000"], &redis);
    let line = server.log.wait_for("open-files limit", DEADLINE);
    assert!(
        line.contains("[WARNING]") && line.contains("512") && line.contains("--worker-connections (5000)"),
        "{line}"
    );
    let (soft, hard) = open_files(server.shard_pids()[0]);
    assert_eq!((soft, hard), (512, 512), "raised as far as the hard limit allows");
    assert_eq!(get_once(server.addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").value(), 1);
    server.stop();
}
