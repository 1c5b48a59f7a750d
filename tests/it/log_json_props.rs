//! Property test for `--log-format json`'s access log, driven through the access log's own API the
//! way a shard drives it (capture a head, log its response, flush to the file): for random request
//! bytes (control bytes, quotes, backslashes, non-ASCII, invalid UTF-8, in the request line and in
//! every header a format can name) and every atom gunicorn knows, each line the log writes is one
//! JSON object, ASCII only, holding exactly the format's atoms as keys, with `s` the status sent.
//! The same for random error-log messages through `logjson::event_line`.
//!
//! `PROPTEST_CASES=n` runs every property n times instead of its default; a failure prints the
//! minimal input, which reproduces it.

use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use hitcore::http::access::{AccessLog, Record};
use hitcore::http::forwarded::Trust;
use hitcore::http::logformat::Format;
use hitcore::logging::{LogTarget, Sink};
use proptest::prelude::*;

/// Every atom, and headers by name in and out.
const FORMAT: &str = "%(h)s %(l)s %(u)s %(t)s \"%(r)s\" %(m)s %(U)s %(q)s %(H)s %(s)s %(B)s %(b)s %(f)s \
                      %(a)s %(T)s %(M)s %(D)s %(L)s %(p)s %({x-request-id}i)s %({content-type}o)s %(zz)s";
const KEYS: [&str; 22] = [
    "h",
    "l",
    "u",
    "t",
    "r",
    "m",
    "U",
    "q",
    "H",
    "s",
    "B",
    "b",
    "f",
    "a",
    "T",
    "M",
    "D",
    "L",
    "p",
    "{x-request-id}i",
    "{content-type}o",
    "zz",
];

/// A request head with random bytes in its target and header values (no CR or LF inside a line,
/// as a head the parser accepted has none; everything else goes).
fn head() -> impl Strategy<Value = Vec<u8>> {
    let bytes =
        || proptest::collection::vec(any::<u8>().prop_filter("no line end", |b| *b != b'\r' && *b != b'\n'), 0..40);
    (bytes(), bytes(), bytes(), bytes(), bytes()).prop_map(|(target, agent, referer, id, auth)| {
        let mut h = b"GET /".to_vec();
        h.extend(target);
        h.extend(b" HTTP/1.1\r\nHost: t\r\nUser-Agent: ");
        h.extend(agent);
        h.extend(b"\r\nReferer: ");
        h.extend(referer);
        h.extend(b"\r\nX-Request-Id: ");
        h.extend(id);
        h.extend(b"\r\nAuthorization: Basic ");
        h.extend(auth);
        h.extend(b"\r\n\r\n");
        h
    })
}

fn scratch() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("hitcore-logjson-{}-{}.log", std::process::id(), fastrand::u64(..)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_access_line_is_one_json_object(heads in proptest::collection::vec(head(), 1..8),
                                            status in prop::sample::select(vec![200u16, 400, 404, 503]),
                                            response_type in proptest::collection::vec(any::<u8>(), 0..20)) {
        let path = scratch();
        let sink = Sink::open(&LogTarget::File(path.clone())).unwrap();
        let log = AccessLog::new(sink, Format::compile(FORMAT).unwrap().json(), Trust::parse("127.0.0.1").unwrap());
        let mut response = b"HTTP/1.1 200 OK\r\nContent-Type: ".to_vec();
        response.extend(response_type.iter().filter(|b| **b != b'\r' && **b != b'\n'));
        response.extend(b"\r\nContent-Length: 1\r\n\r\n1");
        for h in &heads {
            let captured = log.capture(h);
            log.log(&Record {
                peer: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                head: Some(&captured),
                status,
                body: Some(1),
                response: &response,
                elapsed: Duration::from_micros(1234),
                scheme: "https",
            });
        }
        // And a response to a request that never got a head.
        log.log(&Record {
            peer: None,
            head: None,
            status: 400,
            body: None,
            response: b"",
            elapsed: Duration::ZERO,
            scheme: "http",
        });
        log.flush();
        let mut bytes = Vec::new();
        std::fs::File::open(&path).unwrap().read_to_end(&mut bytes).unwrap();
        let _ = std::fs::remove_file(&path);
        prop_assert!(bytes.iter().all(|b| (b' '..=b'~').contains(b) || *b == b'\n'), "not ASCII-only: {:?}", String::from_utf8_lossy(&bytes));
        let text = String::from_utf8(bytes).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        prop_assert_eq!(lines.len(), heads.len() + 1);
        for (i, line) in lines.iter().enumerate() {
            let v: serde_json::Value = serde_json::from_str(line).map_err(|e| TestCaseError::fail(format!("{e}: {line}")))?;
            let object = v.as_object().unwrap();
            let keys: Vec<&str> = object.keys().map(String::as_str).collect();
            let mut want = KEYS.to_vec();
            want.sort_unstable();
            let mut got = keys.clone();
            got.sort_unstable();
            prop_assert_eq!(got, want);
            let sent = if i < heads.len() { status } else { 400 };
            prop_assert_eq!(object["s"].as_u64(), Some(u64::from(sent)));
            prop_assert_eq!(object["D"].as_u64(), Some(if i < heads.len() { 1234 } else { 0 }));
            prop_assert!(object["r"].is_string() && object["h"].is_string());
        }
    }

    #[test]
    fn every_error_event_is_one_json_object(message in any::<String>(),
                                            fields in proptest::collection::vec((any::<String>(), any::<String>()), 0..4)) {
        let line = hitcore::logjson::event_line("2026-12-07T04:00:00.000+00:00", 7, "ERROR", None, &message, &fields);
        let one_line = line.ends_with("}\n") && line.matches('\n').count() == 1;
        prop_assert!(one_line, "not one line: {:?}", line);
        prop_assert!(line.bytes().all(|b| (b' '..=b'~').contains(&b) || b == b'\n'));
        let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| TestCaseError::fail(format!("{e}: {line}")))?;
        prop_assert_eq!(v["message"].as_str(), Some(message.as_str()));
    }
}
