//! Fuzzes the counting API the way a connection drives it, without Redis: the bytes a client sends
//! go through the real HTTP parser, each API head is read by `Api::call`, a request that would go
//! to Redis gets the answer Redis would lead to (a value, a JSON object naming the counter, an
//! event stream), and every answer is written with `Api::write`. Whatever the input:
//! - nothing panics;
//! - only names the API allows reach Redis (`K:{namespace}:{key}`, each 3 to 64 of
//!   `[A-Za-z0-9_.-]`, or the page's URL that `:HOST:` and `:PATH:` stand for), and an admin route
//!   reaches it only with a token;
//! - each answer is one well-formed HTTP response: httparse reads its head, it has no header the
//!   API does not write (so nothing from the request can add one), `Content-Length` is the body's
//!   length (left out of a HEAD's bytes), and the status is the one `write` returned;
//! - the body is what its `Content-Type` says: JSON that serde_json reads, JSONP
//!   `callback(JSON);` with a callback the API allows, or a badge that an XML parser reads.
//!
//! The settings (CORS list or `*`, streaming, a global admin token, whose `X-Forwarded-For` is
//! believed) and the peer's address come from a hash of the input, so the seeds stay plain HTTP.

#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use hitcore::api::Api;
use hitcore::api::json::{self, Value};
use hitcore::api::names;
use hitcore::api::reply::Reply;
use hitcore::api::route::{Call, Route, Step};
use hitcore::api::settings::Settings;
use hitcore::http::parse::{Limits, Parser, Step as Parsed, Target};
use hitcore::http::response::{HttpDate, Persist};
use libfuzzer_sys::fuzz_target;

/// Every header `Api::write` may send; anything else in an answer came from the request.
const HEADERS: &[&str] = &[
    "server",
    "date",
    "connection",
    "access-control-allow-origin",
    "vary",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-max-age",
    "content-type",
    "cache-control",
    "x-accel-buffering",
    "allow",
    "retry-after",
    "access-control-expose-headers",
    "content-length",
];

