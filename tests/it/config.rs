//! Configuration from a `-c` TOML file, `HITCORE_<FLAG>` variables and the command line, in that
//! order of strength; the Redis password from a file or a systemd credential; `--check-config`.
//! All through the real binary.

use crate::common;
use crate::notify_socket;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::*;

/// A scratch directory for this test's files, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = temp_path(&format!("hitcore-config-{tag}"), "");
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the binary to completion with a clean hitcore environment plus `env`.
fn hitcore(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hitcore"));
    cmd.args(args).env_remove("REDIS_URL").env_remove("CREDENTIALS_DIRECTORY");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("HITCORE_")) {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied());
    cmd.output().unwrap()
}

/// `--check-config`'s output; asserts exit 0.
fn effective(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut all = vec!["--check-config"];
    all.extend_from_slice(args);
    let out = hitcore(&all, env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{args:?} {env:?}: {stderr}");
    assert!(stderr.contains("the configuration is valid"), "{stderr}");
    String::from_utf8(out.stdout).unwrap()
}

/// The line of `--check-config` output for `key`.
fn line<'a>(output: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key} = ");
    output.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no {key} in:\n{output}"))
}

/// Asserts exit 2 and returns stderr.
fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = hitcore(args, env);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?} should be refused: {stderr}");
    stderr
}

#[test]
fn a_file_alone_configures_a_serving_server_with_a_password_file() {
    let redis = TestRedis::start();
    let dir = Scratch::new("file");
    let password = dir.write("redis-password", &format!("{PASSWORD}\n"));
    let file = dir.write(
        "hitcore.toml",
        &format!(
            "# comments are fine\nworkers = 1\nshare-cpus = true\nkey = \"from:file\"\nkeep-alive = 5\n\
             redis = \"redis://127.0.0.1:{}/0\"\nredis-password-file = \"{password}\"\n",
            redis.port
        ),
    );
    let server = TestServer::start(&["-c", &file]);
    server.wait_ready(1);
    assert_eq!(get_once(server.addr, GET).value(), 1);
    assert_eq!(redis.cmd(0, &["GET", "from:file"]), "1");
    assert!(server.log.lines().iter().all(|l| !l.contains(PASSWORD)), "the password is never logged");
}

#[test]
fn a_systemd_credential_supplies_the_password() {
    let redis = TestRedis::start();
    let dir = Scratch::new("cred");
    dir.write("redis-password", PASSWORD);
    let url = format!("redis://127.0.0.1:{}/0", redis.port);
    let creds = dir.0.to_str().unwrap().to_string();
    let server = TestServer::start_with(&["-w", "1", "--redis", &url], |cmd| {
        cmd.env("CREDENTIALS_DIRECTORY", &creds);
    });
    server.wait_ready(1);
    assert_eq!(get_once(server.addr, GET).value(), 1);
    assert_eq!(redis.cmd(0, &["GET", "hit"]), "1");

    // The package installs the credential empty: that means no password, not an error.
    let empty = Scratch::new("cred-empty");
    empty.write("redis-password", "");
    let out = effective(&["--redis", "redis://127.0.0.1:1/0"], &[("CREDENTIALS_DIRECTORY", empty.0.to_str().unwrap())]);
    assert!(out.contains("# resolved: redis password none"), "{out}");
    // But an empty file named on purpose is a mistake.
    let stderr = refused(&["--redis-password-file", &empty.write("pw", "")], &[]);
    assert!(stderr.contains("--redis-password-file") && stderr.contains("empty"), "{stderr}");
}

