//! Unit tests of the HTTPS configuration: each refusal names the flag, the file and why, and never
//! quotes a key. Certificates are made here with rcgen, in a directory removed at the end.

use super::*;

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("hitcore-https-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A self-signed certificate and its key, valid over the given years.
    fn pair(&self, name: &str, from: i32, until: i32) -> Https {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(until, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        Https {
            certfile: self.write(&format!("{name}.crt"), &cert.pem()),
            keyfile: self.write(&format!("{name}.key"), &key.serialize_pem()),
            clients: ClientCerts::None,
            min_version: MinVersion::Tls12,
        }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_good_pair_builds_with_alpn_and_resumption() {
    let dir = Dir::new("good");
    let https = dir.pair("a", 2020, 2090);
    let config = server_config(&https, SystemTime::now(), None).unwrap();
    assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    assert!(config.ticketer.enabled());
    let tls13 = Https { min_version: MinVersion::Tls13, ..https };
    assert!(server_config(&tls13, SystemTime::now(), None).is_ok());
}

#[test]
fn missing_mismatched_and_expired_files_are_refused_by_name() {
    let dir = Dir::new("refused");
    let a = dir.pair("a", 2020, 2090);
    let b = dir.pair("b", 2020, 2090);
    let now = SystemTime::now();

    let missing = Https { certfile: dir.0.join("nope.crt"), ..a.clone() };
    let e = server_config(&missing, now, None).unwrap_err();
    assert_eq!(e.flag, "--certfile");
    assert!(e.to_string().contains("nope.crt") && e.to_string().contains("No such file"), "{e}");

    let mismatched = Https { keyfile: b.keyfile.clone(), ..a.clone() };
    let e = server_config(&mismatched, now, None).unwrap_err();
    assert_eq!(e.flag, "--keyfile");
    assert!(e.to_string().contains("not the private key of the certificate"), "{e}");

    let old = dir.pair("old", 2001, 2002);
    let e = server_config(&old, now, None).unwrap_err();
    assert_eq!(e.flag, "--certfile");
    assert!(e.to_string().contains("expired on 2002-01-01 00:00:00 UTC"), "{e}");

    let future = dir.pair("future", 2090, 2091);
    let e = server_config(&future, now, None).unwrap_err();
    assert!(e.to_string().contains("not valid before 2090-01-01"), "{e}");

    let not_pem = Https { certfile: dir.write("junk.crt", "hello\n"), ..a.clone() };
    assert!(server_config(&not_pem, now, None).unwrap_err().to_string().contains("no PEM certificate"));
}

#[test]
fn a_broken_key_is_never_quoted() {
    let dir = Dir::new("quote");
    let a = dir.pair("a", 2020, 2090);
    let secret = "c2VjcmV0LWtleS1tYXRlcmlhbA";
    let broken = dir.write("broken.key", &format!("-----BEGIN PRIVATE KEY-----\n{secret}!!\n"));
    let e = server_config(&Https { keyfile: broken, ..a.clone() }, SystemTime::now(), None).unwrap_err();
    assert_eq!(e.flag, "--keyfile");
    assert!(!e.to_string().contains(secret) && !e.to_string().contains("BEGIN"), "{e}");
    let certs_only = Https { keyfile: a.certfile.clone(), ..a };
    let e = server_config(&certs_only, SystemTime::now(), None).unwrap_err();
    assert!(e.to_string().contains("no PEM private key"), "{e}");
}

#[test]
fn client_certificate_authorities_are_read() {
    let dir = Dir::new("clients");
    let a = dir.pair("a", 2020, 2090);
    let with_ca = Https { clients: ClientCerts::Required(a.certfile.clone()), ..a.clone() };
    assert!(server_config(&with_ca, SystemTime::now(), None).is_ok());
    let bad_ca = Https { clients: ClientCerts::Optional(dir.0.join("none.pem")), ..a };
    assert_eq!(server_config(&bad_ca, SystemTime::now(), None).unwrap_err().flag, "--ca-certs");
}

#[test]
fn versions_parse_in_every_spelling() {
    for t in ["1.2", "TLSv1.2", "TLSv1_2", "tlsv1.2"] {
        assert_eq!(MinVersion::parse(t), Ok(MinVersion::Tls12), "{t}");
    }
    for t in ["1.3", "TLSv1.3", "TLSv1_3"] {
        assert_eq!(MinVersion::parse(t), Ok(MinVersion::Tls13), "{t}");
    }
    assert!(MinVersion::parse("1.1").unwrap_err().contains("TLSv1.2 or TLSv1.3"));
    for v in [MinVersion::Tls12, MinVersion::Tls13] {
        assert_eq!(MinVersion::parse(&v.to_string()), Ok(v), "what is printed reads back");
    }
}
