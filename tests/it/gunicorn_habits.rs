//! gunicorn habits, through the real binary: `PORT` binds `0.0.0.0:$PORT` when nothing else binds,
//! `WEB_CONCURRENCY` sets the default workers below the file, log levels in any case,
//! `HITCORE_FORWARDED_ALLOW_IPS` as well as gunicorn's `FORWARDED_ALLOW_IPS`, a WARNING for every
//! `HITCORE_*` variable that names no flag (at start and in `--check-config`), TOML values of the
//! wrong type refused naming key and file, `--check-config` saying how shards are placed, and
//! `--log-format json` turning both logs into JSON lines.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

/// The binary with a clean hitcore environment (no HITCORE_*, REDIS_URL, PORT, WEB_CONCURRENCY,
/// FORWARDED_ALLOW_IPS from the test runner) plus `env`.
fn hitcore_cmd(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hitcore"));
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("HITCORE_")
            || ["REDIS_URL", "PORT", "WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS", "CREDENTIALS_DIRECTORY"]
                .contains(&k.as_str())
        {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    hitcore_cmd(args, env).output().unwrap()
}

/// `--check-config`'s stdout (exit 0 asserted) and stderr.
fn check(args: &[&str], env: &[(&str, &str)]) -> (String, String) {
    let mut all = vec!["--check-config"];
    all.extend_from_slice(args);
    let out = run(&all, env);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{args:?} {env:?}: {stderr}");
    (String::from_utf8(out.stdout).unwrap(), stderr)
}

fn line<'a>(output: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key} = ");
    output.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no {key} in:\n{output}"))
}