#[test]
fn the_environment_beats_the_file_and_the_command_line_beats_both() {
    let redis = TestRedis::start_with(None);
    let dir = Scratch::new("layers");
    let file = dir.write(
        "hitcore.toml",
        &format!(
            "key = \"file\"\nworkers = 1\nworker-connections = 7\nredis = \"redis://127.0.0.1:{}/0\"\n",
            redis.port
        ),
    );

    // Effective values and their origins, as --check-config prints them.
    let out = effective(&["-c", &file], &[("HITCORE_KEY", "env")]);
    assert_eq!(line(&out, "key"), "key = \"env\"  # environment HITCORE_KEY");
    assert_eq!(line(&out, "worker-connections"), "worker-connections = 7  # file");
    assert_eq!(line(&out, "keep-alive"), "keep-alive = 2  # default");
    let out = effective(&["-c", &file, "--key", "flag"], &[("HITCORE_KEY", "env")]);
    assert_eq!(line(&out, "key"), "key = \"flag\"  # command line");
    // REDIS_URL still works, under HITCORE_REDIS and over the file.
    let out = effective(&["-c", &file], &[("REDIS_URL", "redis://127.0.0.1:1/3")]);
    assert_eq!(line(&out, "redis"), "redis = \"redis://127.0.0.1:1/3\"  # environment REDIS_URL");
    let out = effective(
        &["-c", &file],
        &[("REDIS_URL", "redis://127.0.0.1:1/3"), ("HITCORE_REDIS", "redis://127.0.0.1:2/4")],
    );
    assert_eq!(line(&out, "redis"), "redis = \"redis://127.0.0.1:2/4\"  # environment HITCORE_REDIS");
    // Boolean variables take the usual spellings.
    let out = effective(&["-c", &file], &[("HITCORE_NO_COALESCE", "yes")]);
    assert_eq!(line(&out, "no-coalesce"), "no-coalesce = true  # environment HITCORE_NO_COALESCE");

    // And the server really uses them: the counter lands in the key the environment named.
    let server = TestServer::start_with(&["-c", &file], |cmd| {
        cmd.env("HITCORE_KEY", "env");
    });
    server.wait_ready(1);
    assert_eq!(get_once(server.addr, GET).value(), 1);
    assert_eq!(redis.cmd(0, &["GET", "env"]), "1");
    assert_eq!(redis.cmd(0, &["EXISTS", "file"]), "0");
}

#[test]
fn a_bad_file_is_refused_naming_the_file_and_the_key() {
    let dir = Scratch::new("bad");
    let unknown = dir.write("unknown.toml", "workers = 1\nwrokers = 2\n");
    let stderr = refused(&["-c", &unknown], &[]);
    assert!(stderr.contains(&unknown) && stderr.contains("'wrokers'") && stderr.contains("unknown key"), "{stderr}");

    let bad_type = dir.write("type.toml", "workers = \"lots\"\n");
    let stderr = refused(&["-c", &bad_type], &[]);
    assert!(stderr.contains(&bad_type) && stderr.contains("'workers'") && stderr.contains("lots"), "{stderr}");

    let bad_value = dir.write("value.toml", "workers = 0\n");
    let stderr = refused(&["-c", &bad_value], &[]);
    assert!(stderr.contains("--workers") && stderr.contains(&bad_value), "{stderr}");

    let syntax = dir.write("syntax.toml", "workers = [\n");
    let stderr = refused(&["-c", &syntax], &[]);
    assert!(stderr.contains(&syntax) && stderr.contains("TOML"), "{stderr}");

    let missing = dir.0.join("missing.toml");
    let stderr = refused(&["-c", missing.to_str().unwrap()], &[]);
    assert!(stderr.contains("missing.toml") && stderr.contains("cannot read"), "{stderr}");

    // A bad variable is named too.
    let stderr = refused(&["-w", "1"], &[("HITCORE_KEEP_ALIVE", "soon")]);
    assert!(stderr.contains("--keep-alive") && stderr.contains("soon"), "{stderr}");
}

