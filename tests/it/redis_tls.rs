//! `rediss://`: a real redis-server speaking TLS with certificates made here (rcgen): a private CA
//! trusted with --redis-tls-ca, the same server without it, mutual TLS, a name the certificate
//! does not carry, --redis-tls-insecure, and files that cannot be used at start.

use crate::common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

/// A private CA, a server certificate for IP 127.0.0.1 only, and a client certificate, as PEM
/// files in a directory removed on drop.
struct Certs {
    dir: PathBuf,
}

impl Certs {
    fn make() -> Certs {
        let dir = temp_path("hitcore-tls", "");
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "hitcore test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca.self_signed(&ca_key).unwrap();

        let leaf = |name: &str, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(DnType::CommonName, name);
            p.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
            p.extended_key_usages = vec![usage];
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            (p.signed_by(&key, &ca_cert, &ca_key).unwrap().pem(), key.serialize_pem())
        };
        let (server, server_key) = leaf("redis", ExtendedKeyUsagePurpose::ServerAuth);
        let (client, client_key) = leaf("hitcore", ExtendedKeyUsagePurpose::ClientAuth);
        for (name, pem) in [
            ("ca.crt", ca_cert.pem()),
            ("server.crt", server),
            ("server.key", server_key),
            ("client.crt", client),
            ("client.key", client_key),
        ] {
            std::fs::write(dir.join(name), pem).unwrap();
        }
        Certs { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_string()
    }

    /// A redis-server with a plain port (for the test's own commands) and a TLS port.
    fn redis(&self, auth_clients: &str) -> (TestRedis, u16) {
        let tls_port = free_port();
        let redis = TestRedis::start_args(
            Some(PASSWORD),
            &[
                "--tls-port",
                &tls_port.to_string(),
                "--tls-cert-file",
                &self.path("server.crt"),
                "--tls-key-file",
                &self.path("server.key"),
                "--tls-ca-cert-file",
                &self.path("ca.crt"),
                "--tls-auth-clients",
                auth_clients,
            ],
        );
        (redis, tls_port)
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn url(host: &str, port: u16) -> String {
    format!("rediss://:{}@{host}:{port}/0", percent(PASSWORD))
}

fn assert_503(server: &TestServer) {
    let r = get_once(server.addr, GET);
    assert_eq!((r.status, r.header("Retry-After")), (503, Some("1")), "{r:?}");
}

#[test]
fn a_private_ca_is_trusted_with_redis_tls_ca_and_not_without_it() {
    let certs = Certs::make();
    let (redis, port) = certs.redis("no");
    let server =
        TestServer::start(&["-w", "1", "--redis", &url("127.0.0.1", port), "--redis-tls-ca", &certs.path("ca.crt")]);
    server.wait_ready(1);
    let mut c = Client::connect(server.addr);
    c.send(GET.repeat(3).as_bytes());
    let values: Vec<i64> = (0..3).map(|_| c.read_response(false).value()).collect();
    assert_eq!(values, [1, 2, 3]);
    assert_eq!(redis.cmd(0, &["GET", "hit"]), "3");
    assert!(server.log.lines().iter().all(|l| !l.contains(PASSWORD)));

    // The same server, verified against the system's roots, which do not know this CA.
    let server = TestServer::start(&["-w", "1", "--redis", &url("127.0.0.1", port)]);
    let line = server.log.wait_for(&format!("TLS with 127.0.0.1:{port} failed"), DEADLINE);
    assert!(line.contains("[ERROR]") && line.contains("UnknownIssuer"), "{line}");
    assert_503(&server);
    assert_eq!(redis.cmd(0, &["GET", "hit"]), "3", "nothing was written over an unverified session");
}

#[test]
fn a_name_the_certificate_does_not_carry_is_refused() {
    let certs = Certs::make();
    let (_redis, port) = certs.redis("no");
    // The certificate carries IP 127.0.0.1 only; localhost resolves to it (and maybe ::1 first,
    // where nothing listens), but the name checked is the URL's.
    let server =
        TestServer::start(&["-w", "1", "--redis", &url("localhost", port), "--redis-tls-ca", &certs.path("ca.crt")]);
    let line = server.log.wait_for("TLS with localhost", DEADLINE);
    assert!(line.contains("[ERROR]") && line.contains("not valid for name \"localhost\""), "{line}");
    assert_503(&server);
}

#[test]
fn mutual_tls_needs_the_client_certificate() {
    let certs = Certs::make();
    let (_redis, port) = certs.redis("yes");
    let server =
        TestServer::start(&["-w", "1", "--redis", &url("127.0.0.1", port), "--redis-tls-ca", &certs.path("ca.crt")]);
    // Under TLS 1.3 the server asks for the certificate after the client's handshake is done, so
    // the refusal arrives as an alert on the first read: still a TLS error line.
    let line = server.log.wait_for(&format!("TLS with 127.0.0.1:{port} failed"), DEADLINE);
    assert!(line.contains("[ERROR]"), "{line}");
    assert_503(&server);
    assert_eq!(server.log.count("Connected to Redis"), 0);

    let server = TestServer::start(&[
        "-w",
        "1",
        "--redis",
        &url("127.0.0.1", port),
        "--redis-tls-ca",
        &certs.path("ca.crt"),
        "--redis-tls-cert",
        &certs.path("client.crt"),
        "--redis-tls-key",
        &certs.path("client.key"),
    ]);
    server.wait_ready(1);
    assert_eq!(get_once(server.addr, GET).value(), 1);
}

#[test]
fn insecure_skips_verification_and_says_so_at_start() {
    let certs = Certs::make();
    let (_redis, port) = certs.redis("no");
    let server = TestServer::start(&["-w", "1", "--redis", &url("localhost", port), "--redis-tls-insecure"]);
    server.wait_ready(1);
    assert_eq!(get_once(server.addr, GET).value(), 1);
    let warning = server.log.wait_for("--redis-tls-insecure", DEADLINE);
    assert!(warning.contains("[WARNING]") && !warning.contains(PASSWORD), "{warning}");
    assert_eq!(server.log.count("--redis-tls-insecure"), 1, "once, from the supervisor");
}

fn refused(args: &[&str], names: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_hitcore")).args(args).env_remove("REDIS_URL").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    for name in names {
        assert!(stderr.contains(name), "{args:?}: should name {name}: {stderr}");
    }
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn unusable_tls_files_and_bad_urls_exit_2_naming_what_is_wrong() {
    let certs = Certs::make();
    let tls = "rediss://:hunter2@127.0.0.1:6380/0";
    refused(&["--redis", tls, "--redis-tls-ca", "/nonexistent/ca.pem"], &["--redis-tls-ca", "/nonexistent/ca.pem"]);
    // Readable, but not a certificate.
    refused(&["--redis", tls, "--redis-tls-ca", &certs.path("server.key")], &["--redis-tls-ca", "server.key"]);
    refused(
        &["--redis", tls, "--redis-tls-cert", &certs.path("client.crt"), "--redis-tls-key", "/nonexistent/k.pem"],
        &["--redis-tls-key", "/nonexistent/k.pem"],
    );
    refused(&["--redis", tls, "--redis-tls-cert", &certs.path("client.crt")], &["--redis-tls-key"]);
    refused(&["--redis", tls, "--redis-tls-insecure", "--redis-tls-ca", &certs.path("ca.crt")], &["--redis-tls-ca"]);
    refused(
        &["--redis", "redis://:hunter2@127.0.0.1/0", "--redis-tls-ca", &certs.path("ca.crt")],
        &["--redis-tls-ca", "rediss://"],
    );
    refused(&["--redis", "redis+tls://:hunter2@127.0.0.1/0"], &["--redis", "unsupported scheme 'redis+tls'"]);
    refused(&["--redis", "rediss://:hunter2@127.0.0.1:70000/0"], &["--redis", "invalid port"]);
    refused(&["--redis", "rediss://:hunter2@127.0.0.1:0/0"], &["--redis", "invalid port 0"]);
}

#[test]
fn help_lists_the_redis_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_hitcore")).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "rediss://",
        "--redis-tls-ca",
        "--redis-tls-cert",
        "--redis-tls-key",
        "--redis-tls-insecure",
        "--wait-replicas",
        "--wait-timeout",
    ] {
        assert!(help.contains(flag), "help lacks {flag}:\n{help}");
    }
}