fn scratch_file(tag: &str, text: &str) -> PathBuf {
    let path = temp_path(&format!("hitcore-habits-{tag}"), ".toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn port_binds_all_interfaces_when_nothing_else_binds() {
    let redis = TestRedis::start();
    let port = free_port().to_string();
    let url = redis.url(0);
    let cmd = hitcore_cmd(&["-w", "1", "--redis", &url], &[("PORT", &port)]);
    let server = TestServer::from_command(cmd, "Listening at: http://");
    let listening = server.log.wait_for("Listening at: http://", DEADLINE);
    assert!(listening.contains(&format!("http://0.0.0.0:{port} ")), "{listening}");
    server.wait_ready(1);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(get_once(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").value(), 1);
    assert_eq!(get_once(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").value(), 2);

    // Anything stronger wins: -b, HITCORE_BIND, the file.
    let (out, _) = check(&["-b", "127.0.0.1:7001"], &[("PORT", "5000")]);
    assert!(line(&out, "bind").starts_with("bind = [\"127.0.0.1:7001\"]"), "{out}");
    let (out, _) = check(&[], &[("PORT", "5000"), ("HITCORE_BIND", "127.0.0.1:7002")]);
    assert!(line(&out, "bind").contains("127.0.0.1:7002"), "{out}");
    let file = scratch_file("port", "bind = \"127.0.0.1:7003\"\n");
    let (out, _) = check(&["-c", file.to_str().unwrap()], &[("PORT", "5000")]);
    assert!(line(&out, "bind").contains("127.0.0.1:7003"), "{out}");
    let (out, _) = check(&[], &[("PORT", "5000")]);
    assert_eq!(line(&out, "bind"), "bind = [\"0.0.0.0:5000\"]  # environment PORT");
    // A PORT that is not a port is refused, naming it.
    let out = run(&["--check-config"], &[("PORT", "http")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("PORT must be a port number") && stderr.contains("'--bind'"), "{stderr}");
    let _ = std::fs::remove_file(file);
}

#[test]
fn web_concurrency_is_the_default_below_the_file() {
    let (out, _) = check(&["--share-cpus"], &[("WEB_CONCURRENCY", "3")]);
    assert_eq!(line(&out, "workers"), "workers = 3  # environment WEB_CONCURRENCY");
    let file = scratch_file("wc", "workers = 1\n");
    let (out, _) = check(&["-c", file.to_str().unwrap()], &[("WEB_CONCURRENCY", "3")]);
    assert_eq!(line(&out, "workers"), "workers = 1  # file");
    let (out, _) = check(&["-w", "1"], &[("WEB_CONCURRENCY", "3")]);
    assert_eq!(line(&out, "workers"), "workers = 1  # command line");
    let out = run(&["--check-config"], &[("WEB_CONCURRENCY", "four")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("WEB_CONCURRENCY must be a number of workers, not 'four'"), "{stderr}");
    let _ = std::fs::remove_file(file);
}

#[test]
fn log_levels_in_any_case() {
    for (args, env) in [
        (&["--log-level", "DEBUG"][..], &[][..]),
        (&["--log-level", "Warning"][..], &[][..]),
        (&[][..], &[("HITCORE_LOG_LEVEL", "ERROR")][..]),
    ] {
        let (out, _) = check(args, env);
        assert!(line(&out, "log-level").contains(&format!("\"{}\"", args.get(1).unwrap_or(&"ERROR"))), "{out}");
    }
    let file = scratch_file("level", "log-level = \"CRITICAL\"\n");
    let (out, _) = check(&["-c", file.to_str().unwrap()], &[]);
    assert_eq!(line(&out, "log-level"), "log-level = \"CRITICAL\"  # file");
    let _ = std::fs::remove_file(file);
    // Still a closed set.
    let out = run(&["--check-config", "--log-level", "LOUD"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn unknown_hitcore_variables_are_warned_about_at_start_and_in_check_config() {
    let (_, stderr) = check(&[], &[("HITCORE_WROKERS", "3"), ("HITCORE_SHARD_COUNT", "secret-value")]);
    assert!(
        stderr
            .contains("hitcore: WARNING: HITCORE_WROKERS names no flag and is ignored; did you mean HITCORE_WORKERS?"),
        "{stderr}"
    );
    assert!(stderr.contains("HITCORE_SHARD_COUNT names no flag"), "{stderr}");
    assert!(!stderr.contains("secret-value"), "values are never shown: {stderr}");

    let redis = TestRedis::start();
    let url = redis.url(0);
    let server = TestServer::start_with(&["-w", "1", "--redis", &url], |cmd| {
        cmd.env("HITCORE_KEEPALIVE", "5");
    });
    let warning = server.log.wait_for("HITCORE_KEEPALIVE", DEADLINE);
    assert!(
        warning.contains("[WARNING] HITCORE_KEEPALIVE names no flag and is ignored; did you mean HITCORE_KEEP_ALIVE?"),
        "{warning}"
    );
    server.wait_ready(1);
    assert_eq!(get_once(server.addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").value(), 1);
}

#[test]
fn hitcore_forwarded_allow_ips_works_and_is_stronger_than_gunicorns_name() {
    let (out, stderr) = check(&[], &[("HITCORE_FORWARDED_ALLOW_IPS", "10.0.0.0/8")]);
    assert_eq!(
        line(&out, "forwarded-allow-ips"),
        "forwarded-allow-ips = \"10.0.0.0/8\"  # environment HITCORE_FORWARDED_ALLOW_IPS"
    );
    assert!(!stderr.contains("WARNING"), "{stderr}");
    let (out, _) =
        check(&[], &[("HITCORE_FORWARDED_ALLOW_IPS", "10.0.0.0/8"), ("FORWARDED_ALLOW_IPS", "192.168.0.0/16")]);
    assert!(line(&out, "forwarded-allow-ips").contains("10.0.0.0/8"), "{out}");
    let (out, _) = check(&[], &[("FORWARDED_ALLOW_IPS", "192.168.0.0/16")]);
    assert_eq!(
        line(&out, "forwarded-allow-ips"),
        "forwarded-allow-ips = \"192.168.0.0/16\"  # environment FORWARDED_ALLOW_IPS"
    );

    // In effect: the default trusts 127.0.0.1, so the forwarded address is logged; with the
    // variable naming another proxy, the peer's own address is.
    let redis = TestRedis::start();
    let request = "GET / HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 198.51.100.1\r\n\r\n";
    for (i, (env, want)) in [(None, "198.51.100.1"), (Some("10.0.0.1"), "127.0.0.1")].into_iter().enumerate() {
        let log = temp_path(&format!("hitcore-habits-xff-{i}"), ".log");
        let url = redis.url(0);
        let args =
            ["-w", "1", "--redis", &url, "--access-logfile", log.to_str().unwrap(), "--access-logformat", "%(h)s"];
        let server = TestServer::start_with(&args, |cmd| {
            cmd.env_remove("FORWARDED_ALLOW_IPS").env_remove("HITCORE_FORWARDED_ALLOW_IPS");
            if let Some(v) = env {
                cmd.env("HITCORE_FORWARDED_ALLOW_IPS", v);
            }
        });
        server.wait_ready(1);
        assert_eq!(get_once(server.addr, request).status, 200);
        assert_eq!(access_line(&log), want, "HITCORE_FORWARDED_ALLOW_IPS={env:?}");
        let _ = std::fs::remove_file(log);
    }
}

/// The first line of an access log, once the shard's tick has flushed it.
fn access_line(path: &Path) -> String {
    let mut first = String::new();
    wait_until("an access log line", DEADLINE, || {
        first = std::fs::read_to_string(path).unwrap_or_default().lines().next().unwrap_or_default().to_string();
        !first.is_empty()
    });
    first
}

#[test]
fn toml_values_of_the_wrong_type_are_refused_naming_key_and_file() {
    for (text, key) in [
        ("workers = \"4\"\n", "workers"),
        ("keep-alive = \"2\"\n", "keep-alive"),
        ("worker-connections = \"100\"\n", "worker-connections"),
    ] {
        let file = scratch_file("type", text);
        let out = run(&["--check-config", "-c", file.to_str().unwrap()], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {stderr}");
        assert!(
            stderr.contains(&format!("{}: key '{key}': expected a number, found a string", file.display())),
            "{text}: {stderr}"
        );
        let _ = std::fs::remove_file(file);
    }
}

#[test]
fn check_config_says_how_shards_are_placed() {
    let (out, _) = check(&["-w", "1"], &[]);
    let placed = out.lines().find(|l| l.contains("shards")).unwrap();
    assert!(
        placed.contains("1 shards, not pinned: each may run on any of CPUs") && placed.contains("the kernel"),
        "{out}"
    );
    let (out, _) = check(&["-w", "1", "--pin"], &[]);
    let placed = out.lines().find(|l| l.contains("shards") && l.starts_with("# resolved")).unwrap();
    assert!(placed.contains("1 shards, each pinned to one CPU (--pin; shard->CPU 0->"), "{out}");
}

#[test]
fn log_format_json_writes_one_object_per_line_in_both_logs() {
    let redis = TestRedis::start();
    let url = redis.url(0);
    let dir = temp_path("hitcore-habits-json", "");
    std::fs::create_dir_all(&dir).unwrap();
    let (error, access) = (dir.join("error.log"), dir.join("access.log"));
    let args = [
        "-w",
        "1",
        "--redis",
        &url,
        "--log-format",
        "JSON",
        "--error-logfile",
        error.to_str().unwrap(),
        "--access-logfile",
        access.to_str().unwrap(),
    ];
    let mut server = TestServer::start_with(&args, |cmd| {
        cmd.env("HITCORE_NO_SUCH_FLAG", "1");
    });
    server.wait_ready(1);
    // What JSON must escape: a request the parser refuses for its control bytes and invalid UTF-8
    // (answered 400, and logged), then one it accepts with quotes, a backslash and non-ASCII.
    let mut client = Client::connect(server.addr);
    client.send(b"GET /?q=\x1b[31m\xc3\xa9\xff HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(client.read_response(false).status, 400);
    drop(client);
    let raw = "GET /?q=1 HTTP/1.1\r\nHost: t\r\nUser-Agent: a\"b\\c \u{20ac}\r\nReferer: http://r/\u{1f600}\r\n\r\n";
    assert_eq!(get_once(server.addr, raw).value(), 1);
    assert_eq!(get_once(server.addr, "GET / HTTP/1.1\r\nHost: t\r\n\r\n").value(), 2);
    let lines = {
        let mut lines = Vec::new();
        wait_until("three access lines", DEADLINE, || {
            lines = std::fs::read_to_string(&access).unwrap_or_default().lines().map(str::to_string).collect();
            lines.len() >= 3
        });
        lines
    };
    let mut statuses = Vec::new();
    for line in &lines {
        assert!(line.bytes().all(|b| (b' '..=b'~').contains(&b)), "ASCII only: {line}");
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["a", "b", "f", "h", "l", "r", "s", "t", "u"], "gunicorn's default atoms: {line}");
        assert_eq!(v["h"], "127.0.0.1");
        statuses.push(v["s"].as_u64().unwrap());
    }
    assert_eq!(statuses, [400, 200, 200]);
    let second: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    // The text log's escapes (client bytes outside printable ASCII as \xNN), as JSON strings.
    assert_eq!(second["r"], "GET /?q=1 HTTP/1.1");
    assert_eq!(second["a"], "a\\\"b\\\\c \\xe2\\x82\\xac");
    assert_eq!(second["f"], "http://r/\\xf0\\x9f\\x98\\x80");

    server.stop();
    let errors = std::fs::read_to_string(&error).unwrap();
    let mut messages = Vec::new();
    for line in errors.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["time"].is_string() && v["pid"].is_u64() && v["level"].is_string(), "{line}");
        messages.push((v["level"].as_str().unwrap().to_string(), v["message"].as_str().unwrap().to_string()));
    }
    assert!(messages.iter().any(|(l, m)| l == "INFO" && m.starts_with("Listening at: http://")), "{errors}");
    assert!(messages.iter().any(|(l, m)| l == "INFO" && m.starts_with("Booting worker with pid")), "{errors}");
    assert!(
        messages.iter().any(|(l, m)| l == "WARNING" && m.starts_with("HITCORE_NO_SUCH_FLAG names no flag")),
        "{errors}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
