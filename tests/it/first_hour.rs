//! A new user's first hour with the real binary: a machine where io_uring cannot be used gets one
//! line naming the cause and the fix, before anything is bound (a too-small `RLIMIT_MEMLOCK`, a
//! seccomp filter refusing `io_uring_setup` as a container's default profile does), and a soft
//! limit below what io_uring needs is raised when the hard limit allows it.

use crate::common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Output};
use std::time::Duration;

use common::*;

/// Runs hitcore on a free port (no Redis needed: it must stop before connecting) with `limit`
/// applied in the child before exec.
fn run_with(adjust: impl FnOnce(&mut Command)) -> (Output, u16) {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hitcore"));
    cmd.args(["-w", "1", "-b", &format!("127.0.0.1:{port}"), "--redis", "redis://127.0.0.1:1/0"]);
    cmd.env_remove("REDIS_URL");
    adjust(&mut cmd);
    (cmd.output().unwrap(), port)
}

fn set_memlock(cmd: &mut Command, soft: u64, hard: u64) {
    // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit { rlim_cur: soft, rlim_max: hard };
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The one ERROR line of a refused start, checked to be the whole output and to bind nothing.
fn refused(out: &Output, port: u16) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "the boot-error status, which systemd does not restart: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("[ERROR]")).collect();
    assert_eq!(errors.len(), 1, "one ERROR line: {stderr}");
    assert!(!stderr.contains("Listening at"), "nothing is bound: {stderr}");
    assert!(!stderr.contains("Booting worker"), "no shard is started: {stderr}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    errors[0].to_string()
}

#[test]
fn memlock_too_small_is_one_line_with_the_fix() {
    let (out, port) = run_with(|cmd| set_memlock(cmd, 64 * 1024, 64 * 1024));
    let line = refused(&out, port);
    assert!(line.contains("io_uring is unavailable: the locked-memory limit (RLIMIT_MEMLOCK) is 64 KiB"), "{line}");
    assert!(line.contains("ulimit -l 512") && line.contains("LimitMEMLOCK="), "{line}");
}

#[test]
fn soft_memlock_is_raised_to_the_hard_limit() {
    // The hard limit stays this process's own (raising it would need CAP_SYS_RESOURCE).
    let mut ours = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct, which lives across the call.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut ours) }, 0);
    let hard = ours.rlim_max;
    assert!(hard >= 512 * 1024, "this test needs a hard RLIMIT_MEMLOCK of at least 512 KiB, not {hard}");
    let redis = TestRedis::start();
    let url = redis.url(0);
    let server = TestServer::start_with(&["-w", "1", "--redis", &url], |cmd| set_memlock(cmd, 64 * 1024, hard));
    let shown = if hard == libc::RLIM_INFINITY { "unlimited".to_string() } else { format!("{} KiB", hard / 1024) };
    server
        .log
        .wait_for(&format!("Raised the locked-memory limit (RLIMIT_MEMLOCK) to {shown}"), Duration::from_secs(10));
    server.wait_ready(1);
    let first = get_once(server.addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(first.status, 200);
    assert_eq!(first.value(), 1);
}

/// A classic BPF seccomp filter that answers `io_uring_setup` (425 on x86_64 and aarch64) with
/// EPERM and allows everything else: what Docker's default profile does to it.
fn deny_io_uring(cmd: &mut Command) {
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    let filter = [
        // A = seccomp_data.nr
        libc::sock_filter { code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16, jt: 0, jf: 0, k: 0 },
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_io_uring_setup as u32,
        },
        libc::sock_filter { code: (libc::BPF_RET | libc::BPF_K) as u16, jt: 0, jf: 0, k: SECCOMP_RET_ERRNO | 1 },
        libc::sock_filter { code: (libc::BPF_RET | libc::BPF_K) as u16, jt: 0, jf: 0, k: SECCOMP_RET_ALLOW },
    ];
    // SAFETY: prctl with a filter that lives across the call; async-signal-safe, nothing else touched.
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut _ };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const _ as usize) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn seccomp_refusing_io_uring_is_one_line_with_the_fix() {
    let (out, port) = run_with(deny_io_uring);
    let line = refused(&out, port);
    assert!(line.contains("io_uring is unavailable: a seccomp filter refuses io_uring_setup"), "{line}");
    assert!(line.contains("--security-opt seccomp=deploy/container/seccomp.json"), "{line}");
}