#[test]
fn check_config_accepts_a_good_configuration_and_masks_the_password() {
    let dir = Scratch::new("check");
    // A port something listens on, and a Redis nobody runs: the check binds and connects nothing.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let file = dir.write(
        "hitcore.toml",
        &format!(
            "workers = 1\nbind = [\"{busy_addr}\"]\nredis = \"redis://app:{}@127.0.0.1:1/2\"\n\
             error-logfile = \"{}\"\n",
            percent(PASSWORD),
            dir.0.join("error.log").display()
        ),
    );
    let out = hitcore(&["-c", &file, "--check-config"], &[]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(line(&stdout, "redis"), "redis = \"redis://app:***@127.0.0.1:1/2\"  # file");
    assert_eq!(line(&stdout, "bind"), format!("bind = [\"{busy_addr}\"]  # file"));
    assert!(!stdout.contains(PASSWORD) && !stderr.contains(PASSWORD) && !stdout.contains(&percent(PASSWORD)));
    assert!(!dir.0.join("error.log").exists(), "the check creates no log file");

    // The password from a file is masked the same way.
    let password = dir.write("pw", "s3cret-from-file\n");
    let out = effective(&["--redis", "redis://127.0.0.1:1/0", "--redis-password-file", &password], &[]);
    assert_eq!(line(&out, "redis"), "redis = \"redis://:***@127.0.0.1:1/0\"  # command line");
    assert!(!out.contains("s3cret-from-file"));
}

#[test]
fn check_config_refuses_a_bad_configuration_with_exit_2() {
    let dir = Scratch::new("checkbad");
    let file = dir.write("hitcore.toml", "workers = 1\nworker-conections = 5\n");
    let stderr = refused(&["-c", &file, "--check-config"], &[]);
    assert!(stderr.contains("'worker-conections'") && stderr.contains(&file), "{stderr}");

    let stderr = refused(&["--check-config", "-w", "1", "--error-logfile", "/nonexistent-hitcore-dir/error.log"], &[]);
    assert!(stderr.contains("--error-logfile") && stderr.contains("/nonexistent-hitcore-dir"), "{stderr}");
    assert!(stderr.contains("check failed"), "{stderr}");

    let stderr = refused(&["--check-config", "-w", "1", "--redis", "redis://127.0.0.1:1/x"], &[]);
    assert!(stderr.contains("--redis"), "{stderr}");

    let stderr = refused(&["--check-config", "-w", "1", "--redis-password-file", "/nonexistent-hitcore-dir/pw"], &[]);
    assert!(stderr.contains("--redis-password-file"), "{stderr}");
}

#[test]
fn the_shipped_configuration_file_is_valid_and_so_are_its_commented_examples() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/hitcore.toml");
    let out = effective(&["-c", shipped], &[]);
    assert!(out.contains("# file: ") && out.contains("hitcore.toml"), "{out}");

    // Every commented `# key = value` example, uncommented, is a known key with a valid value.
    // Machine-specific ones are overridden from the command line (which wins over the file).
    let text = std::fs::read_to_string(shipped).unwrap();
    let examples: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| l.split_once(" = ").is_some_and(|(k, _)| !k.contains(' ')))
        .collect();
    assert!(examples.len() >= 20, "expected the defaults as commented examples: {examples:?}");
    let dir = Scratch::new("shipped");
    let uncommented = dir.write("all.toml", &(examples.join("\n") + "\n"));
    let cpu = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:").map(|v| v.trim().to_string())))
        .and_then(|list| hitcore_first_cpu(&list))
        .unwrap_or(0);
    let out = effective(&["-c", &uncommented, "-w", "1", "--cpus", &cpu.to_string(), "--access-logfile", "-"], &[]);
    assert!(out.contains("worker-connections = 10000  # file"), "{out}");
}

/// The first CPU of a `0-3,6` list.
fn hitcore_first_cpu(list: &str) -> Option<usize> {
    list.split([',', '-']).next()?.trim().parse().ok()
}

