//! HTTPS (`--certfile`, `--keyfile`, `--ca-certs`, `--cert-reqs`, `--ssl-min-version`) against real
//! clients: curl, `openssl s_client` and a rustls client, with certificates made here (rcgen): ALPN,
//! TLS 1.2 and 1.3, the minimum version, client certificates, session resumption, plain HTTP on
//! the HTTPS port, refused files, HUP renewing the certificate under a probe, and keep-alive
//! clients answered through a handshake flood.

use crate::common;

use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::https::{Pki, TlsClient};
use common::*;

/// hitcore serving HTTPS with `crt`/`key` and the extra flags, one shard unless they say.
fn https_server(redis: &TestRedis, crt: &str, key: &str, extra: &[&str]) -> TestServer {
    let url = redis.url(0);
    let mut args = vec!["--redis", url.as_str(), "--certfile", crt, "--keyfile", key];
    if !extra.contains(&"-w") {
        args.extend(["-w", "1"]);
    }
    args.extend(extra);
    let server = TestServer::start(&args);
    server.log.wait_for("Listening at: https://", DEADLINE);
    server.wait_ready(args.iter().position(|a| *a == "-w").map_or(1, |i| args[i + 1].parse().unwrap()));
    server
}

/// Runs a command to its end (killed after [`DEADLINE`]), feeding it `input`.
fn run(program: &str, args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    drop(stdin);
    let pid = child.id() as i32;
    // Killed only if it is still running at the deadline: until this thread hears that the wait
    // below returned, the child is unreaped, so its pid cannot name another process.
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if finished.recv_timeout(DEADLINE).is_err() {
            // SAFETY: the child this test spawned, not yet reaped (see above).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    let out = child.wait_with_output().unwrap();
    let _ = done.send(());
    watchdog.join().unwrap();
    out
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn curl(pki: &Pki, addr: std::net::SocketAddr, extra: &[&str]) -> Output {
    let url = format!("https://{addr}/");
    let ca = pki.path("ca.crt");
    let mut args = vec!["-sS", "-v", "--max-time", "20", "--cacert", ca.as_str()];
    args.extend(extra);
    args.push(url.as_str());
    run("curl", &args, b"")
}

fn s_client(pki: &Pki, addr: std::net::SocketAddr, extra: &[&str], input: &[u8]) -> Output {
    let connect = addr.to_string();
    let ca = pki.path("ca.crt");
    let mut args = vec!["s_client", "-connect", connect.as_str(), "-CAfile", ca.as_str(), "-verify_return_error"];
    args.extend(extra);
    run("openssl", &args, input)
}

const CLOSE_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

#[test]
fn curl_and_openssl_get_http11_over_tls12_and_tls13() {
    let redis = TestRedis::start();
    let pki = Pki::new("versions");
    let (crt, key) = pki.server("one", 2020, 2090);
    let server = https_server(&redis, &crt, &key, &[]);

    let out = curl(&pki, server.addr, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1");
    let log = text(&out);
    assert!(log.lines().any(|l| l.contains("ALPN") && l.contains("accepted") && l.contains("http/1.1")), "{log}");
    assert!(log.contains("TLSv1.3"), "{log}");

    let out = curl(&pki, server.addr, &["--tlsv1.2", "--tls-max", "1.2"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2", "{}", text(&out));
    assert!(text(&out).contains("TLSv1.2"), "{}", text(&out));

    for (flag, version) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
        let out = s_client(&pki, server.addr, &[flag, "-alpn", "http/1.1", "-ign_eof"], CLOSE_REQUEST);
        let log = text(&out);
        assert!(log.contains(&format!("New, {version}")), "{log}");
        assert!(log.contains("ALPN protocol: http/1.1"), "{log}");
        assert!(log.contains("HTTP/1.1 200 OK"), "{log}");
    }
    // A client that asks for no ALPN is served too.
    let mut client = TlsClient::connect(server.addr, &pki.client_config(None), DEADLINE).unwrap();
    assert_eq!(client.alpn().as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(client.get().unwrap(), (200, "5".to_string()));
    assert_eq!(client.get().unwrap(), (200, "6".to_string()), "keep-alive over TLS");
    assert_eq!(redis.cmd(0, &["GET", "hit"]), "6");
}

#[test]
fn a_client_that_sends_an_ip_address_as_sni_is_served_without_a_log_line_each() {
    // RFC 6066 forbids an IP address as SNI, yet wrk and other OpenSSL clients send the address
    // they dial; rustls ignores it, and its WARNING used to reach the error log once per connection.
    let redis = TestRedis::start();
    let pki = Pki::new("ipsni");
    let (crt, key) = pki.server("one", 2020, 2090);
    let server = https_server(&redis, &crt, &key, &[]);
    for _ in 0..3 {
        let out = s_client(&pki, server.addr, &["-servername", "127.0.0.1", "-ign_eof"], CLOSE_REQUEST);
        assert!(text(&out).contains("HTTP/1.1 200 OK"), "{}", text(&out));
    }
    // Every line the shards wrote is through once the supervisor's last line is.
    server.signal(libc::SIGTERM);
    server.log.wait_for("Shutting down: Master", DEADLINE);
    let lines = server.log.lines();
    assert!(!lines.iter().any(|l| l.contains("SNI") || l.contains("rustls")), "{lines:#?}");
}

#[test]
fn ssl_min_version_13_refuses_tls12() {
    let redis = TestRedis::start();
    let pki = Pki::new("min");
    let (crt, key) = pki.server("one", 2020, 2090);
    let server = https_server(&redis, &crt, &key, &["--ssl-min-version", "1.3"]);
    let out = curl(&pki, server.addr, &["--tlsv1.2", "--tls-max", "1.2"]);
    assert!(!out.status.success() && out.stdout.is_empty(), "{}", text(&out));
    let out = s_client(&pki, server.addr, &["-tls1_2"], b"");
    assert!(!text(&out).contains("New, TLSv1.2"), "{}", text(&out));
    let out = curl(&pki, server.addr, &[]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1", "{}", text(&out));
    assert_eq!(redis.cmd(0, &["GET", "hit"]), "1");
}

#[test]
fn client_certificates_are_required_and_verified() {
    let redis = TestRedis::start();
    let pki = Pki::new("mtls");
    let (crt, key) = pki.server("one", 2020, 2090);
    let (alice_crt, alice_key) = pki.client("alice");
    let other = Pki::new("mtls-other");
    let (eve_crt, eve_key) = other.client("eve");
    let ca = pki.path("ca.crt");

    let server = https_server(&redis, &crt, &key, &["--ca-certs", &ca]);
    let get = |client: Option<(&str, &str)>| {
        TlsClient::connect(server.addr, &pki.client_config(client), DEADLINE).and_then(|mut c| c.get())
    };
    assert_eq!(get(Some((&alice_crt, &alice_key))), Ok((200, "1".to_string())));
    // TLS 1.3 ends the handshake on the client's side before the server has checked its
    // certificate: the refusal arrives as an alert at the first read.
    assert!(get(None).is_err());
    assert!(get(Some((&eve_crt, &eve_key))).is_err());
    let out = curl(&pki, server.addr, &["--cert", &alice_crt, "--key", &alice_key]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2", "{}", text(&out));
    let out = curl(&pki, server.addr, &[]);
    assert!(out.stdout.is_empty(), "{}", text(&out));
    drop(server);

    // --cert-reqs 1: a certificate is verified when presented, and none is needed.
    let server = https_server(&redis, &crt, &key, &["--ca-certs", &ca, "--cert-reqs", "1"]);
    let get = |client: Option<(&str, &str)>| {
        TlsClient::connect(server.addr, &pki.client_config(client), DEADLINE).and_then(|mut c| c.get())
    };
    assert_eq!(get(None), Ok((200, "3".to_string())));
    assert_eq!(get(Some((&alice_crt, &alice_key))), Ok((200, "4".to_string())));
    assert!(get(Some((&eve_crt, &eve_key))).is_err());
    assert_eq!(redis.cmd(0, &["GET", "hit"]), "4");
}

#[test]
fn sessions_resume_on_every_shard() {
    let redis = TestRedis::start();
    let pki = Pki::new("resume");
    let (crt, key) = pki.server("one", 2020, 2090);
    // Two shards, and an access log of which one served each request: a resumed session must not
    // depend on the kernel giving the new connection to the shard that issued the ticket.
    let access = pki.path("access.log");
    let server = https_server(
        &redis,
        &crt,
        &key,
        &[
            "-w",
            "2",
            "--share-cpus",
            "--access-logfile",
            &access,
            "--access-logformat",
            "%(p)s %({wsgi.url_scheme}e)s %(H)s",
        ],
    );
    const RESUMES: usize = 12;
    for (flag, version) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
        let session = pki.path(&format!("session{flag}"));
        // A request read to the end, so that TLS 1.3's tickets (sent after the handshake) arrive.
        let out = s_client(&pki, server.addr, &[flag, "-ign_eof", "-sess_out", &session], CLOSE_REQUEST);
        assert!(text(&out).contains(&format!("New, {version}")), "{}", text(&out));
        for _ in 0..RESUMES {
            let out = s_client(&pki, server.addr, &[flag, "-ign_eof", "-sess_in", &session], CLOSE_REQUEST);
            let log = text(&out);
            assert!(log.contains(&format!("Reused, {version}")), "{log}");
            assert!(log.contains("HTTP/1.1 200 OK"), "{log}");
        }
    }
    let served = 2 * (RESUMES + 1);
    assert_eq!(redis.cmd(0, &["GET", "hit"]), served.to_string());
    let mut pids = Vec::new();
    wait_until("the access log", DEADLINE, || {
        pids = std::fs::read_to_string(&access).unwrap_or_default().lines().map(str::to_string).collect();
        pids.len() == served
    });
    // The access log says how each request came: the scheme, and HTTP/1.1 inside TLS.
    assert!(pids.iter().all(|l| l.ends_with(" https HTTP/1.1")), "{pids:?}");
    pids.sort();
    pids.dedup();
    // Both shards served some (each of 26 connections goes to either: all to one is a 2^-25 chance).
    assert_eq!(pids.len(), 2, "{pids:?}");
}

#[test]
fn plain_http_on_the_https_port_is_closed_with_a_rate_limited_line() {
    let redis = TestRedis::start();
    let pki = Pki::new("plain");
    let (crt, key) = pki.server("one", 2020, 2090);
    let server = https_server(&redis, &crt, &key, &[]);
    let line = "sent plain HTTP to an HTTPS listener";
    let plain = || {
        let mut client = Client::connect(server.addr);
        client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        client.assert_closed();
    };
    const BURST: usize = 20;
    let started = Instant::now();
    for _ in 0..BURST {
        plain();
    }
    server.log.wait_for(line, DEADLINE);
    let burst = started.elapsed();
    let lines = server.log.count(line);
    // One line per second at most; the burst may straddle a second's boundary.
    assert!(lines >= 1 && lines as u64 <= burst.as_secs() + 2, "{lines} lines in {burst:?}");
    // After a quiet second the next one is reported at once, with the count of those left unsaid:
    // every connection is either a line or counted in the next one.
    std::thread::sleep(Duration::from_millis(1100));
    plain();
    let said = server.log.wait_for_count(line, lines + 1, DEADLINE);
    let others = |l: &String| match l.split_once(" others since") {
        Some((head, _)) => head.rsplit('(').next().unwrap().parse::<usize>().unwrap(),
        None => 0,
    };
    assert_eq!(said.iter().map(|l| 1 + others(l)).sum::<usize>(), BURST + 1, "{said:?}");
    assert!(said.iter().any(|l| l.contains("others since the last such line")), "{said:?}");
    // Nothing was counted, and HTTPS on the same port still works.
    assert_eq!(redis.cmd(0, &["GET", "hit"]), "(nil)");
    let out = curl(&pki, server.addr, &[]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1", "{}", text(&out));
}

#[test]
fn unusable_certificates_are_refused_at_start_and_by_check_config() {
    let pki = Pki::new("refused");
    let (crt, key) = pki.server("good", 2020, 2090);
    let (_, other_key) = pki.server("other", 2020, 2090);
    let (old_crt, old_key) = pki.server("old", 2001, 2002);
    let missing = pki.path("missing.crt");
    let key_text = std::fs::read_to_string(&key).unwrap();
    let key_body = key_text.lines().nth(1).unwrap().to_string();
    let cases: [(&str, &str, &str, &str); 5] = [
        (&missing, &key, "--certfile", "No such file"),
        (pki.dir.to_str().unwrap(), &key, "--certfile", "Is a directory"),
        (&crt, &other_key, "--keyfile", "not the private key of the certificate"),
        (&old_crt, &old_key, "--certfile", "expired on 2002-01-01 00:00:00 UTC"),
        (&crt, &crt, "--keyfile", "no PEM private key"),
    ];
    for (certfile, keyfile, flag, why) in cases {
        for check in [true, false] {
            let mut args = vec!["-w", "1", "-b", "127.0.0.1:0", "--certfile", certfile, "--keyfile", keyfile];
            if check {
                args.push("--check-config");
            }
            let out = run(env!("CARGO_BIN_EXE_hitcore"), &args, b"");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
            assert!(stderr.contains(flag) && stderr.contains(why), "{args:?}: {stderr}");
            let named = if flag == "--keyfile" { keyfile } else { certfile };
            assert!(stderr.contains(named), "{args:?}: {stderr}");
            assert!(!stderr.contains(&key_body) && !stderr.contains("PRIVATE KEY"), "{stderr}");
        }
    }
    // The flags that need HTTPS say so.
    let out = run(env!("CARGO_BIN_EXE_hitcore"), &["--check-config", "--ca-certs", &crt], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ca-certs"), "{}", text(&out));
}

/// Opens a new TLS connection every 50 ms and records whose certificate served it and whether
/// `GET /` was answered, until told to stop.
struct Probe {
    stop: Arc<AtomicBool>,
    /// Probes made so far.
    made: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<Vec<Result<String, String>>>,
}

impl Probe {
    fn start(addr: std::net::SocketAddr, config: Arc<rustls::ClientConfig>) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let made = Arc::new(AtomicUsize::new(0));
        let (flag, count) = (stop.clone(), made.clone());
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let next = Instant::now() + Duration::from_millis(50);
                let outcome = TlsClient::connect(addr, &config, DEADLINE).and_then(|mut c| {
                    let name = c.server_name();
                    c.get()
                        .and_then(|(status, _)| if status == 200 { Ok(name) } else { Err(format!("status {status}")) })
                });
                seen.push(outcome);
                count.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            seen
        });
        Probe { stop, made, thread }
    }

    /// Waits until `more` probes beyond those made so far have been made.
    fn wait_for(&self, more: usize) {
        let until = self.made.load(Ordering::Relaxed) + more;
        wait_until("the probes", DEADLINE, || self.made.load(Ordering::Relaxed) >= until);
    }

    fn finish(self) -> Vec<Result<String, String>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

#[test]
fn hup_serves_a_renewed_certificate_without_a_failed_connection() {
    let redis = TestRedis::start();
    let pki = Pki::new("hup");
    let (crt, key) = pki.server("one", 2020, 2090);
    let server = https_server(&redis, &crt, &key, &["-w", "2", "--share-cpus"]);
    let config = pki.client_config(None);
    let probe = Probe::start(server.addr, config.clone());
    let one = || TlsClient::connect(server.addr, &config, DEADLINE).unwrap().server_name();
    assert_eq!(one(), "one");
    probe.wait_for(5);

    // Renewed as certbot does: new files in place, then HUP.
    pki.leaf("server", "two", rcgen::ExtendedKeyUsagePurpose::ServerAuth, 2020, 2090);
    std::fs::rename(pki.path("server.crt"), &crt).unwrap();
    std::fs::rename(pki.path("server.key"), &key).unwrap();
    let old = server.shard_pids();
    server.signal(libc::SIGHUP);
    server.log.wait_for("Reload complete", DEADLINE);
    // The old shards share the listeners with their replacements until they see their USR2.
    wait_until("the old shards exit", DEADLINE, || old.iter().all(|&p| !alive(p)));
    for _ in 0..5 {
        assert_eq!(one(), "two");
    }
    probe.wait_for(5);

    // A broken renewal (a key of another certificate): one ERROR, and the current one stays.
    let errors_before = server.log.count("[ERROR]");
    let (_, stray_key) = pki.server("stray", 2020, 2090);
    std::fs::copy(&stray_key, &key).unwrap();
    server.signal(libc::SIGHUP);
    let line = server.log.wait_for("last reload refused", DEADLINE);
    assert!(line.contains("[ERROR]") && line.contains("--keyfile") && line.contains(&key), "{line}");
    for _ in 0..3 {
        assert_eq!(one(), "two");
    }
    probe.wait_for(5);
    let seen = probe.finish();
    assert_eq!(server.log.count("[ERROR]"), errors_before + 1, "{}", server.log.lines().join("\n"));
    let failures: Vec<_> = seen.iter().filter(|o| o.is_err()).collect();
    assert!(failures.is_empty(), "{} of {} probes failed: {failures:?}", failures.len(), seen.len());
    let first_two = seen.iter().position(|o| o.as_deref() == Ok("two")).expect("the new certificate served");
    assert!(seen[..first_two].iter().all(|o| o.as_deref() == Ok("one")));
    assert!(seen.len() >= 10, "only {} probes", seen.len());
    drop(server);
}

#[test]
fn keep_alive_clients_are_answered_during_a_handshake_flood() {
    let redis = TestRedis::start();
    let pki = Pki::new("flood");
    let (crt, key) = pki.server("one", 2020, 2090);
    let server = https_server(&redis, &crt, &key, &[]);
    let config = pki.client_config(None);
    let addr = server.addr;
    let flooding = Arc::new(AtomicBool::new(true));

    // Keep-alive clients, each on one connection for the whole flood.
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (config, flooding) = (config.clone(), flooding.clone());
            std::thread::spawn(move || {
                let mut c = TlsClient::connect(addr, &config, DEADLINE).unwrap();
                let mut answered = Vec::new();
                while flooding.load(Ordering::Relaxed) {
                    let (status, body) = c.get().unwrap();
                    assert_eq!(status, 200);
                    answered.push((Instant::now(), body.parse::<u64>().unwrap()));
                }
                answered
            })
        })
        .collect();
    // The flood: full handshakes, one after another, and handshakes that stall after the first bytes.
    let flood: Vec<_> = (0..6)
        .map(|i| {
            let (config, flooding) = (config.clone(), flooding.clone());
            std::thread::spawn(move || {
                let mut done = 0u64;
                let mut stalled = Vec::new();
                while flooding.load(Ordering::Relaxed) {
                    if i % 3 == 2 {
                        use std::io::Write;
                        let mut s = std::net::TcpStream::connect(addr).unwrap();
                        let _ = s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]);
                        stalled.push(s);
                        std::thread::sleep(Duration::from_millis(5));
                    } else if TlsClient::connect(addr, &config, DEADLINE).is_ok() {
                        done += 1;
                    }
                }
                done
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let flood_end = Instant::now();
    flooding.store(false, Ordering::Relaxed);
    let handshakes: u64 = flood.into_iter().map(|t| t.join().unwrap()).sum();
    let answered: Vec<Vec<(Instant, u64)>> = clients.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(handshakes > 0, "no handshake completed during the flood");
    for (i, a) in answered.iter().enumerate() {
        // The first answer may come before the flood has started; more must come while it runs.
        let during = a.iter().filter(|(at, _)| *at < flood_end).count();
        assert!(during >= 2, "keep-alive client {i} got {during} answers during the flood");
    }
    let total: usize = answered.iter().map(Vec::len).sum();
    let mut values: Vec<i64> = answered.into_iter().flatten().map(|(_, v)| v as i64).collect();
    assert_unique(&values);
    values.sort_unstable();
    assert_eq!(redis.cmd(0, &["GET", "hit"]), total.to_string(), "handshakes alone count nothing");
    eprintln!("during the flood: {handshakes} handshakes, {total} keep-alive answers");
}

#[test]
fn tcp_addresses_speak_https_and_unix_ones_stay_plain() {
    let redis = TestRedis::start();
    let pki = Pki::new("binds");
    let (crt, key) = pki.server("one", 2020, 2090);
    let sock = pki.path("hitcore.sock");
    let unix = format!("unix:{sock}");
    let server = https_server(&redis, &crt, &key, &["-b", "127.0.0.1:0", "-b", &unix]);
    server.log.wait_for(&format!("Listening at: {unix}"), DEADLINE);
    let out = curl(&pki, server.addr, &[]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1", "{}", text(&out));
    let out = run("curl", &["-sS", "--max-time", "20", "--unix-socket", &sock, "http://hitcore/"], b"");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2", "{}", text(&out));
    assert_eq!(redis.cmd(0, &["GET", "hit"]), "2");
}

#[test]
fn hup_turns_https_on_and_off_with_the_config_file() {
    let redis = TestRedis::start();
    let pki = Pki::new("toggle");
    let (crt, key) = pki.server("one", 2020, 2090);
    let file = pki.path("hitcore.toml");
    std::fs::write(&file, "").unwrap();
    let url = redis.url(0);
    let server = TestServer::start(&["-w", "1", "-c", &file, "--redis", &url]);
    server.wait_ready(1);
    assert_eq!(get_once(server.addr, "GET / HTTP/1.1\r\nHost: t\r\n\r\n").value(), 1);

    std::fs::write(&file, format!("certfile = {crt:?}\nkeyfile = {key:?}\n")).unwrap();
    let old = server.shard_pids();
    server.signal(libc::SIGHUP);
    server.log.wait_for("Reload complete", DEADLINE);
    // Until the old shard has seen its USR2 it may still take a connection, in plain HTTP.
    wait_until("the old shard exits", DEADLINE, || old.iter().all(|&p| !alive(p)));
    let config = pki.client_config(None);
    let mut client = TlsClient::connect(server.addr, &config, DEADLINE).unwrap();
    let (status, _) = client.get().unwrap();
    assert_eq!(status, 200);
    drop(client);

    std::fs::write(&file, "").unwrap();
    let old = server.shard_pids();
    server.signal(libc::SIGHUP);
    server.log.wait_for_count("Reload complete", 2, DEADLINE);
    wait_until("the old shard exits", DEADLINE, || old.iter().all(|&p| !alive(p)));
    assert_eq!(get_once(server.addr, "GET / HTTP/1.1\r\nHost: t\r\n\r\n").value(), 3);
}

#[test]
fn handshake_outcomes_are_counted_in_the_metrics() {
    let redis = TestRedis::start();
    let pki = Pki::new("metrics");
    let (crt, key) = pki.server("one", 2020, 2090);
    let server = https_server(&redis, &crt, &key, &["--metrics-bind", "127.0.0.1:0"]);
    let line = server.log.wait_for("Serving metrics at: http://", DEADLINE);
    let metrics: std::net::SocketAddr =
        line.split("http://").nth(1).unwrap().split('/').next().unwrap().parse().unwrap();

    // done: one; failed: a client that trusts another CA refuses the certificate (its alert ends
    // the server's handshake); plain_http: one; closed: a connection that sends nothing.
    let mut ok = TlsClient::connect(server.addr, &pki.client_config(None), DEADLINE).unwrap();
    assert_eq!(ok.get().unwrap().0, 200);
    let other = Pki::new("metrics-other");
    assert!(TlsClient::connect(server.addr, &other.client_config(None), DEADLINE).is_err());
    let mut plain = Client::connect(server.addr);
    plain.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    plain.assert_closed();
    drop(std::net::TcpStream::connect(server.addr).unwrap());

    let want = [("done", 1), ("failed", 1), ("plain_http", 1), ("closed", 1)];
    let mut text = String::new();
    wait_until("the handshake counters", DEADLINE, || {
        text = get_once(metrics, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n").text();
        want.iter()
            .all(|(outcome, n)| text.contains(&format!("hitcore_tls_handshakes_total{{outcome=\"{outcome}\"}} {n}\n")))
    });
}

/// An idle TLS keep-alive connection lives for `--keep-alive`, not for what was left of the
/// handshake's `--header-timeout`: the handshake bounds its reads with the socket's timeout, and
/// the connection's reads that follow are bounded by their own deadline (the shard's tick), so that
/// timeout must not outlive the handshake.
#[test]
fn an_idle_tls_connection_lives_for_keep_alive_not_the_handshakes_deadline() {
    let redis = TestRedis::start();
    let pki = Pki::new("keepalive");
    let (crt, key) = pki.server("one", 2020, 2090);
    let server = https_server(&redis, &crt, &key, &["--header-timeout", "1", "--keep-alive", "30"]);
    let mut client = TlsClient::connect(server.addr, &pki.client_config(None), DEADLINE).unwrap();
    assert_eq!(client.get().unwrap(), (200, "1".to_string()));
    // Idle for twice the header timeout: the connection must still be open.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(client.get().unwrap(), (200, "2".to_string()), "closed before --keep-alive");
}
