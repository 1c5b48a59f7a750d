//! The counting API over HTTPS (`--certfile`/`--keyfile`): JSON routes and a `/stream` of
//! Server-Sent Events through curl, with certificates made here.

use crate::common;

use std::process::{Command, Stdio};

use common::https::Pki;
use common::*;

fn curl(ca: &str, url: &str, extra: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert", ca])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl must be installed");
    assert!(out.status.success(), "curl {url}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_api_and_its_stream_over_https() {
    let redis = TestRedis::start();
    let pki = Pki::new("api");
    let (crt, key) = pki.server("api", 2020, 2090);
    let url = redis.url(0);
    let server = TestServer::start(&[
        "-w",
        "2",
        "--share-cpus",
        "--redis",
        &url,
        "--certfile",
        &crt,
        "--keyfile",
        &key,
        "--api-stream",
    ]);
    server.log.wait_for("Listening at: https://", DEADLINE);
    server.wait_ready(2);
    let ca = pki.path("ca.crt");
    let base = format!("https://{}", server.addr);
    assert_eq!(curl(&ca, &format!("{base}/hit/secure/page"), &[]), "{\"value\":1}");

    // A stream for a few seconds while the counter moves; curl ends it at --max-time.
    let stream = Command::new("curl")
        .args(["-sS", "-N", "--max-time", "8", "--cacert", &ca, &format!("{base}/stream/secure/page")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The stream's first event (the current value) comes once it is subscribed; then count two more.
    let mut stream = stream;
    let mut stdout = stream.stdout.take().unwrap();
    let mut events = Vec::new();
    while !events.ends_with(b"\n\n") {
        let mut chunk = [0u8; 256];
        let n = std::io::Read::read(&mut stdout, &mut chunk).unwrap();
        assert!(n > 0, "the stream ended before its first event: {:?}", String::from_utf8_lossy(&events));
        events.extend_from_slice(&chunk[..n]);
    }
    for expected in 2..=3 {
        assert_eq!(curl(&ca, &format!("{base}/hit/secure/page"), &[]), format!("{{\"value\":{expected}}}"));
    }
    std::io::Read::read_to_end(&mut stdout, &mut events).unwrap();
    stream.wait().unwrap();
    let events = String::from_utf8_lossy(&events).into_owned();
    assert!(
        events.starts_with("data: {\"value\":1}\n\n")
            && events.contains("data: {\"value\":2}\n\n")
            && events.contains("data: {\"value\":3}\n\n"),
        "{events:?}"
    );
}