/// FNV-1a, to derive the settings and the peer from the input without taking any of it.
fn hash(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

fn api_for(h: u64) -> Api {
    let mut settings = Settings::default();
    if h & 1 == 1 {
        settings.cors_origins = vec!["https://a.example".into(), "http://localhost:8080".into()];
    }
    settings.stream = h & 2 == 2;
    if h & 4 == 4 {
        settings.admin_token = Some("global-token-0123456789".into());
    }
    if h & 8 == 8 {
        settings.forwarded_allow_ips = "*".into();
    }
    Api::new(settings)
}

/// What Redis's replies would lead to for a request that reached it (the serve module's shapes).
fn answer(call: &Call, value: i64) -> Reply {
    let Step::Request(req) = &call.step else { unreachable!() };
    match req.route {
        Route::Stream => Reply::event_stream(Some(value)),
        Route::Info | Route::Delete => Reply::json(
            200,
            json::object(&[("value", Value::Int(value)), ("full_key", Value::Str(req.names.counter_key_text()))]),
        ),
        Route::Create => Reply::json(
            201,
            json::object(&[
                ("namespace", Value::Str(req.names.namespace())),
                ("key", Value::Str(req.names.key())),
                ("value", Value::Int(req.value)),
            ]),
        ),
        _ => Reply::value(value),
    }
}

/// The checks on what reached Redis.
fn check_request(call: &Call) {
    let Step::Request(req) = &call.step else { return };
    let (ns, key) = (req.names.namespace(), req.names.key());
    for (name, what) in [(ns, "namespace"), (key, "key")] {
        // `:HOST:` and `:PATH:` take the page's URL (docs/api.md): an http(s) URL of at most 64
        // printable ASCII bytes, none of them a space, quote, bracket, backslash or percent sign.
        let page = (name.starts_with("http://") || name.starts_with("https://"))
            && name.len() <= names::MAX_LEN
            && name.bytes().all(|b| (0x21..0x7f).contains(&b) && !b"<>\"'\\%{}".contains(&b));
        assert!(names::validate(name, what).is_ok() || page, "{what} {name:?} reached Redis");
    }
    assert_eq!(req.names.counter_key_text(), format!("K:{ns}:{key}"));
    assert!(!req.route.is_admin() || req.token.is_some(), "an admin route without a token reached Redis");
}

/// The checks on one written answer.
fn check_answer(out: &[u8], status: u16, body_len: usize, head_only: bool, callback: Option<&str>) {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(out) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!("an answer httparse cannot read ({other:?}): {:?}", String::from_utf8_lossy(out)),
    };
    assert_eq!(response.code, Some(status));
    let mut content_type = None;
    let mut content_length = None;
    for h in response.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        assert!(HEADERS.contains(&name.as_str()), "header {:?} in {:?}", h.name, String::from_utf8_lossy(out));
        match name.as_str() {
            "content-type" => content_type = Some(std::str::from_utf8(h.value).unwrap().to_string()),
            "content-length" => content_length = Some(std::str::from_utf8(h.value).unwrap().parse::<usize>().unwrap()),
            _ => {}
        }
    }
    let body = &out[head_len..];
    if head_only {
        assert!(body.is_empty(), "a HEAD answer with a body");
    } else if content_type.as_deref() != Some("text/event-stream") {
        assert_eq!(body.len(), body_len);
    }
    if status == 204 || head_only {
        return;
    }
    let media = content_type.as_deref().unwrap_or_default().split(';').next().unwrap_or_default();
    if media == "text/event-stream" {
        // No length: the events follow until either side closes. The first is the current value.
        assert_eq!(content_length, None);
        let text = std::str::from_utf8(body).unwrap();
        let event = text.strip_prefix("data: ").and_then(|t| t.strip_suffix("\n\n"));
        let event = event.unwrap_or_else(|| panic!("not one event: {text:?}"));
        assert!(serde_json::from_str::<serde_json::Value>(event).is_ok(), "not JSON in the event: {event:?}");
        return;
    }
    assert_eq!(content_length, Some(body.len()), "Content-Length is not the body's length");
    match media {
        "application/json" => {
            assert!(
                serde_json::from_slice::<serde_json::Value>(body).is_ok(),
                "not JSON: {:?}",
                String::from_utf8_lossy(body)
            )
        }
        "application/javascript" => {
            let text = std::str::from_utf8(body).unwrap();
            let cb = callback.expect("JSONP without a callback");
            assert!(json::valid_callback(cb));
            let inner = text.strip_prefix(cb).and_then(|t| t.strip_prefix('(')).and_then(|t| t.strip_suffix(");"));
            let inner = inner.unwrap_or_else(|| panic!("not {cb}(JSON);: {text:?}"));
            assert!(serde_json::from_str::<serde_json::Value>(inner).is_ok(), "not JSON inside JSONP: {inner:?}");
        }
        "image/svg+xml" => {
            let text = std::str::from_utf8(body).unwrap();
            if let Err(e) = roxmltree::Document::parse(text) {
                panic!("a badge an XML parser cannot read ({e}): {text:?}");
            }
        }
        other => panic!("content type {other:?} with a body"),
    }
}

fuzz_target!(|data: &[u8]| {
    let h = hash(data);
    let api = api_for(h);
    let peer = Some(IpAddr::V4(Ipv4Addr::new(10, 0, (h >> 8) as u8, (h >> 16) as u8)));
    let date = HttpDate::default();
    let mut parser = Parser::new(Limits::default());
    let mut at = 0;
    while at < data.len() {
        let req = match parser.step(&data[at..]) {
            Ok(Parsed::Request(req)) => req,
            Ok(Parsed::Skipped(n)) => {
                at += n;
                continue;
            }
            Ok(Parsed::Incomplete) | Err(_) => break,
        };
        let head = &data[at..at + req.head_len];
        at += req.head_len;
        if req.target != Target::Other {
            continue;
        }
        let Some(mut call) = api.call(head, parser.fields(), peer) else { continue };
        check_request(&call);
        if matches!(call.step, Step::Request(_)) {
            call.step = Step::Done(answer(&call, (h >> 20) as i64 - (1 << 40)));
        }
        let persist = if req.keep_alive { Persist::KeepAlive(req.version) } else { Persist::Close };
        let mut out = Vec::new();
        let (status, body_len) = api.write(&mut out, &call, persist, &date);
        check_answer(&out, status, body_len, call.head_only, call.callback.as_deref());
    }
});