#[test]
fn pipelined_and_concurrent_load_over_tls_hands_out_each_value_once() {
    let certs = Certs::make();
    let (redis, port) = certs.redis("no");
    for coalesce in [true, false] {
        let (target, ca) = (url("127.0.0.1", port), certs.path("ca.crt"));
        let mut args = vec!["-w", "2", "--share-cpus", "--redis", &target, "--redis-tls-ca", &ca];
        if !coalesce {
            args.push("--no-coalesce");
        }
        let server = TestServer::start(&args);
        server.wait_ready(2);
        let before: i64 = redis.cmd(0, &["GET", "hit"]).parse().unwrap_or(0);
        let addr = server.addr;
        // Batches of 64 make writes of several TLS records with --no-coalesce.
        let pipelined = std::thread::spawn(move || {
            let mut c = Client::connect(addr);
            let mut values = Vec::new();
            for _ in 0..20 {
                c.send(GET.repeat(64).as_bytes());
                values.extend((0..64).map(|_| c.read_response(false).value()));
            }
            values
        });
        let load = Load::start(addr, 4);
        let mut values = pipelined.join().unwrap();
        let t = tally(&load.finish());
        assert_eq!((t.non_200, t.failed.len()), (0, 0), "{}", t.summary());
        values.extend(t.values);
        assert_unique(&values);
        let after: i64 = redis.cmd(0, &["GET", "hit"]).parse().unwrap();
        assert_eq!(after - before, values.len() as i64, "coalesce {coalesce}: the counter moved by the 200s");
    }
}
