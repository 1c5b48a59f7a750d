//! Several binds at once: a unix socket (with `--bind-mode`, removed on exit), IPv6, a second TCP
//! address, systemd socket activation driven by `systemd-socket-activate`, and HUP adding and
//! removing binds from the `-c` file under load, all through the real binary against a real
//! redis-server.

use crate::common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// A scratch directory, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = temp_path(&format!("hitcore-binds-{tag}"), "");
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One `GET /` over a unix socket; the counter value.
fn get_unix(path: &Path) -> i64 {
    let mut stream = UnixStream::connect(path).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply:?}");
    reply.split("\r\n\r\n").nth(1).unwrap().parse().unwrap()
}

/// The address a `Listening at: http://...` line names for `host`.
fn listening(server: &TestServer, host: &str) -> std::net::SocketAddr {
    let needle = format!("Listening at: http://{host}");
    let line = server.log.wait_for(&needle, DEADLINE);
    line.split("http://").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn a_unix_socket_ipv6_and_a_second_tcp_address_are_all_served() {
    let redis = TestRedis::start();
    let dir = Scratch::new("several");
    let sock = dir.0.join("hitcore.sock");
    let unix = format!("unix:{}", sock.display());
    let url = redis.url(0);
    // TestServer binds 127.0.0.1:0 first: that address gets per-shard listeners, the rest are shared.
    let mut server = TestServer::start(&[
        "-w",
        "2",
        "--share-cpus",
        "--redis",
        &url,
        "-b",
        &unix,
        "--bind-mode",
        "660",
        "-b",
        "[::1]:0",
        "-b",
        "127.0.0.2:0",
    ]);
    server.wait_ready(2);
    let v6 = listening(&server, "[::1]");
    let second = listening(&server, "127.0.0.2");
    server.log.wait_for(&format!("Listening at: {unix}"), DEADLINE);
    assert_eq!(std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777, 0o660);

    let mut values = Vec::new();
    for _ in 0..5 {
        values.push(get_unix(&sock));
        values.push(get_once(server.addr, GET).value());
        values.push(get_once(v6, GET).value());
        values.push(get_once(second, GET).value());
    }
    // HUP replaces every shard; every address still answers.
    let booted = server.log.count("Booting worker");
    server.signal(libc::SIGHUP);
    server.log.wait_for_count("Booting worker", booted + 2, DEADLINE);
    server.log.wait_for("Reload complete", DEADLINE);
    values.push(get_unix(&sock));
    values.push(get_once(v6, GET).value());
    values.push(get_once(server.addr, GET).value());
    values.sort_unstable();
    assert_eq!(values, (1..=23).collect::<Vec<_>>());
    assert_eq!(redis.cmd(0, &["GET", "hit"]), "23");

    server.stop();
    assert!(!sock.exists(), "the unix socket is removed on exit");
}

#[test]
fn a_unix_socket_alone_is_shared_by_every_shard() {
    let redis = TestRedis::start();
    let dir = Scratch::new("alone");
    let sock = dir.0.join("h.sock");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hitcore"));
    cmd.args(["-w", "2", "--share-cpus", "--redis", &redis.url(0), "-b", &format!("unix:{}", sock.display())]);
    let mut server = TestServer::from_command(cmd, "Ready: 2 shards serving");
    let values: Vec<i64> = (0..20).map(|_| get_unix(&sock)).collect();
    assert_eq!(values, (1..=20).collect::<Vec<_>>());
    let served = server.stop();
    assert_eq!(served.iter().sum::<u64>(), 20, "{served:?}");
    assert!(!sock.exists());
}

#[test]
fn a_stale_socket_is_replaced_and_a_live_one_refused() {
    let dir = Scratch::new("stale");
    let sock = dir.0.join("h.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists(), "a stale socket file, as a crashed server leaves it");
    let redis = TestRedis::start();
    let unix = format!("unix:{}", sock.display());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hitcore"));
    cmd.args(["-w", "1", "--redis", &redis.url(0), "-b", &unix]);
    let mut first = TestServer::from_command(cmd, "Ready: 1 shards serving");
    assert_eq!(get_unix(&sock), 1);

    let out = Command::new(env!("CARGO_BIN_EXE_hitcore"))
        .args(["-w", "1", "--redis", &redis.url(0), "-b", &unix])
        .env_remove("REDIS_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("Connection in use: unix:"), "{stderr}");
    assert_eq!(get_unix(&sock), 2, "the refused second server left the first one's socket alone");
    first.stop();
}

#[test]
fn socket_activation_serves_the_passed_socket_from_the_first_connection() {
    let redis = TestRedis::start();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.args(["-l", &listen, "--fdname=http", env!("CARGO_BIN_EXE_hitcore"), "-w", "2", "--share-cpus"]);
    cmd.args(["--redis", &redis.url(0)]);
    let mut server = TestServer::from_command(cmd, &format!("Listening on {listen}"));
    let addr: std::net::SocketAddr = listen.parse().unwrap();

    // systemd-socket-activate starts hitcore on the first connection, which waits in the passed
    // socket's queue and is answered by it.
    assert_eq!(get_once(addr, GET).value(), 1);
    server.log.wait_for("Listening at: http://127.0.0.1", DEADLINE);
    server.log.wait_for("Ready: 2 shards serving", DEADLINE);
    let mut values: Vec<i64> = (0..20).map(|_| get_once(addr, GET).value()).collect();
    values.sort_unstable();
    assert_eq!(values, (2..=21).collect::<Vec<_>>());
    let check = Command::new(env!("CARGO_BIN_EXE_hitcore")).args(["--check-config", "-w", "1"]).output().unwrap();
    assert!(check.status.success(), "without LISTEN_* hitcore binds its default again");

    let served = server.stop();
    assert_eq!(served.iter().sum::<u64>(), 21, "{served:?}");
}

/// A server configured by `DIR/hitcore.toml` alone (binds included, so HUP can change them).
fn from_file(dir: &Scratch, settings: &str) -> (TestServer, PathBuf) {
    let file = dir.0.join("hitcore.toml");
    std::fs::write(&file, settings).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hitcore"));
    cmd.arg("-c").arg(&file);
    let server = TestServer::from_command(cmd, "Listening at: http://127.0.0.1");
    (server, file)
}

/// The `bind = [...]` line for these addresses.
fn bind_line(binds: &[&str]) -> String {
    let quoted: Vec<String> = binds.iter().map(|b| format!("\"{b}\"")).collect();
    format!("bind = [{}]\n", quoted.join(", "))
}

/// Rewrites the file, sends HUP and waits for the `n`th completed reload and for the shards it
/// replaced to have exited (so what they still held is let go).
fn hup_with(server: &TestServer, file: &Path, settings: &str, n: usize) {
    std::fs::write(file, settings).unwrap();
    let old = server.shard_pids();
    server.signal(libc::SIGHUP);
    server.log.wait_for_count("Reload complete", n, DEADLINE);
    for pid in old {
        wait_until(&format!("old shard {pid} exited"), DEADLINE, || !alive(pid));
    }
}

#[test]
fn hup_opens_added_binds_and_closes_removed_ones_while_the_kept_one_never_fails() {
    let redis = TestRedis::start();
    let dir = Scratch::new("hup-binds");
    let sock = dir.0.join("added.sock");
    let unix = format!("unix:{}", sock.display());
    let base = format!("workers = 2\nshare-cpus = true\nredis = \"{}\"\n", redis.url(0));
    let (server, file) = from_file(&dir, &(base.clone() + &bind_line(&["127.0.0.1:0"])));
    server.wait_ready(2);
    let load = Load::start(server.addr, 2);

    // Added: a unix socket and a second TCP address, both served by the new shards.
    hup_with(&server, &file, &(base.clone() + &bind_line(&["127.0.0.1:0", &unix, "127.0.0.2:0"])), 1);
    let second = listening(&server, "127.0.0.2");
    server.log.wait_for(&format!("Listening at: {unix}"), DEADLINE);
    assert!(get_unix(&sock) > 0);
    assert_eq!(get_once(second, GET).status, 200);

    // The unix socket removed: its file goes at once, the others keep serving.
    hup_with(&server, &file, &(base.clone() + &bind_line(&["127.0.0.1:0", "127.0.0.2:0"])), 2);
    assert!(!sock.exists(), "a removed unix socket's file is removed");
    assert!(UnixStream::connect(&sock).is_err());
    assert_eq!(get_once(second, GET).status, 200, "a kept address keeps serving");

    // The second TCP address removed: refused once the shards that held it are gone.
    hup_with(&server, &file, &(base.clone() + &bind_line(&["127.0.0.1:0"])), 3);
    // (A shard seen as a zombie may still be tearing down its other threads, and with them its
    // descriptors: the last connection may meet the listener closing, reset. Then: refused.)
    wait_until("the removed address refuses connections", DEADLINE, || matches!(one_request(second), Outcome::Refused));
    assert_eq!(server.log.count("Stopped listening at:"), 2, "{:?}", server.log.lines());
    assert_eq!(get_once(server.addr, GET).status, 200);

    let outcomes = load.finish();
    let t = tally(&outcomes);
    eprintln!("load on the kept address across three HUPs: {}", t.summary());
    assert!(t.ok > 0);
    assert_eq!((t.non_200, t.refused, t.failed.len()), (0, 0, 0), "{}: {:?}", t.summary(), t.failed);
    assert_unique(&t.values);
}

#[test]
fn hup_adding_an_address_in_use_keeps_the_old_binds_and_applies_the_rest() {
    let redis = TestRedis::start();
    let dir = Scratch::new("hup-busy");
    let kept = dir.0.join("kept.sock");
    let added = dir.0.join("added.sock");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let settings = |key: &str, binds: &[&str]| {
        format!("workers = 1\nredis = \"{}\"\nkey = \"{key}\"\n{}", redis.url(0), bind_line(binds))
    };
    let kept_bind = format!("unix:{}", kept.display());
    let added_bind = format!("unix:{}", added.display());
    let (mut server, file) = from_file(&dir, &settings("before", &["127.0.0.1:0", &kept_bind]));
    server.wait_ready(1);
    assert_eq!(get_unix(&kept), 1);

    hup_with(&server, &file, &settings("after", &["127.0.0.1:0", &kept_bind, &added_bind, &busy_addr]), 1);
    let line = server.log.wait_for("the binds stay as they were", DEADLINE);
    assert!(line.contains("[ERROR]") && line.contains(&format!("Connection in use: {busy_addr}")), "{line}");
    assert_eq!(server.log.count("the binds stay as they were"), 1);
    assert!(!added.exists(), "nothing of the refused set is left behind");
    assert!(alive(server.pid()), "the supervisor stays up");
    // The old binds serve, with the rest of the new configuration (the key).
    assert_eq!(get_unix(&kept), 1);
    assert_eq!(get_once(server.addr, GET).value(), 2);
    assert_eq!(redis.cmd(0, &["GET", "after"]), "2");

    // Once the address is free, the next HUP adds both.
    drop(busy);
    hup_with(&server, &file, &settings("after", &["127.0.0.1:0", &kept_bind, &added_bind, &busy_addr]), 2);
    assert_eq!(get_unix(&added), 3);
    assert_eq!(get_once(busy_addr.parse().unwrap(), GET).value(), 4);
    server.stop();
    assert!(!kept.exists() && !added.exists(), "unix sockets added on HUP are removed on exit too");
}