#[test]
fn hup_reads_the_file_again_and_a_broken_file_keeps_the_shards_serving() {
    let redis = TestRedis::start_with(None);
    let dir = Scratch::new("hup");
    let settings = |key: &str, extra: &str| {
        format!("workers = 1\nredis = \"redis://127.0.0.1:{}/0\"\nkey = \"{key}\"\n{extra}", redis.port)
    };
    let file = dir.write("hitcore.toml", &settings("before", ""));
    let server = TestServer::start(&["-c", &file]);
    server.wait_ready(1);
    assert_eq!(get_once(server.addr, GET).value(), 1);
    assert_eq!(redis.cmd(0, &["GET", "before"]), "1");

    // A new key for the new shards; a new backlog needs a restart, and the log says so.
    dir.write("hitcore.toml", &settings("after", "backlog = 100\n"));
    let old = server.shard_pids()[0];
    server.signal(libc::SIGHUP);
    server.log.wait_for_count("Reload complete", 1, DEADLINE);
    // The old shard serves what it already has, then leaves; from then on only the new one answers.
    server.log.wait_for(&format!("Worker exiting (pid: {old})"), DEADLINE);
    assert!(server.log.count("Reload: --backlog changed") == 1, "{:?}", server.log.lines());
    assert_eq!(get_once(server.addr, GET).value(), 1);
    assert_eq!(redis.cmd(0, &["GET", "after"]), "1");

    // A file that no longer loads: refused, named, and nothing is replaced.
    dir.write("hitcore.toml", &settings("after", "wrokers = 2\n"));
    let booted = server.log.count("Booting worker");
    server.signal(libc::SIGHUP);
    let line = server.log.wait_for("last reload refused", DEADLINE);
    assert!(line.contains("'wrokers'") && line.contains("hitcore.toml"), "{line}");
    assert_eq!(get_once(server.addr, GET).value(), 2);
    assert_eq!(server.log.count("Booting worker"), booted);

    // Fixed: the next HUP goes through.
    dir.write("hitcore.toml", &settings("fixed", ""));
    let old = *server.shard_pids().last().unwrap();
    server.signal(libc::SIGHUP);
    server.log.wait_for_count("Reload complete", 2, DEADLINE);
    server.log.wait_for(&format!("Worker exiting (pid: {old})"), DEADLINE);
    assert_eq!(get_once(server.addr, GET).value(), 1);
    assert_eq!(redis.cmd(0, &["GET", "fixed"]), "1");
}

/// A HUP onto a file whose password breaks the URL or the TOML is refused with an ERROR line and a
/// `STATUS=` that name what is wrong and quote no piece of the password (any local user reads
/// `STATUS=` with `systemctl status`).
#[test]
fn a_refused_hup_shows_no_piece_of_the_password_in_the_log_or_status() {
    let redis = TestRedis::start_with(None);
    let notify = notify_socket::NotifySocket::bind();
    let dir = Scratch::new("hup-secret");
    let good = format!("workers = 1\nredis = \"redis://127.0.0.1:{}/0\"\n", redis.port);
    let file = dir.write("hitcore.toml", &good);
    let server = TestServer::start_with(&["-c", &file], |cmd| {
        cmd.env("NOTIFY_SOCKET", &notify.path);
    });
    server.wait_ready(1);
    let cases = [
        ("redis = \"redis+cluster://app:Zx9/Qk7@10.0.0.1:7000\"", "must percent-encode", ["Zx9", "Qk7"]),
        ("redis = \"redis://:hun\"ter2@127.0.0.1/0\"", "line 2, column", ["hun", "ter2"]),
        ("redis = \"redis+sentinel://app:12/cdSecret@h/svc\"", "must percent-encode", ["12/", "cdSecret"]),
        ("redis = \"redis://:pw@127.0.0.1:x%zzSecret/0\"", "invalid port", ["zzSecret", "x%z"]),
    ];
    for (i, (line, why, pieces)) in cases.iter().enumerate() {
        dir.write("hitcore.toml", &format!("workers = 1\n{line}\n"));
        server.signal(libc::SIGHUP);
        let refused = server.log.wait_for_count("last reload refused", i + 1, DEADLINE).pop().unwrap();
        assert!(refused.contains(why), "{refused}");
        let status = notify.wait_for("the refusal in STATUS=", |m| m.starts_with("STATUS=") && m.contains(why));
        for piece in pieces {
            assert!(!refused.contains(piece) && !status.contains(piece), "{piece}: {refused} / {status}");
        }
    }
    for piece in cases.iter().flat_map(|c| c.2) {
        assert!(server.log.lines().iter().all(|l| !l.contains(piece)), "{piece} in the log");
        assert!(notify.all().iter().all(|m| !m.contains(piece)), "{piece} sent to systemd");
    }
    assert_eq!(get_once(server.addr, GET).value(), 1, "the shards kept serving");
}
